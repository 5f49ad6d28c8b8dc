"""Data files (YAML) read with the line of every value, so errors name the file, line and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

Path_ = tuple[Any, ...]


class DataFileError(ValueError):
    """A data file (or an override given in code) holds a value the product refuses."""

    def __init__(self, source: str, line: int | None, field_: str, message: str) -> None:
        self.source, self.line, self.field, self.message = source, line, field_, message
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field_ or '(top)'}: {message}")


@dataclass(frozen=True)
class Doc:
    """A parsed data file: plain Python values and the line of each path (1-based)."""

    source: str
    value: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def error(self, path: Path_, message: str) -> DataFileError:
        """An error naming this file, the line of ``path`` (or its nearest parent) and the field."""
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return DataFileError(self.source, self.lines.get(p), ".".join(str(x) for x in path), message)


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], ctor: Any) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = ctor.construct_object(k, deep=True)
            lines[path + (key,)] = k.start_mark.line + 1
            out[key] = _walk(v, path + (key,), lines, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, path + (i,), lines, ctor) for i, v in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)


def parse_yaml(text: str, source: str) -> Doc:
    """Parse YAML text (safe tags only); a syntax error is a :class:`DataFileError` too."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataFileError(source, mark.line + 1 if mark else None, "", f"not valid YAML: {exc}") from exc
    lines: dict[Path_, int] = {}
    value = None if node is None else _walk(node, (), lines, yaml.SafeLoader(""))
    return Doc(source, value, lines)


def load_yaml(path: str | Path) -> Doc:
    """Read and parse one YAML data file."""
    p = Path(path)
    return parse_yaml(p.read_text(encoding="utf-8"), str(p))


def from_mapping(value: Mapping[str, Any], source: str) -> Doc:
    """A value given in code (e.g. an assurance period's overrides), checked like a file."""
    return Doc(source, dict(value))
