"""The IPVS connection-sync daemon's state, from `ipvsadm --list --daemon`.

Real output (ipvsadm 1.31 on the IPVS kernel under qemu, tests/fixtures/pair/), one line per
running daemon, nothing when none runs (exit status 0 either way):

    master sync daemon (mcast=sbr0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)
    backup sync daemon (mcast=sbr0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)

Older kernels print only (mcast=IF, syncid=N): the other fields are optional.
"""

from __future__ import annotations

import re
import subprocess

from ctop.pair.view import SyncDaemonView

_LINE = re.compile(r"^(master|backup) sync daemon \((.*)\)$")


class SyncDaemonError(ValueError):
    pass


def parse_sync_daemons(text: str) -> tuple[SyncDaemonView, ...]:
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            raise SyncDaemonError(f"unexpected line from ipvsadm --list --daemon: {line!r}")
        fields = dict(part.strip().partition("=")[::2] for part in m[2].split(","))
        try:
            out.append(SyncDaemonView(
                role=m[1], mcast_interface=fields.get("mcast", ""),
                syncid=int(fields.get("syncid", 0)), maxlen=int(fields.get("maxlen", 0)),
                group=fields.get("group", ""), port=int(fields.get("port", 0)),
                ttl=int(fields.get("ttl", 0))))
        except ValueError:
            raise SyncDaemonError(f"unexpected numbers in {line!r}") from None
    return tuple(out)


def read_sync_daemons(ipvsadm: str = "ipvsadm", timeout: float = 5.0
                      ) -> tuple[SyncDaemonView, ...]:
    """Run ipvsadm now; SyncDaemonError with ipvsadm's own words when it fails."""
    try:
        done = subprocess.run([ipvsadm, "--list", "--daemon"], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SyncDaemonError(f"cannot run {ipvsadm}: {e}") from None
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        raise SyncDaemonError(f"{ipvsadm} --list --daemon: "
                              f"{words[-1] if words else f'exit {done.returncode}'}")
    return parse_sync_daemons(done.stdout)
