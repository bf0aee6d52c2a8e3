"""Reading TOML config files so that every error names the file and the line.

Shared by agentd's config and the director's (ctop may import agentd, never the reverse).
tomllib keeps no positions, so the line of a key is found in the text by its assignment.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration that cannot be used; the message is meant for the operator."""


def read_toml(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """The file's text and parsed tables; ConfigError with "path:line:" on a syntax error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file: {e}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # Python 3.11's TOMLDecodeError has no lineno attribute; its message ends in
        # "(at line L, column C)".
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)$", msg)
        if m:
            reason = msg[: m.start()].strip()
            raise ConfigError(f"{path}:{m[1]}: invalid TOML: {reason} (column {m[2]})") from None
        if msg.endswith("(at end of document)"):  # e.g. an unterminated string or table
            reason = msg[: -len("(at end of document)")].strip()
            line = max(len(text.splitlines()), 1)
            raise ConfigError(f"{path}:{line}: invalid TOML: {reason} (at the end of the file)"
                              ) from None
        raise ConfigError(f"{path}: invalid TOML: {msg}") from None


def assignment_line(
    lines: list[str], key: str, start: int = 0, end: int | None = None
) -> int | None:
    """The 1-based number of the first line in lines[start:end] that assigns `key`
    (bare or quoted), or None."""
    pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*=')
    for i in range(start, len(lines) if end is None else end):
        if pattern.match(lines[i]):
            return i + 1
    return None
