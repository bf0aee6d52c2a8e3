"""The `[pair]` section: where this director's keepalived tells its VRRP state, and the peer.

Parsed by ctop.config (errors by file:line); a config without `[pair]` has pair awareness off
and ctop works as a single director.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PairConfig:
    enabled: bool = False  # on when a [pair] section is given (unless enabled = false)
    # keepalived's main pid file (Debian: /run/keepalived.pid): the JSON dump is asked of it
    keepalived_pid_file: str = "/run/keepalived.pid"
    # where keepalived writes the dump: $TMPDIR/keepalived.json of its environment (/tmp)
    json_file: str = "/tmp/keepalived.json"
    json_every: float = 5.0  # seconds between full-state dumps (transitions come by the FIFO)
    # keepalived's `notify_fifo` (global_defs): "" = no FIFO, transitions seen at the next dump
    notify_fifo: str = ""
    # the other director's ctop, host:port of its [prometheus] listen (GET /pair); "" = the
    # peer's role only from the VRRP adverts our keepalived sees
    peer: str = ""
    peer_every: float = 1.0  # seconds between asks of the peer ctop
    sync_daemon: bool = True  # read `ipvsadm --list --daemon` (false on HAProxy-only pairs)
    ipvsadm: str = "ipvsadm"
