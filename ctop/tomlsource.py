"""A parsed TOML file that knows on which line each key was written, so every config error
can name its line. tomllib keeps no positions: the lines come from one pass over the text
that follows table headers ([a.b], [[a]]) and assignments (key = ..., a.b = ...)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentd.tomlfile import ConfigError, read_toml

# A key path: table and key names, with the element index of an array of tables
# (("alert", 1, "when") is `when` in the second [[alert]]).
KeyPath = tuple[str | int, ...]

_KEY = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)


def _parts(dotted: str) -> list[str]:
    return [p[1:-1] if p[0] in "\"'" else p for p in _PART.findall(dotted)]


def key_lines(text: str) -> dict[KeyPath, int]:
    """Each table header's and assigned key's path -> its 1-based line (the first, if a
    path is written twice: TOML refuses that anyway)."""
    lines: dict[KeyPath, int] = {}
    last_element: dict[KeyPath, int] = {}  # array of tables -> index of its last element
    table: KeyPath = ()
    multiline = ""  # the quotes of a multi-line string being skipped
    for number, line in enumerate(text.splitlines(), start=1):
        if multiline:
            if multiline in line:
                multiline = ""
            continue
        if m := _HEADER.match(line):
            parts = _parts(m[2])
            resolved: KeyPath = ()
            for part in parts[:-1]:  # [a.b] inside the last [[a]]: a's last element
                resolved += (part,)
                if resolved in last_element:
                    resolved += (last_element[resolved],)
            resolved += (parts[-1],)
            if m[1] == "[[":
                index = last_element.get(resolved, -1) + 1
                last_element[resolved] = index
                resolved += (index,)
            table = resolved
            lines.setdefault(table, number)
        elif m := _ASSIGN.match(line):
            lines.setdefault(table + tuple(_parts(m[1])), number)
            rest = line[m.end():]
            for quotes in ('"""', "'''"):
                if rest.count(quotes) % 2 == 1:
                    multiline = quotes
    return lines


@dataclass(frozen=True)
class TomlSource:
    """A parsed TOML file that can say on which line a key was written."""

    path: str
    data: Mapping[str, Any]
    text: str = ""
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TomlSource:
        text, data = read_toml(path)
        return cls(str(path), data, text, key_lines(text))

    def line(self, path: KeyPath) -> int:
        """The line of the key at `path`; for a key not written (a required one missing),
        the line of the nearest table around it; 1 for the top level."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def line_of(self, dotted: str) -> int:
        """line() of a dotted key ("store.path")."""
        return self.line(tuple(dotted.split(".")))

    def error(self, path: KeyPath, problem: str, label: str | None = None) -> ConfigError:
        """'file:line: key 'a.b': problem' (label: how the message names the key)."""
        label = label or ".".join(map(str, path))
        return ConfigError(f"{self.path}:{self.line(path)}: key '{label}': {problem}")
