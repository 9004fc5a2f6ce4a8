"""The error a config that cannot be used raises, and the formatter that turns pydantic's errors into lines a
person can act on (`source: field.sub: message (got value)`). Imported by the schema's edge, the method registry
and the CLI; depends on nothing of ours."""
from __future__ import annotations

from pydantic import ValidationError


class TrainConfigError(ValueError):
    """A config that cannot be used: the message names the source, the field and what is allowed."""


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per problem: `source: field.sub: message (got value)`."""
    lines = []
    for err in exc.errors():
        # an unknown key may hold newlines or be empty: quote it so each problem stays one readable line
        where = ".".join(str(p) if str(p).isprintable() and str(p).strip() == str(p) != "" else repr(str(p))
                         for p in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{source}: {where}: {err['msg']}{got}")
    return "\n".join(lines)
