"""The CSV connector: the connector contract, then format detection, preservation on write,
row ids, atomic writes, idempotent creates and malformed files."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import mappings
from connectors.csv import CsvConnector, CsvSettings
from connectors.csv import connector as csv_connector
from hub.connector import Change, Connector, ConnectorContext, PushResult
from hub.errors import ConnectorConfigError, CrmhubError, ErrorKind, TransientError
from hub.mapping import load_mapping
from hub.registry import Registry
from hub.testing.contract import ConnectorContract, pull_pages, records_of

MAPPINGS = Path(mappings.__file__).parent / "csv"


def make(tmp_path: Path, file: str = "people.csv", **settings: Any) -> CsvConnector:
    return CsvConnector(
        CsvSettings.model_validate({"path": file, **settings}),
        ConnectorContext(connection="sheet", base_dir=tmp_path),
    )


def write(path: Path, text: str, encoding: str = "utf-8", bom: bytes = b"") -> Path:
    path.write_bytes(bom + text.encode(encoding))
    return path


async def pull_all(connector: CsvConnector) -> list[Any]:
    return records_of(await pull_pages(connector, connector.streams()[0], None))


async def push(connector: CsvConnector, *changes: Change) -> list[PushResult]:
    return await connector.push(connector.streams()[0], list(changes))


def create(key: str, data: dict[str, Any], idem: str | None = None) -> Change:
    return Change(key=key, op="create", data=data, idempotency_key=idem or f"idem-{key}")


def update(remote_id: str, data: dict[str, Any], version: str | None = None) -> Change:
    return Change(
        key="u", op="update", data=data, idempotency_key="u", remote_id=remote_id, version=version
    )


# -- the contract ----------------------------------------------------------------------


class TestCsvContract(ConnectorContract):
    """Contacts in a comma-separated UTF-8 file; rows identified by email."""

    header = ["email", "first_name", "last_name", "notes"]
    delimiter = ","
    encoding = "utf-8"
    settings: dict[str, Any] = {}
    file = "contacts.csv"

    @pytest.fixture
    def connector(self, tmp_path: Path) -> CsvConnector:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.delimiter).writerow(self.header)
        write(tmp_path / self.file, buffer.getvalue(), self.encoding)
        return make(tmp_path, self.file, **self.settings)

    def _read(self, connector: Connector) -> list[dict[str, str]]:
        assert isinstance(connector, CsvConnector)
        text = connector.path.read_text(self.encoding)
        return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=self.delimiter))

    def _write(self, connector: Connector, rows: list[dict[str, str]]) -> None:
        assert isinstance(connector, CsvConnector)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.header, delimiter=self.delimiter)
        writer.writeheader()
        writer.writerows(rows)
        connector.path.write_bytes(buffer.getvalue().encode(self.encoding))

    async def seed(self, connector: Connector, records: list[dict[str, Any]]) -> None:
        self._write(connector, self._read(connector) + records)

    async def remote_records(self, connector: Connector) -> list[dict[str, Any]]:
        return self._read(connector)

    async def edit_remotely(
        self, connector: Connector, identity: str, changes: dict[str, Any]
    ) -> None:
        field = "domain" if self.settings.get("entity") == "company" else "email"
        rows = self._read(connector)
        for row in rows:
            if row[field] == identity:
                row.update(changes)
        self._write(connector, rows)

    async def delete_remotely(self, connector: Connector, identity: str) -> None:
        field = "domain" if self.settings.get("entity") == "company" else "email"
        self._write(connector, [r for r in self._read(connector) if r[field] != identity])


class TestKeyedCsvContract(TestCsvContract):
    """A key column with generated ids, semicolons, cp1252."""

    header = ["id", "email", "first_name", "last_name"]
    delimiter = ";"
    encoding = "cp1252"
    settings = {"key": "id"}


class TestCompanyCsvContract(TestCsvContract):
    """Companies in a tab-separated file, identified by domain."""

    header = ["name", "domain", "industry"]
    delimiter = "\t"
    settings = {"entity": "company"}
    file = "companies.tsv"


# -- format detection and preservation -------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
async def test_delimiter_is_detected_and_kept(tmp_path: Path, delimiter: str) -> None:
    d = delimiter
    write(
        tmp_path / "people.csv",
        f"email{d}first_name{d}city\nann@example.com{d}Ann{d}Leeds, UK\nbo@example.com{d}Bo{d}\n"
        if d != ","
        else 'email,first_name,city\nann@example.com,Ann,"Leeds, UK"\nbo@example.com,Bo,\n',
    )
    connector = make(tmp_path)
    records = await pull_all(connector)
    assert [r.data for r in records] == [
        {"email": "ann@example.com", "first_name": "Ann", "city": "Leeds, UK"},
        {"email": "bo@example.com", "first_name": "Bo", "city": ""},
    ]
    [result] = await push(connector, update(records[1].id, {"city": "York"}))
    assert result.ok
    lines = (tmp_path / "people.csv").read_text().splitlines()
    assert lines[0] == d.join(["email", "first_name", "city"])
    assert lines[2] == d.join(["bo@example.com", "Bo", "York"])


async def test_utf8_bom_is_read_and_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "people.csv", "email,first_name\nzoe@example.com,Zoë\n", bom=b"\xef\xbb\xbf"
    )
    connector = make(tmp_path)
    [record] = await pull_all(connector)
    assert record.data == {"email": "zoe@example.com", "first_name": "Zoë"}
    await push(connector, create("c", {"email": "éa@example.com", "first_name": "Éa"}))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and not raw.startswith(b"\xef\xbb\xbf" * 2)
    assert raw[3:].decode("utf-8") == ("email,first_name\nzoe@example.com,Zoë\néa@example.com,Éa\n")


async def test_sniffer_decides_when_the_header_has_several_candidates(tmp_path: Path) -> None:
    path = write(
        tmp_path / "people.csv",
        '"Name, full";email;city\n"Lee, Ann";ann@example.com;Leeds\n"Bo";bo@example.com;York\n',
    )
    connector = make(tmp_path)
    records = await pull_all(connector)
    assert records[0].data == {
        "Name, full": "Lee, Ann",
        "email": "ann@example.com",
        "city": "Leeds",
    }
    await push(connector, update(records[1].id, {"city": "Ely"}))
    assert path.read_text().splitlines()[2] == "Bo;bo@example.com;Ely"


@pytest.mark.parametrize(
    ("encoding", "bom", "setting"),
    [
        ("utf-8", b"\xef\xbb\xbf", "utf-8"),
        ("utf-16-le", b"\xff\xfe", None),
        ("utf-16-be", b"\xfe\xff", None),
    ],
)
async def test_bom_wins_and_is_kept(
    tmp_path: Path, encoding: str, bom: bytes, setting: str | None
) -> None:
    path = write(tmp_path / "people.csv", "email,city\nz@example.com,Zürich\n", encoding, bom)
    connector = make(tmp_path, encoding=setting)
    [record] = await pull_all(connector)
    assert record.data == {"email": "z@example.com", "city": "Zürich"}
    await push(connector, update(record.id, {"city": "Genève"}))
    assert path.read_bytes() == bom + "email,city\nz@example.com,Genève\n".encode(encoding)


async def test_cp1252_is_detected_and_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "email;name;note\nm@example.com;Müller;5 €\n", "cp1252")
    connector = make(tmp_path)
    [record] = await pull_all(connector)
    assert record.data == {"email": "m@example.com", "name": "Müller", "note": "5 €"}
    [ok, refused] = await push(
        connector,
        update(record.id, {"note": "10 €"}),
        create("c", {"email": "k@example.com", "name": "Kō"}),
    )
    assert ok.ok
    assert refused.error is ErrorKind.PERMANENT and "cp1252" in (refused.message or "")
    assert path.read_bytes() == "email;name;note\nm@example.com;Müller;10 €\n".encode("cp1252")


async def test_latin1_is_the_last_resort(tmp_path: Path) -> None:
    # 0x81 is undefined in cp1252, so only latin-1 reads this file.
    write(tmp_path / "people.csv", "email,name\na@example.com,x\x81y\n", "latin-1")
    [record] = await pull_all(make(tmp_path))
    assert record.data["name"] == "x\x81y"


async def test_line_endings_quoting_and_final_newline_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "people.csv",
        '"email","first_name"\r\n"a@example.com","Ann"\r\n"b@example.com","Bo"',
    )
    connector = make(tmp_path)
    records = await pull_all(connector)
    await push(connector, update(records[0].id, {"first_name": "Anne"}))
    assert path.read_bytes() == (
        b'"email","first_name"\r\n"a@example.com","Anne"\r\n"b@example.com","Bo"'
    )


async def test_untouched_rows_and_unknown_columns_are_kept(tmp_path: Path) -> None:
    text = (
        "email,first_name,score,notes\n"
        'a@example.com,Ann,7,"said ""hi"", twice"\n'
        "b@example.com,Bo,3,multi\n"
        "c@example.com,Cy,,\n"
    )
    path = write(tmp_path / "people.csv", text)
    connector = make(tmp_path)
    records = await pull_all(connector)
    [result] = await push(connector, update(records[1].id, {"first_name": "Bob", "city": "Ely"}))
    assert result.ok and result.remote_id == "email:b@example.com"
    assert path.read_text().splitlines() == [
        "email,first_name,score,notes,city",
        'a@example.com,Ann,7,"said ""hi"", twice",',
        "b@example.com,Bob,3,multi,Ely",
        "c@example.com,Cy,,,",
    ]
    # An added empty column changes no other row's version.
    after = {r.id: r.version for r in await pull_all(connector)}
    assert after["email:a@example.com"] == records[0].version
    assert after["email:b@example.com"] == result.version != records[1].version


async def test_relative_path_starts_at_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data" / "people.csv", "email\na@example.com\n")
    assert len(await pull_all(make(tmp_path, "data/people.csv"))) == 1


# -- ids, cursors, versions ------------------------------------------------------------


async def test_row_ids(tmp_path: Path) -> None:
    write(
        tmp_path / "people.csv",
        "ref,email,phone,name\n"
        "R1,x@example.com,,keyed\n"
        ", Ann@Example.COM ,,by email\n"
        ",,020 7946 0000,by phone\n"
        ",,,nothing\n"
        ",ann@example.com,,same email\n",
    )
    ids = [r.id for r in await pull_all(make(tmp_path, key="ref", phone_region="GB"))]
    assert ids[:3] == ["R1", "email:ann@example.com", "phone:+442079460000"]
    assert ids[3].startswith("row:") and len(ids[3]) == 4 + 40
    assert ids[4] == "email:ann@example.com#2"


async def test_company_ids(tmp_path: Path) -> None:
    write(
        tmp_path / "firms.csv",
        "Company Name,Website\nAcme  Ltd,https://www.Acme.example/about\nBeta Co,\n",
    )
    connector = make(tmp_path, "firms.csv", entity="company")
    assert connector.streams()[0].name == "companies"
    ids = [r.id for r in await pull_all(connector)]
    assert ids == ["domain:acme.example", "name:beta co"]


async def test_unchanged_file_pulls_nothing_and_pages_resume(tmp_path: Path) -> None:
    rows = "".join(f"p{i}@example.com,P{i}\n" for i in range(2500))
    write(tmp_path / "people.csv", "email,first_name\n" + rows)
    connector = make(tmp_path)
    stream = connector.streams()[0]
    pages = await pull_pages(connector, stream, None)
    assert [len(p.records) for p in pages] == [1000, 1000, 500]
    assert all(p.full_scan for p in pages)
    assert "offset" not in (pages[-1].cursor or {})
    assert await pull_pages(connector, stream, pages[-1].cursor) == []
    rest = await pull_pages(connector, stream, pages[0].cursor)
    assert [len(p.records) for p in rest] == [1000, 500] and not rest[0].full_scan
    assert rest[0].records[0].id == "email:p1000@example.com"


async def test_empty_table_yields_one_full_scan_page(tmp_path: Path) -> None:
    write(tmp_path / "people.csv", "email,first_name\n")
    pages = await pull_pages(make(tmp_path), make(tmp_path).streams()[0], None)
    assert len(pages) == 1 and pages[0].full_scan and pages[0].records == []


async def test_stale_version_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "email,first_name\na@example.com,Ann\n")
    connector = make(tmp_path)
    [record] = await pull_all(connector)
    write(path, "email,first_name\na@example.com,Annie\n")
    [result] = await push(connector, update(record.id, {"first_name": "A"}, record.version))
    assert result.stale and result.error is ErrorKind.TRANSIENT
    assert (result.message or "").startswith("stale version")
    assert result.data == {"email": "a@example.com", "first_name": "Annie"}
    assert path.read_text() == "email,first_name\na@example.com,Annie\n"


async def test_update_of_identifying_column_returns_new_id(tmp_path: Path) -> None:
    write(tmp_path / "people.csv", "email,first_name\na@example.com,Ann\n")
    connector = make(tmp_path)
    [record] = await pull_all(connector)
    [result] = await push(connector, update(record.id, {"email": "ann@example.com"}))
    assert result.remote_id == "email:ann@example.com"
    assert [r.id for r in await pull_all(connector)] == ["email:ann@example.com"]


async def test_delete_removes_only_that_row(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "email\na@example.com\nb@example.com\nc@example.com\n")
    connector = make(tmp_path)
    gone = Change(
        key="d", op="delete", data={}, idempotency_key="d", remote_id="email:b@example.com"
    )
    [result, again] = await push(connector, gone, gone)
    assert result.ok and again.ok
    assert path.read_text() == "email\na@example.com\nc@example.com\n"


# -- idempotent creates ----------------------------------------------------------------


async def test_retried_create_finds_the_row_written_before(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "id,email,first_name\n")
    connector = make(tmp_path, key="id")
    change = create("c", {"email": "new@example.com", "first_name": "New"})
    [first] = await push(connector, change)
    assert first.ok and first.remote_id and len(first.remote_id) == 32  # generated uuid4 hex
    # The hub crashed before recording the result: the same create comes again.
    [retry] = await push(connector, change)
    assert retry.remote_id == first.remote_id
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rows == [{"id": first.remote_id, "email": "new@example.com", "first_name": "New"}]


async def test_retried_create_without_natural_key_matches_content(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "id,first_name,city\n")
    connector = make(tmp_path, key="id")
    change = create("c", {"first_name": "Nameless", "city": "Ely"})
    [first] = await push(connector, change)
    [retry] = await push(connector, change)
    assert retry.remote_id == first.remote_id
    assert len(path.read_text().splitlines()) == 2


async def test_creates_in_one_batch_do_not_collide(tmp_path: Path) -> None:
    write(tmp_path / "people.csv", "email,first_name\n")
    connector = make(tmp_path)
    results = await push(
        connector,
        create("a", {"email": "a@example.com"}),
        create("b", {"email": "A@example.com "}),
        create("c", {"email": "c@example.com"}),
    )
    assert [r.remote_id for r in results] == [
        "email:a@example.com",
        "email:a@example.com",
        "email:c@example.com",
    ]
    assert len(await pull_all(connector)) == 2


# -- atomic writes ---------------------------------------------------------------------


async def test_failed_write_leaves_the_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "people.csv", "email,first_name\na@example.com,Ann\n")
    before = path.read_bytes()

    def crash(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    connector = make(tmp_path)
    with pytest.raises(TransientError, match="cannot write"):
        await push(connector, create("c", {"email": "b@example.com", "first_name": "Bo"}))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.csv", "people.csv.lock"]


async def test_edit_made_during_push_is_read_again_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "people.csv", "email\na@example.com\n")
    real_render = csv_connector.render
    edits = iter(["email\na@example.com\nedit@example.com\n"])

    def render_while_someone_edits(*args: Any) -> bytes:
        for text in edits:  # once: the next try reads the edited file
            path.write_text(text)
            break
        return real_render(*args)

    monkeypatch.setattr(csv_connector, "render", render_while_someone_edits)
    [result] = await push(make(tmp_path), create("c", {"email": "b@example.com"}))
    assert result.ok
    assert path.read_text() == "email\na@example.com\nedit@example.com\nb@example.com\n"


async def test_a_file_that_keeps_changing_leaves_the_write_owed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "people.csv", "email\na@example.com\n")
    real_render = csv_connector.render
    tries = []

    def render_while_someone_edits(*args: Any) -> bytes:
        tries.append(1)
        path.write_text(f"email\na@example.com\nedit{len(tries)}@example.com\n")
        return real_render(*args)

    monkeypatch.setattr(csv_connector, "render", render_while_someone_edits)
    monkeypatch.setattr(csv_connector, "RETRY_PAUSE", 0)
    results = await push(
        make(tmp_path), create("c", {"email": "b@example.com"}), update("email:a@example.com", {})
    )
    assert len(tries) == csv_connector.WRITE_ATTEMPTS
    assert [(r.error, r.remote_id) for r in results] == [
        (ErrorKind.TRANSIENT, None),
        (ErrorKind.TRANSIENT, "email:a@example.com"),
    ]
    assert "kept changing" in (results[0].message or "")
    assert path.read_text() == f"email\na@example.com\nedit{len(tries)}@example.com\n"


# -- malformed files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("email,name\na@example.com,Ann\nb@example.com,Bo,extra\n", 3, "3 cells"),
        ("", 1, "empty"),
        ("\nemail,name\n", 1, "header"),
        ("a@example.com,Ann\n", 1, "looks like data"),
        ("email,name,email\n", 1, "duplicate column name 'email'"),
        ("email,,name\n", 1, "column 2"),
        ('email,name\na@example.com,"Ann\n', 2, "malformed CSV"),
        ('email,name\na@example.com,"An"n"\n', 2, "malformed CSV"),
    ],
)
async def test_malformed_file_names_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path / "people.csv", text)
    with pytest.raises(ConnectorConfigError) as caught:
        await pull_all(make(tmp_path))
    assert f"{path}:{line}:" in str(caught.value)
    assert words in str(caught.value)


async def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"email,name\na@example.com,Ann\nb@example.com,B\xe9a\n")
    with pytest.raises(ConnectorConfigError, match=re.escape(f"{path}:3: bytes not valid utf-8")):
        await pull_all(make(tmp_path, encoding="utf-8"))


async def test_missing_file_and_missing_key_column(tmp_path: Path) -> None:
    with pytest.raises(ConnectorConfigError, match=r"people\.csv: file not found"):
        await pull_all(make(tmp_path))
    write(tmp_path / "people.csv", "email\n")
    with pytest.raises(ConnectorConfigError, match="key column 'id' is not in the header"):
        await push(make(tmp_path, key="id"), create("c", {"email": "a@example.com"}))


async def test_unwritable_values_are_refused_per_item(tmp_path: Path) -> None:
    write(tmp_path / "people.csv", "email,tags\n")
    results = await push(
        make(tmp_path),
        create("list", {"email": "a@example.com", "tags": ["x", "y"]}),
        create("bool", {"email": "b@example.com", "tags": True}),
    )
    assert results[0].error is ErrorKind.PERMANENT and "join" in (results[0].message or "")
    assert results[1].ok and results[1].data == {"email": "b@example.com", "tags": "true"}


def test_settings_are_checked() -> None:
    for bad in ({"delimiter": ":"}, {"encoding": "klingon"}, {"entity": "ticket"}, {"x": 1}):
        with pytest.raises(ValidationError):
            CsvSettings.model_validate({"path": "a.csv", **bad})
    assert CsvSettings.model_validate({"path": "a.csv", "phone_region": "gb"}).phone_region == "GB"


def test_registered_through_the_entry_point() -> None:
    assert Registry.discover().get("csv") is CsvConnector


# -- size ------------------------------------------------------------------------------


async def test_hundred_thousand_rows(tmp_path: Path) -> None:
    rows = "".join(
        f"bulk{i}@example.com,First{i},Last{i},+4420794{i % 100000:05d},City{i % 50}\n"
        for i in range(100_000)
    )
    write(tmp_path / "people.csv", "email,first_name,last_name,phone,city\n" + rows)
    connector = make(tmp_path)
    records = await pull_all(connector)
    assert len({r.id for r in records}) == 100_000
    changes = [update(records[i * 997].id, {"city": "Moved"}) for i in range(100)]
    changes += [create(f"n{i}", {"email": f"new{i}@example.com"}) for i in range(100)]
    results = await push(connector, *changes)
    assert all(r.ok for r in results)
    assert len(await pull_all(connector)) == 100_100


async def test_only_crmhub_errors_for_a_directory_path(tmp_path: Path) -> None:
    (tmp_path / "people.csv").mkdir()
    with pytest.raises(CrmhubError, match="cannot read"):
        await pull_all(make(tmp_path))


# -- default mappings ------------------------------------------------------------------


async def test_default_contact_mapping_round_trips(tmp_path: Path) -> None:
    mapping = load_mapping(MAPPINGS / "contacts.toml", phone_region="GB")
    path = write(
        tmp_path / "people.csv",
        "email,first_name,last_name,phone,city,consent,notes\n"
        " Ann@Example.com ,Ann,Lee,020 7946 0000,Leeds,Yes,keep me\n",
    )
    connector = make(tmp_path)
    [record] = await pull_all(connector)
    canonical = mapping.to_canonical(record.data)
    assert canonical == {
        "email": "ann@example.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "phone": "+442079460000",
        "city": "Leeds",
        "consent": True,
    }
    remote = mapping.to_remote({**canonical, "consent": False}, only=["consent"])
    [result] = await push(connector, update(record.id, remote, record.version))
    assert result.ok
    assert path.read_text().splitlines()[1] == (
        " Ann@Example.com ,Ann,Lee,020 7946 0000,Leeds,no,keep me"
    )


async def test_default_company_mapping(tmp_path: Path) -> None:
    mapping = load_mapping(MAPPINGS / "companies.toml")
    write(tmp_path / "firms.csv", "name,domain,industry,owner\n Acme ,ACME.example,,Jo\n")
    [record] = await pull_all(make(tmp_path, "firms.csv", entity="company"))
    assert mapping.entity == "company"
    assert mapping.to_canonical(record.data) == {
        "name": "Acme",
        "domain": "acme.example",
        "industry": None,
    }


async def test_fetch_reads_named_rows(tmp_path: Path) -> None:
    write(tmp_path / "people.csv", "email,city\na@example.com,Ely\nb@example.com,York\n")
    connector = make(tmp_path)
    fetched = await connector.fetch(connector.streams()[0], ["email:b@example.com", "nope"])
    assert [(r.id, r.data["city"]) for r in fetched] == [("email:b@example.com", "York")]
