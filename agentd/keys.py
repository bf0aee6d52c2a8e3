"""Key files: the cluster key, and per-node keys derived from a master secret.

The agent reads its key file with `load_key`; the director reads the cluster key the same
way, or holds a master secret and derives each node's key with `node_key` (docs/protocol.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path


class KeyError_(Exception):
    """The cluster key file is missing, unreadable, too open or too short."""


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read the cluster key: a file of mode 0600 (or stricter) holding at least 16 bytes.

    Text keys (hex or any printable secret) are used as their stripped bytes.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyError_(
            f"cluster key file {p} does not exist; create one with: "
            f"head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {p} && chmod 600 {p}"
        ) from None
    except OSError as e:
        raise KeyError_(f"cluster key file {p}: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(
            f"cluster key file {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}"
        )
    try:
        key = p.read_bytes().strip()
    except OSError as e:
        raise KeyError_(f"cluster key file {p}: {e.strerror}") from None
    if len(key) < 16:
        raise KeyError_(f"cluster key file {p} holds {len(key)} bytes; at least 16 are needed")
    return key


NODE_KEY_LABEL = b"ctop node key v1\0"


def node_key(master: bytes, node: str) -> bytes:
    """The key of one node in per-node mode: HMAC-SHA256(master, label | node id), as the hex
    text `ctop keys issue NODE` prints for the node's key file (which load_key reads as is).
    Only the director holds the master secret; a node's key signs for that node id alone."""
    return hmac.new(master, NODE_KEY_LABEL + node.encode(), hashlib.sha256).hexdigest().encode()

