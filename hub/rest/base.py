"""What every part of a declaration shares: strict models, kinds looked up by name, hooks."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
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


def resolve_hook(dotted: str, near: Path | None = None) -> Any:
    """The object named ``package.module:attribute`` (or ``package.module.attribute``).

    A module that is not importable but sits as ``<module>.py`` beside the declaration file
    (``near``) is loaded from there, so a local declaration can keep its hooks next to it.
    Raises ``ValueError`` saying what could not be found.
    """
    module_name, sep, attribute = dotted.partition(":")
    if not sep:
        module_name, _, attribute = dotted.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"{dotted!r} is not a hook path like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        local = near / f"{module_name.replace('.', '/')}.py" if near else None
        if exc.name != module_name.split(".")[0] or local is None or not local.is_file():
            raise ValueError(f"hook module {module_name!r} cannot be imported: {exc}") from None
        module = _load_file(module_name, local)
    except Exception as exc:  # a hook module that fails to import is a declaration error
        raise ValueError(f"hook module {module_name!r} failed to import: {exc}") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"hook module {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    return found


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
