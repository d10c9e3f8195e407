"""Turn the parts of a Google API discovery document a sandbox serves into OpenAPI 3.

    python -m hub.sandbox.google_discovery SOURCE OUT METHOD_ID ...
    # e.g. gmail.v1.json gmail_openapi.json gmail.users.messages.list gmail.users.history.list

Google describes its APIs with discovery documents, not OpenAPI; crmhub's sandboxes are
held to OpenAPI descriptions (:mod:`hub.sandbox.spec`). This converts the named methods,
verbatim where the two formats agree, and every schema they reference, followed
transitively. The output is written with sorted keys (running it again on the same source
gives the same file byte for byte); ``info.x-converted-from`` names the source file and its
SHA-256. What the conversion decides, because the formats differ:

- paths come from each method's ``flatPath`` (``v1/people/{peopleId}:updateContact``), with
  the API's version prefix (``gmail/v1``, ``v1``) moved into the server URL; a path
  parameter the flat path names differently from the method (``{+resourceName}`` as
  ``{peopleId}``) becomes a plain string parameter;
- the document's standard query parameters (``alt``, ``fields``, ``prettyPrint``, ...),
  which every method accepts, are left out: a check ignores query parameters the
  description does not name, and each one named costs time on every request checked;
- ``repeated`` parameters are arrays (``?labelIds=A&labelIds=B``);
- 64-bit integers, which Google sends as strings (``format: int64|uint64``), are strings of
  digits; ``google-datetime`` is ``date-time``; ``byte`` (URL-safe base64 in Gmail) and the
  other Google formats (``google-fieldmask``, ``google-duration``) are plain strings;
- a method without a response body answers 200 or 204 with none;
- errors, which discovery documents do not describe, are Google's documented JSON error
  (``{"error": {"code", "message", "status", "errors": [...], "details": [...]}}``,
  https://cloud.google.com/apis/design/errors) as every operation's ``default`` answer;
- the OAuth2 scopes become one HTTP bearer scheme (the sandbox checks the token itself).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["convert", "convert_text"]

_FORMATS = {"int32": "int32", "uint32": "int64", "double": "double", "float": "float"}
_DIGITS = "^-?[0-9]+$"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "domain": {"type": "string"},
                            "reason": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
                "details": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


def _methods(resources: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _methods(resource.get("resources", {}))


def _schema(node: dict[str, Any]) -> dict[str, Any]:
    """A discovery schema (or parameter) as an OpenAPI schema."""
    if "$ref" in node:
        return {"$ref": f"#/components/schemas/{node['$ref']}"}
    kind = node.get("type")
    out: dict[str, Any] = {}
    if kind == "string":
        out["type"] = "string"
        fmt = node.get("format")
        if fmt in ("int64", "uint64"):
            out["pattern"] = _DIGITS
        elif fmt in ("date-time", "google-datetime"):
            out["format"] = "date-time"
        elif fmt == "date":
            out["format"] = "date"
        if "enum" in node:
            out["enum"] = list(node["enum"])
    elif kind in ("integer", "number", "boolean"):
        out["type"] = kind
        if node.get("format") in _FORMATS:
            out["format"] = _FORMATS[node["format"]]
    elif kind == "array":
        out = {"type": "array", "items": _schema(node.get("items", {}))}
    elif kind == "object":
        out["type"] = "object"
        props = node.get("properties")
        if props:
            out["properties"] = {k: _schema(v) for k, v in props.items()}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = _schema(extra)
    # type "any" (or none): any JSON value
    if node.get("description"):
        out["description"] = node["description"]
    if node.get("readOnly"):
        out["readOnly"] = True
    return out


def _parameter(name: str, spec: dict[str, Any], where: str) -> dict[str, Any]:
    schema = _schema({k: v for k, v in spec.items() if k not in ("location", "repeated")})
    schema.pop("description", None)
    param: dict[str, Any] = {"name": name, "in": where, "schema": schema}
    if spec.get("repeated"):
        param.update(schema={"type": "array", "items": schema}, style="form", explode=True)
    if where == "path":
        param["required"] = True
    if spec.get("description"):
        param["description"] = spec["description"]
    return param


def _placeholders(path: str) -> list[str]:
    return [part.split("}")[0] for part in path.split("{")[1:]]


def _operation(method: dict[str, Any]) -> dict[str, Any]:
    flat = method.get("flatPath") or method["path"]
    params = method.get("parameters", {})
    parameters = []
    for name in _placeholders(flat):
        spec = params.get(name, {"type": "string", "location": "path"})
        parameters.append(_parameter(name, spec, "path"))
    for name, spec in params.items():
        if spec.get("location") == "query":
            parameters.append(_parameter(name, spec, "query"))
    error = {"$ref": "#/components/schemas/GoogleError"}
    responses: dict[str, Any] = {
        "default": {"description": "Error", "content": {"application/json": {"schema": error}}}
    }
    if "response" in method:
        schema = _schema(method["response"])
        responses["200"] = {
            "description": "Successful response",
            "content": {"application/json": {"schema": schema}},
        }
    else:
        responses["200"] = {"description": "Successful response, no body"}
        responses["204"] = {"description": "Successful response, no body"}
    operation: dict[str, Any] = {
        "operationId": method["id"],
        "parameters": parameters,
        "responses": responses,
    }
    if method.get("description"):
        operation["description"] = method["description"]
    if "request" in method:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(method["request"])}},
        }
    return operation


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref.rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def convert(document: dict[str, Any], method_ids: Iterable[str]) -> dict[str, Any]:
    """The OpenAPI 3.0 description of the methods ``method_ids`` of ``document``."""
    by_id = {m["id"]: m for m in _methods(document.get("resources", {}))}
    wanted = list(method_ids)
    missing = [m for m in wanted if m not in by_id]
    if missing:
        raise KeyError(f"the discovery document has no method {', '.join(missing)}")
    version = document["version"]
    paths: dict[str, dict[str, Any]] = {}
    prefix = ""
    for method_id in wanted:
        method = by_id[method_id]
        flat = str(method.get("flatPath") or method["path"])
        head, sep, rest = flat.partition(f"{version}/")
        if not sep:
            raise ValueError(f"{method_id}: path {flat!r} does not start with the version")
        if prefix and prefix != head + version:
            raise ValueError(f"{method_id}: path {flat!r} has another version prefix")
        prefix = head + version
        operation = _operation({**method, "flatPath": rest})
        paths.setdefault("/" + rest, {})[method["httpMethod"].lower()] = operation
    schemas: dict[str, Any] = {"GoogleError": ERROR_SCHEMA}
    pending = list(_refs(paths))
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        converted = _schema(document["schemas"][name])
        schemas[name] = converted
        pending.extend(_refs(converted))
    root = str(document["rootUrl"]).rstrip("/") + "/" + str(document.get("servicePath", ""))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": document.get("title", document["name"]),
            "version": version,
            "description": f"Converted from Google's discovery document {document['id']} "
            f"(revision {document.get('revision', '?')}).",
        },
        "servers": [{"url": root.rstrip("/") + "/" + prefix}],
        "security": [{"GoogleOAuth2": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"GoogleOAuth2": {"type": "http", "scheme": "bearer"}},
        },
    }


def convert_text(source: Path, method_ids: Iterable[str]) -> str:
    """The conversion of ``source`` as the command writes it."""
    raw = source.read_bytes()
    result = convert(json.loads(raw), method_ids)
    result["info"]["x-converted-from"] = {
        "file": source.name,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "tool": "python -m hub.sandbox.google_discovery",
    }
    return json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("methods", nargs="+", help="method ids, e.g. gmail.users.messages.list")
    args = parser.parse_args(argv)
    args.out.write_text(convert_text(args.source, args.methods), encoding="utf-8")
    print(f"{args.out}: {len(args.methods)} methods from {args.source.name}")


if __name__ == "__main__":
    main()
