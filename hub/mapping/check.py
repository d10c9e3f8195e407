"""Loading mapping files, and checking them for ``crmhub mapping check FILE``."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from hub.errors import MappingError, Problem
from hub.mapping.compile import compile_mapping
from hub.mapping.model import Mapping
from hub.tomlfile import load_toml

_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def load_mapping(path: Path, *, phone_region: str | None = None) -> Mapping:
    """Load and compile the mapping file at ``path``.

    ``phone_region`` is the hub-wide region for phone numbers without a country code; a
    ``phone`` transform's own ``region`` wins over it. Raises ``MappingError`` listing every
    problem found, each with file, line and key.
    """
    try:
        data, text = load_toml(path, MappingError)
    except MappingError as exc:
        raise MappingError([_with_line(problem) for problem in exc.problems]) from None
    compiled = compile_mapping(data, str(path), text, phone_region=phone_region)
    if compiled.problems or compiled.entity is None:
        raise MappingError(compiled.problems)
    return Mapping(compiled.entity, compiled.rules, path)


def _with_line(problem: Problem) -> Problem:
    # Before Python 3.14 tomllib only puts the position into its message.
    found = _AT_LINE.search(problem.message)
    if problem.line is not None or found is None:
        return problem
    return replace(problem, line=int(found.group(1)))


def check_mapping_file(path: Path) -> list[Problem]:
    """Every problem in the mapping file at ``path``; empty when it is fine."""
    try:
        load_mapping(path)
    except MappingError as exc:
        return list(exc.problems)
    return []
