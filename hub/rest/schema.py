"""The JSON Schema of a declaration, for editors (``declaration.schema.json`` beside this file).

Regenerate it after changing the models: ``python -m hub.rest.schema``; a test fails while
the file and the models disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.rest.model import Declaration

__all__ = ["SCHEMA_FILE", "schema", "schema_text"]

SCHEMA_FILE = Path(__file__).parent / "declaration.schema.json"


def schema() -> dict[str, Any]:
    out = Declaration.model_json_schema()
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "crmhub REST connector declaration"
    return out


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE.name}")
