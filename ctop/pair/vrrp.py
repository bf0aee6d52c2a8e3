"""keepalived's own VRRP interfaces, parsed: the JSON state dump and the notify FIFO lines.

Formats as keepalived 2.2.7 writes them (source: keepalived/vrrp/vrrp_json.c and
keepalived/vrrp/vrrp_notify.c):

- JSON dump (on the signal `keepalived --signum=JSON` names, to $TMPDIR or /tmp
  `keepalived.json`): a list of {"data": {...}, "stats": {...}} per VRRP instance; data has
  "iname", "state" (0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT, 97 DELETED, 98 STOP),
  "effective_priority", "base_priority", "master_priority", "vrid", "last_transition" (epoch
  seconds, float), "vips" (absent when none: empty lists are left out; each the address
  followed by format_ipaddress()'s words, "set" last while it is on the interface); stats has
  "advert_rcvd".
- notify FIFO: one line per transition, `INSTANCE "VI_1" MASTER 150\\n` — type INSTANCE or
  GROUP, the quoted name, the state word (MASTER BACKUP FAULT STOP DELETED, or the events
  MASTER_RX_LOWER_PRI MASTER_PRIORITY BACKUP_PRIORITY) and the effective priority (0 for a
  group). The same FIFO also carries the checker's lines (VS / RS), which are not ours.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ctop.pair.view import InstanceView

STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT", 97: "DELETED", 98: "STOP"}
# A master that hears a lower-priority master: the peer claims MASTER too (split brain heals
# by itself only if adverts keep flowing both ways).
RX_LOWER = "MASTER_RX_LOWER_PRI"

_FIFO_LINE = re.compile(r'^(INSTANCE|GROUP) "((?:[^"\\]|\\.)*)" ([A-Z_]+) (-?\d+)$')


class KeepalivedError(ValueError):
    """keepalived's output could not be used; the message says why, in a user's words."""


def parse_json_dump(text: str) -> tuple[InstanceView, ...]:
    """The instances of a keepalived JSON dump; KeepalivedError names what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise KeepalivedError(f"the JSON dump is not JSON ({e})") from None
    if not isinstance(data, list):
        raise KeepalivedError("the JSON dump is not a list of instances")
    out = []
    for n, entry in enumerate(data, start=1):
        d = entry.get("data") if isinstance(entry, dict) else None
        if not isinstance(d, dict) or not isinstance(d.get("iname"), str):
            raise KeepalivedError(f"instance #{n} of the JSON dump has no data.iname")
        stats = entry.get("stats") if isinstance(entry.get("stats"), dict) else {}
        vips = d.get("vips", [])
        if not isinstance(vips, list) or not all(isinstance(v, str) and v for v in vips):
            raise KeepalivedError(f"instance {d['iname']!r} of the JSON dump: vips is not a "
                                  "list of addresses")
        try:
            out.append(InstanceView(
                name=d["iname"],
                state=STATES.get(int(d.get("state", -1)), f"state {d.get('state')}"),
                priority=int(d.get("effective_priority", 0)),
                base_priority=int(d.get("base_priority", 0)),
                master_priority=int(d.get("master_priority", 0)),
                vrid=int(d.get("vrid", 0)),
                vips=tuple(_address(v) for v in vips),
                vips_held=tuple(_address(v) for v in vips if _is_set(v)),
                last_transition=float(d.get("last_transition", 0.0)),
                adverts_received=int(stats.get("advert_rcvd", 0)),
            ))
        except (TypeError, ValueError) as e:
            raise KeepalivedError(f"instance {d['iname']!r} of the JSON dump: {e}") from None
    return tuple(out)


# words of format_ipaddress() (vrrp_ipaddress.c) that take a value: "set" after one of them
# is that value, not the flag
_VALUED = {"brd", "dev", "scope", "label", "peer", "track_group", "preferred_lft"}


def _address(vip: str) -> str:
    """'10.0.0.100/24 dev eth0 scope global set' -> '10.0.0.100/24'."""
    return vip.split()[0]


def _is_set(vip: str) -> bool:
    """keepalived has the address on the interface now (the word "set" at the end)."""
    words = vip.split()
    return any(w == "set" and words[k - 1] not in _VALUED for k, w in enumerate(words) if k)


@dataclass(frozen=True, slots=True)
class FifoLine:
    kind: str  # INSTANCE | GROUP
    name: str
    state: str  # MASTER | BACKUP | FAULT | STOP | DELETED | MASTER_RX_LOWER_PRI | ...
    priority: int


def parse_fifo_line(line: str) -> FifoLine | None:
    """A VRRP line of the notify FIFO; None for anything else (the checker's VS/RS lines,
    a line cut short): the reader goes on."""
    m = _FIFO_LINE.match(line.strip())
    if m is None:
        return None
    name = re.sub(r"\\(.)", r"\1", m[2])
    return FifoLine(m[1], name, m[3], int(m[4]))
