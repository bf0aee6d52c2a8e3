"""HAProxy's server-state file: saved after every change so a reload keeps drains and weights.

HAProxy reads the state at start (and on a reload) when its config says so:

    global
        server-state-file /var/lib/haproxy/server-state     # relative names: server-state-base
    defaults                                                # or in a backend
        load-server-state-from-file global                  # or `local`: one file per backend

The file is exactly the answer to `show servers state` (a version line, a `#` header, one
line per server). HAProxy never writes it itself: whoever changes a server at runtime must.
ctop saves it after each change it makes (write to a temporary file, then rename, so a reload
never reads half a file).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ctop.lb.actions import Plan
from ctop.lb.base import LBError
from ctop.lb.haproxy import HAProxyBalancer

_SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "peers", "resolvers",
             "userlist", "cache", "program", "http-errors", "ring", "mailers")


class StateConfigError(ValueError):
    """The HAProxy config cannot keep a state file; the message says what to add."""


@dataclass(frozen=True, slots=True)
class StateTarget:
    path: Path
    backend: str | None  # None: every backend in one file (`load-server-state-from-file global`)


def _lines(text: str) -> Iterator[list[str]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            yield line.split()


def targets_from_config(config_path: str | os.PathLike[str]) -> tuple[StateTarget, ...]:
    """Where HAProxy loads server state from, read from its config file.

    Raises StateConfigError when the config never loads a state file (a reload would lose
    every runtime change) or names none."""
    path = Path(config_path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StateConfigError(f"cannot read the HAProxy config {path}: {exc.strerror}") from exc
    state_file = base = None
    default_mode = "none"
    backends: dict[str, dict[str, str]] = {}  # name -> {"mode": ..., "file": ...}
    section, name = "", ""
    for words in _lines(text):
        if words[0] in _SECTIONS:
            section, name = words[0], (words[1] if len(words) > 1 else "")
            if section in ("backend", "listen"):
                backends[name] = {"mode": default_mode}
            continue
        key, arg = words[0], (words[1] if len(words) > 1 else "")
        if section == "global" and key == "server-state-file":
            state_file = arg
        elif section == "global" and key == "server-state-base":
            base = arg
        elif key == "load-server-state-from-file" and section == "defaults":
            default_mode = arg
        elif key == "load-server-state-from-file" and section in ("backend", "listen"):
            backends[name]["mode"] = arg
        elif key == "server-state-file" and section in ("backend", "listen"):
            backends[name]["file"] = arg

    def resolve(file: str) -> Path:
        return Path(file) if file.startswith("/") or not base else Path(base) / file

    out: list[StateTarget] = []
    if any(b["mode"] == "global" for b in backends.values()):
        if state_file is None:
            raise StateConfigError(
                f"{path}: load-server-state-from-file global, but no server-state-file in "
                "its global section")
        out.append(StateTarget(resolve(state_file), None))
    for bname, b in backends.items():
        if b["mode"] == "local":
            out.append(StateTarget(resolve(b.get("file", bname)), bname))
    if not out:
        raise StateConfigError(
            f"{path} never loads a server-state file, so a reload forgets every drain and "
            "weight: add `server-state-file /var/lib/haproxy/server-state` to its global "
            "section and `load-server-state-from-file global` to its defaults")
    return tuple(out)


def write_atomically(path: Path, text: str) -> None:
    """Whole or not at all: HAProxy may reload at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HAProxyStateFile:
    """Keeps one HAProxy's state file(s) up to date with its runtime state."""

    def __init__(self, balancer: HAProxyBalancer, targets: tuple[StateTarget, ...]) -> None:
        self.balancer = balancer
        self.targets = targets

    def describe(self) -> str:
        return ", ".join(str(t.path) for t in self.targets)

    def save(self) -> None:
        """`show servers state` into every target; raises LBError naming the file."""
        for t in self.targets:
            line = "show servers state" + (f" {t.backend}" if t.backend else "")
            text = self.balancer.command(line)
            if not text.lstrip().startswith("1") or "# be_id" not in text:
                raise LBError(f"unexpected answer to '{line}': {text.strip()[:200]}",
                              command=line)
            try:
                write_atomically(t.path, text)
            except OSError as exc:
                raise LBError(f"cannot write the HAProxy state file {t.path}: "
                              f"{exc.strerror or exc}") from exc

    def after_change(self, plan: Plan) -> str:
        """The controller's hook: save after a change of this balancer; a note on failure."""
        if plan.balancer != self.balancer.name:
            return ""
        try:
            self.save()
        except LBError as exc:
            return f"; NOT saved to the state file, a reload would undo it: {exc.message}"
        return ""
