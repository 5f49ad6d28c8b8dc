"""YAML loading that remembers line numbers, and validation errors naming file, rule, field, line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


class LineDict(dict):  # type: ignore[type-arg]
    """A mapping from YAML that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """Line of ``key`` in the file, or of the mapping itself when the key is absent."""
        return self.key_lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[str(key)] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class Problem:
    """One validation problem: where (rule, field, line) and what."""

    rule: str
    field: str
    line: int
    message: str


class ConfigError(ValueError):
    """The rule file is invalid; ``problems`` lists every problem found, not only the first."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One human-readable line per problem: ``file:line: rule 'x' field 'y': message``."""
        out = []
        for p in self.problems:
            where = f"rule {p.rule!r} " if p.rule else ""
            out.append(f"{self.path}:{p.line}: {where}field {p.field!r}: {p.message}")
        return out

    def as_json(self) -> list[dict[str, Any]]:
        """The problems as plain dicts (for the API)."""
        return [{"file": self.path, "rule": p.rule, "field": p.field, "line": p.line, "message": p.message}
                for p in self.problems]  # fmt: skip


def load_yaml(text: str, path: str) -> Any:
    """Parse YAML with line numbers; a syntax error becomes a :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(path, [Problem("", "(syntax)", line, str(exc).splitlines()[0])]) from exc


class Checker:
    """Collects problems while a file is read, so one run reports all of them."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, rule: str, field: str, where: Any, message: str, key: str | None = None) -> None:
        """Record a problem at ``where`` (a LineDict, its ``key`` line if given)."""
        line = 0
        if isinstance(where, LineDict):
            line = where.line_of(key) if key else where.line
        self.problems.append(Problem(rule, field, line, message))

    def number(self, rule: str, doc: Any, key: str, default: float | None = None, *, minimum: float = 0.0,
               prefix: str = "") -> float | None:  # fmt: skip
        """``doc[key]`` as a number >= minimum (or the default when absent)."""
        if not isinstance(doc, dict) or key not in doc:
            return default
        v = doc[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < minimum:
            self.add(rule, prefix + key, doc, f"must be a number >= {minimum:g}, got {v!r}", key)
            return default
        return float(v)

    def string(self, rule: str, doc: Any, key: str, default: str | None = None, *, choices: tuple[str, ...] = (),
               prefix: str = "") -> str | None:  # fmt: skip
        """``doc[key]`` as a non-empty string (one of ``choices`` if given)."""
        if not isinstance(doc, dict) or key not in doc:
            return default
        v = doc[key]
        if not isinstance(v, str) or not v:
            self.add(rule, prefix + key, doc, f"must be a non-empty string, got {v!r}", key)
            return default
        if choices and v not in choices:
            self.add(
                rule, prefix + key, doc, f"must be one of {', '.join(choices)}, got {v!r}", key
            )
            return default
        return v

    def secret(self, rule: str, doc: Any, key: str, *, prefix: str = "") -> str | None:
        """A secret: ``key: value`` in the file, or ``key_env: NAME`` read from the environment.

        Production keeps secrets out of the file (``*_env``); a named variable that is unset or
        empty is an error at load, so a missing secret never turns into an unsigned webhook.
        """
        import os

        env_key = key + "_env"
        if isinstance(doc, dict) and env_key in doc:
            if key in doc:
                self.add(rule, prefix + key, doc, f"give {key} or {env_key}, not both", key)
                return None
            name = self.string(rule, doc, env_key, prefix=prefix)
            if name is None:
                return None
            value = os.environ.get(name, "")
            if not value:
                self.add(rule, prefix + env_key, doc, f"environment variable {name} is not set", env_key)
                return None
            return value
        return self.string(rule, doc, key, prefix=prefix)

    def strings(self, rule: str, doc: Any, key: str, default: tuple[str, ...] = (), *,
                choices: tuple[str, ...] = (), prefix: str = "") -> tuple[str, ...]:  # fmt: skip
        """``doc[key]`` as a list of strings (a single string is a list of one)."""
        if not isinstance(doc, dict) or key not in doc:
            return default
        v = doc[key]
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            self.add(
                rule, prefix + key, doc, f"must be a string or a list of strings, got {v!r}", key
            )
            return default
        bad = [i for i in items if choices and i not in choices]
        if bad:
            self.add(
                rule,
                prefix + key,
                doc,
                f"unknown value(s) {bad}; expected some of {', '.join(choices)}",
                key,
            )
            return default
        return tuple(items)

    def unknown_keys(self, rule: str, doc: Any, allowed: set[str], prefix: str = "") -> None:
        """Flag keys that are not in ``allowed`` (a typo must not be silently ignored)."""
        if isinstance(doc, dict):
            for k in doc:
                if k not in allowed:
                    self.add(
                        rule,
                        prefix + str(k),
                        doc,
                        f"unknown field; expected one of {sorted(allowed)}",
                        str(k),
                    )
