"""Turn pydantic's validation errors into messages an installer can act on."""

from __future__ import annotations

from pydantic import ValidationError


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` lists one line per bad key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem: the dotted key, the value given, and what is allowed."""
    lines = []
    for problem in error.errors():
        key = _dotted(problem["loc"])
        kind = problem["type"]
        given = problem.get("input")
        context = problem.get("ctx") or {}
        if kind == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        elif kind == "missing":
            lines.append(f"{key}: required key is missing")
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            lines.append(f"{key} = {given!r} is out of range: {_bound(kind, context)}")
        else:
            lines.append(f"{key} = {given!r}: {problem['msg']}" if given is not None and not isinstance(
                given, dict) else f"{key}: {problem['msg']}")
    return lines


def _dotted(location: tuple) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts) or "(top level)"


def _bound(kind: str, context: dict) -> str:
    symbols = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
               "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}
    symbol, name = symbols[kind]
    return f"allowed {symbol} {context.get(name)}"
