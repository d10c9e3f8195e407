"""Reading and writing a CSV file the way it was written.

:func:`read_table` detects the file's format (encoding and BOM, delimiter, line ending,
quoting, final newline) and parses it strictly: a missing header, duplicate or blank column
names, rows with more cells than the header, bad quoting and undecodable bytes are errors
naming the file and the line. Rows with fewer cells are padded with empty cells; blank lines
are skipped (and not written back). :func:`render` writes the table in the same format;
:mod:`connectors.csv.files` replaces the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from connectors.csv.files import Stamp, read_bytes
from hub.errors import ConnectorConfigError

DELIMITERS = ",;\t|"
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_NEWLINE = re.compile(r"\r\n|\n|\r")
_SNIFF_LINES = 50


@dataclass(frozen=True)
class FileFormat:
    """How a file is written, so that it is written back the same way."""

    encoding: str = "utf-8"
    """Codec of the text after the BOM (``utf-8``, ``cp1252``, ``latin-1``, ``utf-16-le``)."""
    bom: bytes = b""
    delimiter: str = ","
    lineterminator: str = "\n"
    quote_all: bool = False
    final_newline: bool = True


@dataclass
class CsvTable:
    """A parsed file: its header and rows (cells as text, padded to the header's width)."""

    path: Path
    format: FileFormat
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    """The line each row of ``rows`` (as read) ends on, for messages naming file and line."""
    stamp: Stamp = field(default_factory=lambda: Stamp(0, 0, 0, ""))
    """The file as read (size, modification time, inode, SHA-256)."""

    @property
    def digest(self) -> str:
        return self.stamp.digest


class CsvFileError(ConnectorConfigError):
    """The file is missing or malformed; the message names the file and line."""


def _fail(path: Path, line: int | None, message: str, connection: str | None) -> CsvFileError:
    where = f"{path}:{line}" if line is not None else str(path)
    return CsvFileError(f"{where}: {message}", connection=connection)


def read_table(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    connection: str | None = None,
) -> CsvTable:
    """Read and parse ``path``; every problem is a :class:`CsvFileError` naming file and line."""
    try:
        raw, stamp = read_bytes(path)
    except FileNotFoundError:
        raise _fail(
            path, None, "file not found; check the connection's `path`", connection
        ) from None
    except OSError as exc:
        raise _fail(path, None, f"cannot read the file: {exc.strerror or exc}", connection) from exc
    text, codec, bom = _decode(raw, encoding, path, connection)
    if not text.strip():
        raise _fail(
            path, 1, "the file is empty; it needs a header row naming its columns", connection
        )
    newline = _NEWLINE.search(text)
    lineterminator = newline.group() if newline else "\n"
    first_line = text[: newline.start()] if newline else text
    delim = delimiter or _sniff_delimiter(text, first_line)
    header, rows, lines = _parse(text, delim, path, connection)
    fmt = FileFormat(
        encoding=codec,
        bom=bom,
        delimiter=delim,
        lineterminator=lineterminator,
        quote_all=_all_quoted(first_line, delim),
        final_newline=text.endswith(("\n", "\r")),
    )
    return CsvTable(
        path=path,
        format=fmt,
        header=header,
        rows=rows,
        lines=lines,
        stamp=stamp,
    )


def _decode(
    raw: bytes, encoding: str | None, path: Path, connection: str | None
) -> tuple[str, str, bytes]:
    """The text, the codec to write it back with, and the BOM it had."""
    bom, codec = b"", None
    for mark, name in _BOMS:
        if raw.startswith(mark):
            bom, codec = mark, name
            break
    if encoding is not None:
        name = codecs.lookup(encoding).name
        if bom and name.replace("_", "-") in ("utf-8", "utf-8-sig", "utf-16"):
            pass  # the BOM is the more precise statement of the same encoding
        else:
            bom, codec = b"", encoding
    candidates = [codec] if codec else ["utf-8", "cp1252", "latin-1"]
    body = raw[len(bom) :]
    for index, candidate in enumerate(candidates):
        try:
            return body.decode(candidate), candidate, bom
        except UnicodeDecodeError as exc:
            if index + 1 < len(candidates):
                continue
            line = body[: exc.start].count(b"\n") + 1
            raise _fail(
                path,
                line,
                f"bytes not valid {candidate} ({exc.reason} at byte {exc.start + len(bom)}); "
                "set the connection's `encoding` to the file's encoding",
                connection,
            ) from None
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _sniff_delimiter(text: str, first_line: str) -> str:
    """The delimiter among ``, ; tab |``: the only one in the header, else csv.Sniffer's pick."""
    present = [d for d in DELIMITERS if d in first_line]
    if len(present) <= 1:
        return present[0] if present else ","
    sample = "\n".join(_NEWLINE.split(text, _SNIFF_LINES)[:_SNIFF_LINES])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return max(present, key=first_line.count)


def _all_quoted(line: str, delimiter: str) -> bool:
    field_re = r'"(?:[^"]|"")*"'
    return re.fullmatch(f"{field_re}(?:{re.escape(delimiter)}{field_re})*", line) is not None


def _parse(
    text: str, delimiter: str, path: Path, connection: str | None
) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and the line each row ends on; the fast path hands anything odd to
    :func:`_diagnose`."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        header = _check_header(next(reader, []), 1, path, connection)
        for cells in reader:
            if cells:
                rows.append(cells)
                lines.append(reader.line_num)
    except csv.Error:
        _diagnose(text, delimiter, path, connection)
        raise  # pragma: no cover - _diagnose raises for every csv.Error
    width = len(header)
    for cells in rows:
        if len(cells) != width:
            if len(cells) > width:
                _diagnose(text, delimiter, path, connection)
            cells.extend([""] * (width - len(cells)))
    return header, rows, lines


def _diagnose(text: str, delimiter: str, path: Path, connection: str | None) -> None:
    """Parse again, counting lines, and raise the first problem with its line number."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    width = 0
    end = 0
    try:
        for cells in reader:
            start, end = end + 1, reader.line_num
            if start == 1:
                width = len(cells)
            elif len(cells) > width:
                raise _fail(
                    path,
                    start,
                    f"row has {len(cells)} cells but the header names {width} columns "
                    f"(is a delimiter {delimiter!r} inside an unquoted value?)",
                    connection,
                )
    except csv.Error as exc:
        raise _fail(path, end + 1, f"malformed CSV: {exc}", connection) from None


def _check_header(cells: list[str], line: int, path: Path, connection: str | None) -> list[str]:
    if not cells or not any(c.strip() for c in cells):
        raise _fail(path, line, "missing header row: the first line is blank", connection)
    if any("@" in c for c in cells):
        raise _fail(
            path,
            line,
            "the first row looks like data, not a header; add a header row naming the columns",
            connection,
        )
    seen: dict[str, int] = {}
    for number, name in enumerate(cells, start=1):
        if not name.strip():
            raise _fail(path, line, f"column {number} of the header has no name", connection)
        if name in seen:
            raise _fail(
                path,
                line,
                f"duplicate column name {name!r} (columns {seen[name]} and {number}); "
                "rename one of them",
                connection,
            )
        seen[name] = number
    return cells


def render(fmt: FileFormat, header: list[str], rows: list[list[str]]) -> bytes:
    """The file's bytes for ``header`` and ``rows``, written in format ``fmt``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(
        buffer,
        delimiter=fmt.delimiter,
        lineterminator=fmt.lineterminator,
        quoting=csv.QUOTE_ALL if fmt.quote_all else csv.QUOTE_MINIMAL,
    )
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    if not fmt.final_newline:
        text = text.removesuffix(fmt.lineterminator)
    return fmt.bom + text.encode(fmt.encoding)
