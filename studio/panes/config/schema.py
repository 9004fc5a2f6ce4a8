"""Turn a pydantic JSON schema into a flat list of form fields (one source of truth for the Config forms).

Each `FieldSpec` says which editor to draw (int, float, bool, enum, str, path, list, json), its bounds and
default, all read from `Model.model_json_schema()`; nested objects become dotted paths ("optim.lr"), read and set
with core.config.paths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PATH_HINTS = ("dir", "path", "file", "init", "tokenizer", "reference", "critic")


@dataclass
class FieldSpec:
    path: tuple[str, ...]
    kind: str                      # int | float | bool | enum | str | path | list | json
    title: str
    description: str = ""
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    choices: list = field(default_factory=list)
    nullable: bool = False

    @property
    def key(self) -> str:
        return ".".join(self.path)


def _resolve(node: dict, defs: dict) -> dict:
    ref = node.get("$ref")
    if ref:
        return defs[ref.split("/")[-1]]
    return node


def _split_nullable(node: dict, defs: dict) -> tuple[list[dict], bool]:
    options = node.get("anyOf") or node.get("oneOf")
    if not options:
        return [_resolve(node, defs)], False
    non_null = [_resolve(o, defs) for o in options if o.get("type") != "null"]
    return non_null, len(non_null) < len(options)


def fields_from_schema(schema: dict, prefix: tuple[str, ...] = (), skip: tuple[str, ...] = (),
                       defs: dict | None = None) -> list[FieldSpec]:
    """Every leaf field of `schema` in declaration order; nested objects are flattened under their name."""
    defs = defs if defs is not None else schema.get("$defs", {})
    out: list[FieldSpec] = []
    for name, raw in schema.get("properties", {}).items():
        if name in skip:
            continue
        path = prefix + (name,)
        options, nullable = _split_nullable(raw, defs)
        node = options[0] if len(options) == 1 else {}
        if node.get("type") == "object" and "properties" in node and not nullable:
            out += fields_from_schema(node, path, defs=defs)
            continue
        spec = FieldSpec(path, "json", raw.get("title") or node.get("title") or name.replace("_", " ").title(),
                         raw.get("description", node.get("description", "")), raw.get("default"),
                         nullable=nullable)
        t = node.get("type")
        if "enum" in node:
            spec.kind, spec.choices = "enum", list(node["enum"])
        elif "const" in node:
            spec.kind, spec.choices = "enum", [node["const"]]
        elif t in ("integer", "number"):
            spec.kind = "int" if t == "integer" else "float"
            spec.minimum, spec.maximum = node.get("minimum"), node.get("maximum")
            spec.exclusive_minimum = node.get("exclusiveMinimum")
            spec.exclusive_maximum = node.get("exclusiveMaximum")
        elif t == "boolean":
            spec.kind = "bool"
        elif t == "string":
            spec.kind = "path" if any(h in name for h in PATH_HINTS) else "str"
        elif t == "array" and node.get("items", {}).get("type") == "string" and "prefixItems" not in node:
            spec.kind = "list"
        out.append(spec)
    return out


def errors_by_field(exc, prefix: tuple[str, ...] = ()) -> dict[str, str]:
    """Map a pydantic ValidationError to {"dotted.path": message}; model-level errors go under the prefix."""
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = prefix + tuple(str(p) for p in err["loc"] if not isinstance(p, int))
        msg = err["msg"].removeprefix("Value error, ")
        out.setdefault(".".join(loc), msg)
    return out
