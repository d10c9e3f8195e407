"""The incremental boundary window, read page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.connector import Page, RemoteRecord
from hub.rest.window import Window

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _item(record_id: str, second: int, version: str = "1") -> tuple[str, RemoteRecord, datetime]:
    changed = T0 + timedelta(seconds=second)
    return record_id, RemoteRecord(record_id, {"id": record_id}, version, changed), changed


def _window() -> Window:
    return Window(overlap=timedelta(seconds=10), step=timedelta(seconds=1), cap=100)


def test_the_window_keeps_what_is_within_reach_of_the_newest_change() -> None:
    window, page = _window(), Page()
    # out of time order; "a" is listed again with an older change, "b" lands at the floor
    items = [_item("a", 50), _item("b", 89), _item("c", 100), _item("a", 95), _item("d", 5)]
    window.take(iter(items), page, None, keyed=True)
    assert [r.id for r in page.records] == ["a", "b", "c", "a", "d"]
    assert window.high == T0 + timedelta(seconds=100)
    assert set(window.to_json()["seen"]) == {"b", "c", "a"}
    # listed again below the floor: not admitted, the window keeps what it had
    window.take(iter([_item("c", 60)]), Page(), None, keyed=True)
    assert window.to_json()["seen"]["c"][0] == (T0 + timedelta(seconds=100)).isoformat()
    # admitted again (within reach then), but a newer change on the page moves the floor
    window.take(iter([_item("c", 95), _item("e", 107)]), Page(), None, keyed=True)
    assert set(window.to_json()["seen"]) == {"e"}
    since, seen = window.settle(None, {}, lambda moment: moment)
    assert since == T0 + timedelta(seconds=97)
    assert seen == {"e": "1"}


def test_an_incremental_page_skips_what_the_boundary_holds_unchanged() -> None:
    window, page = _window(), Page()
    seen = {"a": "1", "b": "1"}
    items = [_item("a", 100), _item("b", 100, version="2"), _item("c", 101), None]
    window.take(iter(items), page, seen, keyed=True)
    assert [r.id for r in page.records] == ["b", "c"]
    assert set(window.to_json()["seen"]) == {"a", "b", "c"}
