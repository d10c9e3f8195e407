"""What every part of a declaration shares: strict models, kinds looked up by name, hooks."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["Spec", "kind_shorthand", "resolve_hook"]


class Spec(BaseModel):
    """A part of a declaration: unknown keys are errors, values are frozen once loaded.

    The docstring under a field documents it; ``hub.rest.schema`` puts it into the JSON
    Schema (read there, not when the class is made: that parses the class's source)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def kind_shorthand(value: Any) -> Any:
    """``paginator = "link"`` means ``paginator = { kind = "link" }``."""
    return {"kind": value} if isinstance(value, str) else value


class KindSpec(Spec):
    """A part chosen by its ``kind`` (paginators, auth, deletes, signatures)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return kind_shorthand(value)


def resolve_hook(dotted: str, near: Path | None = None, *, call: bool = True) -> Any:
    """The object named ``package.module:attribute`` (or ``package.module.attribute``).

    A module that sits as ``<module>.py`` beside the declaration file (``near``) is loaded
    from there, before anything importable of the same name: a local ``csv.py`` must not
    lose to the standard library's ``csv``. With ``call`` the object must be callable (a
    function or a class), so a misnamed constant is refused when the declaration loads,
    not when a run first calls it. Raises ``ValueError`` saying what could not be found.
    """
    module_name, sep, attribute = dotted.partition(":")
    if not sep:
        module_name, _, attribute = dotted.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{dotted!r} is not a hook path like 'package.module:function'")
    local = near / f"{module_name.replace('.', '/')}.py" if near else None
    try:
        if local is not None and local.is_file():
            module = _load_file(module_name, local)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"hook module {module_name!r} cannot be imported: {exc}") from None
    except Exception as exc:  # a hook module that fails to import is a declaration error
        raise ValueError(f"hook module {module_name!r} failed to import: {exc}") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(
                f"hook module {module_name!r} has no {attribute!r}{_offered(found, part)}"
            )
        found = getattr(found, part)
    if call and not callable(found):
        kind = type(found).__name__
        raise ValueError(
            f"hook {dotted!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a function "
            "or class: name something it can call"
        )
    return found


def _offered(holder: Any, wanted: str, most: int = 6) -> str:
    """`` (it has: a, b, ...)``: the public callables of ``holder`` (of a module, those it
    defines, not those it imports), the closest to ``wanted`` first."""
    own = getattr(holder, "__name__", None) if isinstance(holder, ModuleType) else None
    members = [(n, getattr(holder, n, None)) for n in dir(holder)]
    names = sorted(
        n
        for n, value in members
        if not n.startswith("_")
        and callable(value)
        and (own is None or getattr(value, "__module__", own) == own)
    )
    if not names:
        return " (it has no functions or classes)"
    close = difflib.get_close_matches(wanted, names, n=most, cutoff=0.5)
    shown = [*close, *(n for n in names if n not in close)][:most]
    more = ", ..." if len(names) > most else ""
    return f" (it has: {', '.join(shown)}{more})"


def _load_file(module_name: str, path: Path) -> Any:
    unique = f"crmhub_hooks_{abs(hash(str(path.resolve())))}_{module_name.replace('.', '_')}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load hook file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    return module
