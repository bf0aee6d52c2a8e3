"""ldirectord as the owner of an IPVS table: its config, and the maintenance files through
which an operator's drain survives ldirectord's checks and reloads.

ldirectord sets each real server up (its configured weight) or down (weight 0 with
`quiescent = yes`, removed from the table otherwise) by its own health checks, and again on
every reload. With `maintenancedir = DIR` it first looks, at every check, for a file in DIR
naming the server and forces it down while one exists (`_check_real_for_maintenance` in
Debian's /usr/sbin/ldirectord): `IP:PORT`, `IP`, then the reverse-DNS name and short name,
each with and without `:PORT`. ctop writes `IP:PORT` on a drain or maint and removes it when
the server is put back, so the drain is what ldirectord itself keeps. ldirectord knows only
up and down: a weight set at runtime lasts until its next reload (the drift guard shows it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = "/etc/ha.d/ldirectord.cf"


@dataclass(slots=True)
class LDVirtual:
    ip: str
    port: int
    protocol: str  # TCP | UDP (fwm services are not mapped)
    where: str
    reals: dict[str, int] = field(default_factory=dict)  # "ip:port" -> configured weight

    @property
    def key(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.protocol} {host}:{self.port}"


@dataclass(slots=True)
class LDConfig:
    path: Path
    maintenancedir: Path | None
    quiescent: bool
    virtuals: list[LDVirtual]


def config_path(argv: list[str]) -> Path:
    """The config a running ldirectord uses, from its arguments (`ldirectord [CFG] CMD`),
    resolved as ldirectord resolves it (/etc/ha.d/CFG, /etc/ha.d/conf/CFG, CFG)."""
    args = [a for a in argv if not a.startswith("-")]
    name = args[0] if len(args) >= 2 else "ldirectord.cf"
    for candidate in (Path("/etc/ha.d") / name, Path("/etc/ha.d/conf") / name):
        if not name.startswith("/") and candidate.is_file():
            return candidate
    return Path(name)


def _addr(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", text)
    return (m.group(1), int(m.group(2))) if m else (text, 0)


def parse(path: str | os.PathLike[str]) -> LDConfig:
    p = Path(path)
    maint: Path | None = None
    quiescent = True  # ldirectord's default
    virtuals: list[LDVirtual] = []
    current: LDVirtual | None = None
    for n, raw in enumerate(p.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indented = line[0] in " \t"
        key, _, value = line.strip().partition("=")
        key, value = key.strip(), value.strip()
        if not indented:
            current = None
            if key == "virtual" and ":" in value:
                ip, port = _addr(value)
                current = LDVirtual(ip, port, "TCP", f"{p}:{n}")
                virtuals.append(current)
            elif key == "maintenancedir":
                maint = Path(value)
            elif key == "quiescent":
                quiescent = value.lower() in ("yes", "true", "1")
        elif current is not None:
            if key == "real":
                words = value.split()
                ip, port = _addr(words[0].split("->")[0])
                weight = int(words[2]) if len(words) > 2 and words[2].isdigit() else 1
                current.reals[f"{ip}:{port or current.port}"] = weight
            elif key == "protocol" and value.lower() in ("tcp", "udp"):
                current.protocol = value.upper()
    return LDConfig(p, maint, quiescent, virtuals)


def maintenance_file(cfg: LDConfig, server_key: str) -> Path | None:
    """The file that puts this real server ("10.1.1.2:80") in maintenance for ldirectord."""
    if cfg.maintenancedir is None:
        return None
    ip, port = _addr(server_key)
    return cfg.maintenancedir / f"{ip}:{port}"


def other_maintenance_files(cfg: LDConfig, server_key: str) -> list[Path]:
    """Files ctop did not write that still hold the server down (the whole host's `IP`)."""
    if cfg.maintenancedir is None:
        return []
    ip, _ = _addr(server_key)
    return [f for f in (cfg.maintenancedir / ip,) if f.exists()]
