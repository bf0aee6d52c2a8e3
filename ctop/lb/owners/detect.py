"""Who owns the IPVS table: a running keepalived whose config has virtual_server blocks, or a
running ldirectord. Read from /proc (each process's command line gives its config) and the
configs themselves; cheap enough to run before every change (a restarted owner has a new pid).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ctop.lb.owners import keepalived, ldirectord


@dataclass(frozen=True, slots=True)
class TableOwner:
    kind: str  # "keepalived" | "ldirectord"
    pid: int
    config: Path
    services: tuple[str, ...]  # the IPVS service keys its config holds ("TCP 10.1.0.1:80")
    problem: str = ""  # its config could not be read

    def text(self) -> str:
        what = self.problem or f"{len(self.services)} virtual server" + (
            "s" if len(self.services) != 1 else "")
        return f"{self.kind} (pid {self.pid}, {self.config}): {what}"


def _processes(proc: Path) -> Iterator[tuple[int, list[str], int]]:
    """(pid, argv, parent pid) of every process we can read."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if argv:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            yield int(entry.name), argv, ppid


def keepalived_config(argv: list[str]) -> Path:
    """`-f FILE`, `-fFILE`, `--use-file FILE` or `--use-file=FILE`; else the default."""
    for i, arg in enumerate(argv[1:], 1):
        if arg in ("-f", "--use-file") and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--use-file="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--"):
            return Path(arg[2:])
    return Path(keepalived.DEFAULT_CONFIG)


def _ldirectord_args(argv: list[str]) -> list[str] | None:
    """The arguments after ldirectord's own path (run directly or by perl), or None."""
    for i, arg in enumerate(argv[:3]):
        if os.path.basename(arg) == "ldirectord":
            return argv[i + 1:]
    return None


def detect(proc: str | os.PathLike[str] = "/proc") -> list[TableOwner]:
    procs = list(_processes(Path(proc)))
    names = {pid: os.path.basename(argv[0]) for pid, argv, _ in procs}
    owners: list[TableOwner] = []
    seen: set[tuple[str, Path]] = set()
    for pid, argv, ppid in sorted(procs):
        if os.path.basename(argv[0]) == "keepalived" and names.get(ppid) != "keepalived":
            config = keepalived_config(argv)
            if ("keepalived", config) in seen:
                continue
            seen.add(("keepalived", config))
            try:
                services = tuple(vs.key for vs in keepalived.parse(config))
            except (OSError, ValueError) as exc:
                owners.append(TableOwner("keepalived", pid, config, (), f"unreadable: {exc}"))
                continue
            if services:  # a VRRP-only keepalived does not own the table
                owners.append(TableOwner("keepalived", pid, config, services))
        elif (args := _ldirectord_args(argv)) is not None and args:
            config = ldirectord.config_path(args)
            if ("ldirectord", config) in seen:
                continue
            seen.add(("ldirectord", config))
            try:
                services = tuple(v.key for v in ldirectord.parse(config).virtuals)
            except (OSError, ValueError) as exc:
                owners.append(TableOwner("ldirectord", pid, config, (), f"unreadable: {exc}"))
                continue
            owners.append(TableOwner("ldirectord", pid, config, services))
    return owners
