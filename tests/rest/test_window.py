"""The incremental boundary window, read page by page: through ``Window.take`` (read
items, as hand-written connectors give them) and through a declared stream's listing loop,
which keeps the same window inline while it reads the records."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.connector import Page, RemoteRecord
from hub.rest import load_declaration
from hub.rest.stream import compile_stream
from hub.rest.window import Window
from tests.rest.kit import declaration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

Item = tuple[str, RemoteRecord | None, datetime]
Take = Callable[[Window, list[Item], Page, dict[str, str] | None], None]


def _item(record_id: str, second: int, version: str = "1") -> Item:
    changed = T0 + timedelta(seconds=second)
    return record_id, RemoteRecord(record_id, {"id": record_id}, version, changed), changed


def _gone(record_id: str, second: int) -> Item:
    return record_id, None, T0 + timedelta(seconds=second)


def _window() -> Window:
    return Window(overlap=timedelta(seconds=10), step=timedelta(seconds=1), cap=100)


def _by_window(window: Window, items: list[Item], page: Page, seen: dict[str, str] | None) -> None:
    window.take(iter(items), page, seen, keyed=True)


_STREAM = compile_stream(load_declaration(declaration(), label="test"), "contacts", {}, False)


def _by_listing(window: Window, items: list[Item], page: Page, seen: dict[str, str] | None) -> None:
    """The same items as the contacts API lists them, through the declared loop."""
    raws: list[Any] = []
    for record_id, record, changed in items:
        raw = {"id": record_id, "updated_at": changed.isoformat()}
        if record is None:
            raw["deleted_at"] = changed.isoformat()
        else:
            raw["version"] = record.version
        raws.append(raw)
    _STREAM.lister()(raws, page, window, seen)


TAKES = pytest.mark.parametrize("take", [_by_window, _by_listing], ids=["window", "listing"])


@TAKES
def test_the_window_keeps_what_is_within_reach_of_the_newest_change(take: Take) -> None:
    window, page = _window(), Page()
    # out of time order; "a" is listed again with an older change, "b" lands at the floor
    items = [_item("a", 50), _item("b", 89), _item("c", 100), _item("a", 95), _item("d", 5)]
    take(window, items, page, None)
    assert [r.id for r in page.records] == ["a", "b", "c", "a", "d"]
    assert window.high == T0 + timedelta(seconds=100)
    assert set(window.to_json()["seen"]) == {"b", "c", "a"}
    # listed again below the floor: not admitted, the window keeps what it had
    take(window, [_item("c", 60)], Page(), None)
    assert window.to_json()["seen"]["c"][0] == (T0 + timedelta(seconds=100)).isoformat()
    # admitted again (within reach then), but a newer change on the page moves the floor
    take(window, [_item("c", 95), _item("e", 107)], Page(), None)
    assert set(window.to_json()["seen"]) == {"e"}
    since, seen = window.settle(None, {}, lambda moment: moment)
    assert since == T0 + timedelta(seconds=97)
    assert seen == {"e": "1"}


@TAKES
def test_an_incremental_page_skips_what_the_boundary_holds_unchanged(take: Take) -> None:
    window, page = _window(), Page()
    seen = {"a": "1", "b": "1"}
    items = [_item("a", 100), _item("b", 100, version="2"), _item("c", 101)]
    take(window, items, page, seen)
    assert [r.id for r in page.records] == ["b", "c"]
    assert set(window.to_json()["seen"]) == {"a", "b", "c"}


@TAKES
def test_pages_in_time_order_keep_only_the_newest_changes(take: Take) -> None:
    window = _window()
    first = Page()
    take(window, [_item(str(n), n) for n in range(40)], first, None)
    assert len(first.records) == 40
    assert sorted(window.to_json()["seen"], key=int) == [str(n) for n in range(28, 40)]
    # "30" and "39" changed meanwhile: listed again, in order, "30" below the new floor
    second = Page()
    items = [_item("30", 45, "2"), *(_item(str(n), n) for n in range(46, 60)), _item("39", 59, "2")]
    take(window, items, second, None)
    assert [r.id for r in second.records][:2] == ["30", "46"]
    kept = window.to_json()["seen"]
    assert sorted(kept, key=int) == ["39", *(str(n) for n in range(48, 60))]
    assert kept["39"] == [(T0 + timedelta(seconds=59)).isoformat(), "2"]
    since, seen = window.settle(None, {}, lambda moment: moment)
    assert since == T0 + timedelta(seconds=49)
    assert seen["39"] == "2" and "48" not in seen


@TAKES
def test_a_page_in_time_order_may_turn_out_otherwise(take: Take) -> None:
    window, page = _window(), Page()
    # in order up to a tombstone, a record pulled before and one out of order
    items = [_item("a", 10), _item("b", 20), _gone("c", 21), _item("d", 22), _item("e", 15)]
    take(window, items, page, {"d": "1"})
    assert [r.id for r in page.records] == ["a", "b", "e"]
    assert page.deleted == ["c"]
    kept = window.to_json()["seen"]
    assert set(kept) == {"b", "c", "d", "e"}
    assert kept["c"][1] == "deleted"


def _pages(seed: int) -> list[list[Item]]:
    """Pages of a made-up listing: mostly in time order (the usual case), at times not,
    with tombstones and ids listed again."""
    rng = random.Random(seed)
    pages, base = [], 0
    for _ in range(rng.randint(1, 4)):
        seconds = [base + rng.randint(0, 30) for _ in range(rng.randint(0, 25))]
        if rng.random() < 0.7:
            seconds.sort()
        page = []
        for second in seconds:
            record_id = str(rng.randint(1, 12))
            if rng.random() < 0.1:
                page.append(_gone(record_id, second))
            else:
                page.append(_item(record_id, second, rng.choice("12")))
        pages.append(page)
        base += rng.choice([0, 10, 25])
    return pages


@pytest.mark.parametrize("seed", range(60))
def test_the_declared_loop_keeps_the_window_as_window_take_does(seed: int) -> None:
    rng = random.Random(-seed)
    seen = {str(i): rng.choice(["1", "2", "deleted"]) for i in rng.sample(range(1, 13), 4)}
    cap = rng.choice([2, 5, 100])
    windows = [Window(timedelta(seconds=10), timedelta(seconds=1), cap) for _ in range(2)]
    for items in _pages(seed):
        pages = [Page(), Page()]
        _by_window(windows[0], items, pages[0], seen if seed % 2 else None)
        _by_listing(windows[1], items, pages[1], seen if seed % 2 else None)
        listed = [([(r.id, r.version) for r in p.records], p.deleted) for p in pages]
        assert listed[0] == listed[1]
        assert windows[0].high == windows[1].high
        assert windows[0].to_json() == windows[1].to_json()
    settled = [w.settle(None, {}, lambda moment: moment) for w in windows]
    assert settled[0] == settled[1]
