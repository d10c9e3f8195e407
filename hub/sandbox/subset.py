"""Cut a provider's OpenAPI description down to the operations a connector uses.

    python -m hub.sandbox.subset SOURCE OUT "GET /lists/{list_id}" "PUT /lists/{...}" ...

Keeps the description's ``openapi``, ``info``, ``servers`` and ``security`` as they are, the
named operations verbatim (with their path's shared parameters), and every component the
kept parts reference, followed transitively (a YAML source is read as YAML). The result is
written with sorted keys, so running the command again on the same source gives the same
file byte for byte; ``info`` gains ``x-subset-of`` naming the source file and its SHA-256.
A big description then loads in milliseconds, and the subset's provenance can be checked
by running this again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["subset", "subset_text"]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def subset(document: dict[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """The description with only ``operations`` (``"METHOD /path/template"``) in it."""
    paths: dict[str, Any] = {}
    for operation in operations:
        method, _, template = operation.strip().partition(" ")
        item = document.get("paths", {}).get(template)
        found = item.get(method.lower()) if isinstance(item, dict) else None
        if found is None:
            raise KeyError(f"the description has no operation {operation!r}")
        kept = paths.setdefault(
            template, {k: v for k, v in item.items() if k not in METHODS}
        )  # a path's shared parameters and summary come along
        kept[method.lower()] = found
    out = {k: v for k, v in document.items() if k not in ("paths", "components", "webhooks")}
    out["paths"] = paths
    components: dict[str, dict[str, Any]] = {}
    source = document.get("components", {})
    pending = list(_refs(paths)) + list(_refs(out.get("security", [])))
    schemes = source.get("securitySchemes")
    if schemes:
        components["securitySchemes"] = schemes
    while pending:
        ref = pending.pop()
        if not ref.startswith("#/components/"):
            continue
        kind, _, name = ref[len("#/components/") :].partition("/")
        if name in components.get(kind, {}):
            continue
        value = source[kind][name]
        components.setdefault(kind, {})[name] = value
        pending.extend(_refs(value))
    if components:
        out["components"] = components
    return out


def _yaml(raw: bytes) -> Any:
    """YAML as JSON would have it: times stay text (YAML's own timestamps are not JSON)."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc,valid-type]
        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in base.yaml_implicit_resolvers.items()
        }

    # YAML 1.1 reads a bare `=` (Zendesk's descriptions have one) as its "value" tag
    Loader.add_constructor("tag:yaml.org,2002:value", Loader.construct_scalar)
    return yaml.load(raw, Loader=Loader)


def subset_text(source: Path, operations: Iterable[str]) -> str:
    """The subset of ``source`` as the text the command writes."""
    raw = source.read_bytes()
    yaml_source = source.suffix in (".yaml", ".yml")  # Xero and Zendesk publish YAML
    document = _yaml(raw) if yaml_source else json.loads(raw)
    result = subset(document, operations)
    result["info"] = {
        **result.get("info", {}),
        "x-subset-of": {"file": source.name, "sha256": hashlib.sha256(raw).hexdigest()},
    }
    return json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("operations", nargs="+", help='"METHOD /path/template"')
    args = parser.parse_args(argv)
    args.out.write_text(subset_text(args.source, args.operations), encoding="utf-8")
    print(f"{args.out}: {len(args.operations)} operations from {args.source.name}")


if __name__ == "__main__":
    main()
