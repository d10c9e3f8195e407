"""The JSON Schema of a declaration, for editors (``declaration.schema.json`` beside this file).

Regenerate it after changing the models: ``python -m hub.rest.schema``; a test fails while
the file and the models disagree.

A field's description is the docstring written under it. The models do not read those
when they are made (pydantic's ``use_attribute_docstrings`` parses the source of every
class, a good part of importing ``hub.rest``, which every declared pull does); the schema
reads them here instead.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hub.rest.base import Spec
from hub.rest.model import Declaration

__all__ = ["SCHEMA_FILE", "schema", "schema_text"]

SCHEMA_FILE = Path(__file__).parent / "declaration.schema.json"


def schema() -> dict[str, Any]:
    out = Declaration.model_json_schema()
    models = {cls.__name__: cls for cls in _specs(Spec)}
    for name, part in [(Declaration.__name__, out), *out.get("$defs", {}).items()]:
        cls = models.get(name)
        if cls is None:
            continue
        for field, prop in part.get("properties", {}).items():
            doc = field_docs(cls).get(field)
            if doc is not None:
                prop.setdefault("description", doc)
    _shorthands(out["$defs"])
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "crmhub REST connector declaration"
    return out


KIND_SHORTHANDS = (
    ("ClientSpec", "auth"),
    ("StreamSpec", "paginator"),
    ("StreamSpec", "deletes"),
    ("EndpointDeletes", "paginator"),
)
"""The tables the models also take as a kind's name alone (``auth = "bearer"``)."""
FIELD_SHORTHANDS = ("VersionSpec", "ModifiedSpec")
"""The tables the models also take as a field's name alone (``version = "version"``)."""


def _shorthands(defs: dict[str, Any]) -> None:
    """What the models take as a shorthand (their ``mode="before"`` validators, which
    pydantic's schema does not see), the schema takes too, so editors do not flag it."""
    for model, name in KIND_SHORTHANDS:
        prop = defs[model]["properties"][name]
        union = next(
            part
            for part in [prop, *prop.get("anyOf", [])]
            if part.get("discriminator", {}).get("propertyName") == "kind"
        )
        choice = {k: union.pop(k) for k in ("discriminator", "oneOf")}
        union["anyOf"] = [
            {"enum": sorted(choice["discriminator"]["mapping"]), "description": "a kind alone"},
            choice,
        ]
    for model in FIELD_SHORTHANDS:
        table = defs[model]
        defs[model] = {
            "anyOf": [{"type": "string", "description": "the field's name alone"}, table],
            "title": table.get("title", model),
        }


def field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """The docstrings written under the fields of ``cls``, inherited ones included (a field
    declared again takes only the docstring written under it there)."""
    found: dict[str, str] = {}
    for field in cls.model_fields:
        owner = next((k for k in cls.__mro__ if field in vars(k).get("__annotations__", {})), None)
        doc = _docstrings(owner).get(field) if owner is not None else None
        if doc is not None:
            found[field] = doc
    return found


@cache
def _docstrings(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for the fields annotated in the body of ``cls`` itself."""
    tree = _module_tree(cls.__module__)
    node = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__), None
    )
    if node is None:
        return {}
    found: dict[str, str] = {}
    for stmt, after in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            found[stmt.target.id] = inspect.cleandoc(after.value.value)
    return found


@cache
def _module_tree(module: str) -> ast.Module:
    return ast.parse(inspect.getsource(sys.modules[module]))


def _specs(root: type[Spec]) -> list[type[Spec]]:
    found = []
    for sub in root.__subclasses__():
        found.extend([sub, *_specs(sub)])
    return found


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE.name}")
