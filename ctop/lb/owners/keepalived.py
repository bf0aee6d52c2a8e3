"""keepalived as the owner of an IPVS table: its virtual_server / real_server blocks, and the
include ctop writes so an operator's weight survives keepalived's reload.

keepalived sets every real server to its configured `weight` when it (re)loads. A keyword
given twice in a block takes the later value, and `include` may stand on any line, so the
operator adds, once, after `weight` in each real_server block ctop may change:

    real_server 10.1.1.2 80 {
        weight 3
        include /etc/keepalived/ctop/10.1.0.1_80/10.1.1.2_80.conf
    }

ctop writes that file (`weight 0` for a drain — keepalived >= 2.2 accepts 0 — or the weight
an operator set) and reloads keepalived (SIGHUP to its main process). A missing file is only a
warning to keepalived ("Config files missing"), so the line can be added before ctop ever
wrote one. When the line is not there, ctop refuses the change and names the block to edit:
keepalived's next reload would undo it.
"""

from __future__ import annotations

import glob
import os
import re
import signal
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

from ctop.lb.owners.haproxy_state import write_atomically

DEFAULT_CONFIG = "/etc/keepalived/keepalived.conf"
DEFAULT_DIR = "/etc/keepalived/ctop"
_MAX_INCLUDE_DEPTH = 8  # keepalived's own limit is similar; a loop must not hang ctop


@dataclass(slots=True)
class RealServerBlock:
    ip: str
    port: int
    weight: int | None
    where: str  # "file:line" of the real_server line
    includes: list[str] = field(default_factory=list)  # include patterns inside the block


@dataclass(slots=True)
class VirtualServerBlock:
    ip: str  # "" for a fwmark or group
    port: int
    protocol: str  # TCP | UDP | SCTP
    where: str
    real_servers: list[RealServerBlock] = field(default_factory=list)

    @property
    def key(self) -> str:
        """ctop's IPVS service key ("TCP 10.1.0.1:80")."""
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.protocol} {host}:{self.port}"


def _tokens(path: Path, depth: int = 0) -> list[tuple[list[str], str, Path]]:
    """(words, "file:line", file) for every line, includes expanded in place ({ and } are
    words of their own)."""
    if depth > _MAX_INCLUDE_DEPTH:
        return []
    try:
        text = path.read_text()
    except OSError:
        return []
    out: list[tuple[list[str], str, Path]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"[#!]", raw, maxsplit=1)[0]
        words = line.replace("{", " { ").replace("}", " } ").split()
        if not words:
            continue
        if words[0] == "include" and len(words) > 1:
            pattern = words[1] if words[1].startswith("/") else str(path.parent / words[1])
            # the include line itself is kept (the block remembers it), then its files
            out.append((words, f"{path}:{n}", path))
            for name in sorted(glob.glob(pattern)):
                out.extend(_tokens(Path(name), depth + 1))
            continue
        out.append((words, f"{path}:{n}", path))
    return out


def parse(config: str | os.PathLike[str], own_dir: str | os.PathLike[str] | None = None
          ) -> list[VirtualServerBlock]:
    """Every virtual_server of a keepalived config (includes followed; the files ctop wrote
    under `own_dir` skipped, so a weight is the operator's configured one)."""
    own = str(Path(own_dir)) + os.sep if own_dir is not None else None
    services: list[VirtualServerBlock] = []
    stack: list[str] = []  # the kinds of the blocks we are inside
    pending = ""  # a block's kind whose "{" stands on a later line
    vs: VirtualServerBlock | None = None
    rs: RealServerBlock | None = None
    for words, where, source in _tokens(Path(config)):
        if own is not None and str(source).startswith(own):
            continue
        key = words[0]
        top = stack[-1] if stack else ""
        if key == "virtual_server" and not stack and len(words) > 2:
            vs = VirtualServerBlock(words[1], _port(words[2]), "TCP", where)
            services.append(vs)
        elif key == "real_server" and top == "virtual_server" and vs is not None:
            port = _port(words[2]) if len(words) > 2 and words[2] != "{" else vs.port
            rs = RealServerBlock(words[1], port, None, where)
            vs.real_servers.append(rs)
        elif key == "protocol" and top == "virtual_server" and vs is not None and len(words) > 1:
            vs.protocol = words[1].upper()
        elif key == "weight" and top == "real_server" and rs is not None and len(words) > 1:
            rs.weight = _port(words[1])
        elif key == "include" and top == "real_server" and rs is not None and len(words) > 1:
            rs.includes.append(words[1])
        if key not in ("{", "}"):
            pending = key
        for w in words:
            if w == "{":
                stack.append(pending)
                pending = ""
            elif w == "}" and stack:
                kind = stack.pop()
                if kind == "real_server":
                    rs = None
                elif kind == "virtual_server":
                    vs = None
    return services


def _port(word: str) -> int:
    return int(word) if word.isdigit() else 0


def include_path(directory: str | os.PathLike[str], service: VirtualServerBlock,
                 server: RealServerBlock) -> Path:
    return Path(directory) / f"{service.ip}_{service.port}" / f"{server.ip}_{server.port}.conf"


def find(services: list[VirtualServerBlock], service_key: str, server_key: str
         ) -> tuple[VirtualServerBlock, RealServerBlock] | None:
    """The blocks of ctop's IPVS service "TCP 10.1.0.1:80" and real server "10.1.1.2:80"."""
    for vs in services:
        if vs.key != service_key:
            continue
        for rs in vs.real_servers:
            host = f"[{rs.ip}]" if ":" in rs.ip else rs.ip
            if f"{host}:{rs.port}" == server_key:
                return vs, rs
    return None


def includes_file(rs: RealServerBlock, path: Path) -> bool:
    """Whether one of the block's include lines reads `path` (globs allowed; a relative
    pattern is relative to the file holding the real_server line)."""
    base = Path(rs.where.rsplit(":", 1)[0]).parent
    for pattern in rs.includes:
        full = pattern if pattern.startswith("/") else str(base / pattern)
        if fnmatch(str(path), full):
            return True
    return False


def write_weight(path: Path, weight: int | None) -> None:
    """The include: `weight N`, or no file (keepalived's own weight) when None."""
    if weight is None:
        path.unlink(missing_ok=True)
        return
    write_atomically(path, f"# written by ctop (ctop lb log says who and why)\nweight {weight}\n")


def reload(pid: int) -> None:
    """keepalived re-reads its config on SIGHUP (to the main process)."""
    os.kill(pid, signal.SIGHUP)
