"""The `[nats]` section of the director's config, typed, with file:line errors.

    [nats]
    servers = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"]
    name = "dir-a"             # this director's name in the pair (default: the host name)
    peers = ["dir-b"]          # directors that must confirm a change (pair-consistent actions)
    user = "ctop"              # and password, or password_file; or creds / nkey_seed files
    password_file = "/etc/ctop/nats.pass"
    tls_ca = "/etc/ctop/nats-ca.pem"   # TLS: CA, and a client certificate + key if required
    subject_prefix = "ctop"    # subjects and bucket names start with it
    replicas = 3               # JetStream replicas of ctop's buckets (3 on a 3-node cluster)
    confirm_timeout = "3s"     # how long an action waits for the peers' confirmation
    role = "director"          # or "collector": publish the groups' snapshots (docs/scaling.md)
    groups = ["web", "db"]     # a collector's groups (default: every group it receives)

The section is absent: no NATS at all (single-director ctop as before).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctop.config import Section

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # a NATS subject token and a KV key part
ROLES = ("director", "collector")
URL = re.compile(r"^(nats|tls|ws|wss)://[^\s,]+$")


@dataclass(frozen=True)
class NatsConfig:
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    name: str = ""  # this director in the pair; "" = the host name (see director_name)
    peers: tuple[str, ...] = ()
    user: str = ""
    password: str = ""
    password_file: str = ""
    creds: str = ""  # a NATS .creds file (JWT + nkey seed)
    nkey_seed: str = ""  # a file holding an nkey seed
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    subject_prefix: str = "ctop"
    replicas: int = 1
    connect_timeout: float = 2.0
    reconnect_wait: float = 0.5
    confirm_timeout: float = 3.0
    role: str = "director"  # director | collector (ctop.nats.collector)
    groups: tuple[str, ...] = ()  # a collector's groups; () = every group it receives

    @property
    def director_name(self) -> str:
        return self.name or safe_name(socket.gethostname())

    def read_password(self) -> str:
        """The password, from the file when password_file is set (read at connect time,
        so a rotated file is picked up on the next start)."""
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as f:
                return f.read().strip()
        return self.password


def safe_name(text: str) -> str:
    """A host name as a subject token: other characters become '_'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:64] or "director"


def parse_nats(sec: Section) -> NatsConfig | None:
    """The [nats] table (None when the file has none); errors name the file, line and key."""
    if not sec.table:
        return None

    def servers(v: Any) -> tuple[str, ...]:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
            raise ValueError(f"expected a list of nats:// URLs, got {v!r}")
        bad = [s for s in v if not URL.match(s)]
        if bad:
            raise ValueError(f"not a nats://host:port URL: {bad[0]!r}")
        return tuple(v)

    def names(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(s, str) and NAME.match(s) for s in v):
            raise ValueError(f"expected a list of director names (letters, digits, _ -), "
                             f"got {v!r}")
        return tuple(v)

    def name(v: Any) -> str:
        if not isinstance(v, str) or not NAME.match(v):
            raise ValueError(f"expected a name of letters, digits, _ and - (1..64), got {v!r}")
        return v

    def role(v: Any) -> str:
        if v not in ROLES:
            raise ValueError(f"expected one of {', '.join(ROLES)}, got {v!r}")
        return str(v)

    def groups(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list) or not all(isinstance(g, str) and g for g in v):
            raise ValueError(f"expected a list of group names, got {v!r}")
        return tuple(v)

    def replicas(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
            raise ValueError(f"expected 1..5, got {v!r}")
        return v

    def seconds(key: str, default: float, most: float) -> float:
        value = sec.duration(key, default)
        if not 0 < value <= most:
            raise sec.error(key, f"expected a duration in 0..{most:g} s, got {sec.table[key]!r}")
        return value

    cfg = NatsConfig(
        servers=sec.get("servers", NatsConfig.servers, servers, "a list of URLs"),
        name=sec.get("name", "", name, "a name"),
        peers=sec.get("peers", (), names, "a list of names"),
        user=sec.string("user", ""),
        password=sec.string("password", ""),
        password_file=sec.string("password_file", ""),
        creds=sec.string("creds", ""),
        nkey_seed=sec.string("nkey_seed", ""),
        tls_ca=sec.string("tls_ca", ""),
        tls_cert=sec.string("tls_cert", ""),
        tls_key=sec.string("tls_key", ""),
        subject_prefix=sec.get("subject_prefix", "ctop", name, "a name"),
        replicas=sec.get("replicas", 1, replicas, "1..5"),
        connect_timeout=seconds("connect_timeout", NatsConfig.connect_timeout, 60),
        reconnect_wait=seconds("reconnect_wait", NatsConfig.reconnect_wait, 60),
        confirm_timeout=seconds("confirm_timeout", NatsConfig.confirm_timeout, 60),
        role=sec.get("role", "director", role, "director or collector"),
        groups=sec.get("groups", (), groups, "a list of group names"),
    )
    _check_credentials(sec, cfg)
    if cfg.director_name in cfg.peers:
        raise sec.error("peers", f"names this director itself ({cfg.director_name!r})")
    sec.check_unknown()
    return cfg


def _check_credentials(sec: Section, cfg: NatsConfig) -> None:
    given = [k for k in ("password", "password_file") if getattr(cfg, k)]
    if len(given) > 1:
        raise sec.error("password_file", "give password or password_file, not both")
    if given and not cfg.user:
        raise sec.error(given[0], "needs user")
    kinds = [k for k, on in (("user", cfg.user), ("creds", cfg.creds),
                             ("nkey_seed", cfg.nkey_seed)) if on]
    if len(kinds) > 1:
        raise sec.error(kinds[1], f"give one way to log in, not {' and '.join(kinds)}")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise sec.error("tls_cert" if cfg.tls_key else "tls_key",
                        "a client certificate needs both tls_cert and tls_key")


def plain(cfg: NatsConfig) -> Mapping[str, Any]:
    """What `ctop status` may show of the config (no secrets)."""
    return {"servers": list(cfg.servers), "name": cfg.director_name, "peers": list(cfg.peers),
            "role": cfg.role, "groups": list(cfg.groups)}
