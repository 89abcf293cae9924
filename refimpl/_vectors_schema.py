"""A small validator for the subset of JSON Schema (draft 2020-12) that the vectors schema uses.

refimpl has no dependency on the ``jsonschema`` package; this module checks the keywords
``type``, ``const``, ``enum``, ``properties``, ``required``, ``additionalProperties``,
``minProperties``, ``items``, ``minItems``, ``minimum``, ``pattern``, ``anyOf`` and local
``$ref`` (``#/$defs/...``), and ignores the annotations ``$schema``, ``$id``, ``title``,
``description`` and ``$comment``. Any other keyword raises ``ValueError``, so the schema cannot
silently use something this validator does not check.
"""

from __future__ import annotations

import re

__all__ = ["SchemaError", "validate", "KEYWORDS"]

KEYWORDS = {"type", "const", "enum", "properties", "required", "additionalProperties", "minProperties",
            "items", "minItems", "minimum", "pattern", "anyOf", "$ref", "$defs",
            "$schema", "$id", "title", "description", "$comment"}


class SchemaError(ValueError):
    """The instance does not follow the schema; ``path`` says where (``cases[3].steps[0].t``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path or '(the document)'}: {message}")
        self.path = path


def _is_type(x, name: str) -> bool:
    if name == "object":
        return isinstance(x, dict)
    if name == "array":
        return isinstance(x, list)
    if name == "string":
        return isinstance(x, str)
    if name == "boolean":
        return isinstance(x, bool)
    if name == "null":
        return x is None
    if name == "integer":
        return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer())
    if name == "number":
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    raise ValueError(f"unknown JSON Schema type {name!r}")


def _show(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _equal(a, b) -> bool:
    """JSON equality: 1 == 1.0, but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def validate(instance, schema: dict, *, root: dict | None = None, path: str = "") -> None:
    """Raise :class:`SchemaError` at the first place where ``instance`` breaks ``schema``."""
    root = schema if root is None else root
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"the schema uses keyword(s) {sorted(unknown)} that this validator does not check")
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local references are supported, got $ref {ref!r}")
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        validate(instance, target, root=root, path=path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(instance, t) for t in types):
            raise SchemaError(path, f"expected {' or '.join(types)}, got {_show(instance)}")
    if "const" in schema and not _equal(instance, schema["const"]):
        raise SchemaError(path, f"expected {schema['const']!r}, got {_show(instance)}")
    if "enum" in schema and not any(_equal(instance, e) for e in schema["enum"]):
        raise SchemaError(path, f"expected one of {schema['enum']!r}, got {_show(instance)}")
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(instance, option, root=root, path=path)
                break
            except SchemaError as e:
                errors.append(str(e).split(": ", 1)[-1])
        else:
            raise SchemaError(path, f"matches none of the allowed forms ({'; '.join(errors)})")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool) and "minimum" in schema:
        if instance < schema["minimum"]:
            raise SchemaError(path, f"{instance!r} is below the minimum {schema['minimum']!r}")
    if isinstance(instance, str) and "pattern" in schema and not re.search(schema["pattern"], instance):
        raise SchemaError(path, f"{instance!r} does not match the pattern {schema['pattern']!r}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            raise SchemaError(path, f"expected at least {schema['minItems']} item(s), got {len(instance)}")
        if "items" in schema:
            for i, item in enumerate(instance):
                validate(item, schema["items"], root=root, path=f"{path}[{i}]")
    if isinstance(instance, dict):
        if len(instance) < schema.get("minProperties", 0):
            raise SchemaError(path, f"expected at least {schema['minProperties']} member(s), got {len(instance)}")
        for key in schema.get("required", []):
            if key not in instance:
                raise SchemaError(path, f"the member {key!r} is missing")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            where = f"{path}.{key}" if path else key
            if key in props:
                validate(value, props[key], root=root, path=where)
            elif extra is False:
                raise SchemaError(path, f"unexpected member {key!r} (allowed: {', '.join(sorted(props))})")
            elif isinstance(extra, dict):
                validate(value, extra, root=root, path=where)
