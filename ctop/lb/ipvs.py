"""IPVS (LVS) balancer: reads the director's table and edits real-server weights with ipvsadm.

Read path: `ipvsadm -Ln --exact` plus `--thresholds`, `--stats --exact` and `--rate --exact`
(four short runs, merged by key). Only ipvsadm gives everything an edit must repeat (forwarding
method AND thresholds; `--tun-info` for tunnels) plus per-server totals and rates, with the
persistence timeout in seconds. `/proc/net/ip_vs` has no thresholds, no rates, hex addresses and
persistence in kernel ticks, but it is readable without root: it is the fallback when ipvsadm is
missing or we are not root, so a non-root ctop still monitors (see `read_note`).
Netlink (pyroute2) was not chosen: an extra dependency that takes seconds to import, reports
fwd_method 3 even for Masq and maps its "update" command to delete.

Before reading we check that /proc/net/ip_vs exists: `ipvsadm -L` would otherwise load the ip_vs
module as a side effect, and a monitor must not turn a plain host into a director.

Write path: `ipvsadm -e SERVICE -r SERVER -m|-g|-i [tunnel] -w N -x U -y L`, always repeating the
server's current method, tunnel settings and thresholds as just read: `ipvsadm -e -w N` alone
silently switches a NAT server to Direct Routing, `-i` alone resets a GUE tunnel to ipip and an
omitted -x/-y resets the thresholds to 0. Errors carry ipvsadm's own message.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ctop.lb.base import Connection, LBError, RealServer, VirtualService
from ctop.lb.ipvs_parse import (
    Tunnel,
    canonical_server_key,
    format_hostport,
    merge,
    parse_list,
    parse_proc_conn,
    parse_proc_ip_vs,
    parse_rates,
    parse_service_key,
    parse_stats,
    parse_thresholds,
    parse_tun_info,
)

MAX_WEIGHT = 2**31 - 1
FORWARD_FLAGS = {"masq": "-m", "route": "-g", "tunnel": "-i"}
NO_MAINT = (
    "IPVS has no maintenance state: drain instead (weight 0: no new connections, existing "
    "ones finish), or remove the destination (ipvsadm -d) to take it out entirely"
)
DEFAULT_HZ = 250  # Debian's CONFIG_HZ; only used to convert /proc persistence ticks
EXPIRE_QUIESCENT = "net/ipv4/vs/expire_quiescent_template"  # under /proc/sys


def validate_weight(weight: object) -> int:
    """IPVS takes 0..2^31-1; anything else is refused before ipvsadm runs."""
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= MAX_WEIGHT:
        raise LBError(f"illegal weight specified: {weight!r} (IPVS weights are 0..{MAX_WEIGHT})")
    return weight


def edit_command(
    ipvsadm: str,
    service: VirtualService,
    server: RealServer,
    weight: int,
    tunnel: Tunnel | None = None,
) -> list[str]:
    """The `ipvsadm -e` command that changes only the weight of `server` as last read."""
    flag = FORWARD_FLAGS.get(server.forward)
    if flag is None:  # "local" or unknown: no flag would keep it, so don't guess
        raise LBError(
            f"cannot edit {server.key}: forwarding method {server.forward!r} can't be repeated"
        )
    if server.forward == "tunnel" and tunnel is None:
        raise LBError(f"cannot edit {server.key}: tunnel settings unknown")
    return [
        ipvsadm,
        "-e",
        *parse_service_key(service.key).ipvsadm_args(),
        "-r",
        server.key,
        flag,
        *(tunnel.ipvsadm_args() if server.forward == "tunnel" and tunnel else []),
        "-w",
        str(validate_weight(weight)),
        "-x",
        str(server.upper_threshold),
        "-y",
        str(server.lower_threshold),
    ]


class IPVSBalancer:
    """The Balancer protocol on the local IPVS table."""

    name = "ipvs"
    max_weight = MAX_WEIGHT
    no_maint = NO_MAINT  # the controller refuses `maint` with this before running anything

    def __init__(self, ipvsadm: str = "ipvsadm", proc_root: str = "/proc", timeout: float = 10):
        self.ipvsadm = ipvsadm
        self.proc_root = Path(proc_root)
        self.timeout = timeout
        # Why the last services() read is incomplete ("" when ipvsadm answered); for the UI.
        self.read_note = ""

    # ---- reading ----

    def services(self) -> list[VirtualService]:
        """Full table via ipvsadm; via /proc/net/ip_vs when ipvsadm is missing or needs root."""
        proc_text = self._proc_table()
        try:
            services = self._read_ipvsadm(with_counters=True)
        except _NoIpvsadm as exc:
            self.read_note = (
                f"{exc.message}; read /proc/net/ip_vs instead (no thresholds, rates or totals)"
            )
            return parse_proc_ip_vs(proc_text, self._kernel_hz())
        self.read_note = ""
        return services

    def _proc_table(self) -> str:
        path = self.proc_root / "net" / "ip_vs"
        try:
            return path.read_text()
        except FileNotFoundError:
            raise LBError(
                f"IPVS is not loaded: {path} does not exist (no ip_vs kernel module)"
            ) from None
        except OSError as exc:
            raise LBError(f"cannot read {path}: {exc.strerror}") from None

    def _read_ipvsadm(self, *, with_counters: bool) -> list[VirtualService]:
        services = parse_list(self._run("-Ln", "--exact"))
        thresholds = parse_thresholds(self._run("-Ln", "--exact", "--thresholds"))
        if not with_counters:
            return merge(services, thresholds=thresholds)
        # separate runs: `--stats --rate` prints only the stats columns
        stats = parse_stats(self._run("-Ln", "--exact", "--stats"))
        rates = parse_rates(self._run("-Ln", "--exact", "--rate"))
        return merge(services, thresholds=thresholds, stats=stats, rates=rates)

    def _kernel_hz(self) -> int:
        """CONFIG_HZ from the running kernel's config, for /proc persistence ticks."""
        try:
            config = Path(f"/boot/config-{os.uname().release}").read_text()
            for line in config.splitlines():
                if line.startswith("CONFIG_HZ="):
                    return int(line.split("=", 1)[1])
        except (OSError, ValueError):
            pass
        return DEFAULT_HZ

    def connections(self, service_key: str, server_key: str) -> list[Connection]:
        """The server's entries in /proc/net/ip_vs_conn (connections and persistence templates)
        for one service. Readable without root."""
        path = self.proc_root / "net" / "ip_vs_conn"
        try:
            spec = parse_service_key(service_key)
            want = canonical_server_key(server_key)
            text = path.read_text()
        except ValueError as exc:
            raise LBError(str(exc)) from None
        except OSError as exc:
            raise LBError(f"cannot read {path}: {exc.strerror or exc}") from None
        vip = format_hostport(spec.address, spec.port) if spec.protocol != "FWM" else ""
        # a template of a port-less persistent service carries virtual port 0
        vip0 = format_hostport(spec.address, 0) if vip else ""
        return [
            c
            for c in parse_proc_conn(text)
            if c.server == want
            and (not vip or c.virtual == vip or (c.template and c.virtual == vip0))
            and (spec.protocol == "FWM" or c.template or c.protocol == spec.protocol)
        ]

    def expire_quiescent_template(self) -> bool | None:
        """net.ipv4.vs.expire_quiescent_template (None: not readable). 0, the kernel default,
        keeps sending a client with a persistence template to a server of weight 0."""
        try:
            return (self.proc_root / "sys" / EXPIRE_QUIESCENT).read_text().strip() != "0"
        except OSError:
            return None

    def set_expire_quiescent_template(self, on: bool = True) -> None:
        path = self.proc_root / "sys" / EXPIRE_QUIESCENT
        try:
            path.write_text("1\n" if on else "0\n")
        except OSError as exc:
            raise LBError(
                f"cannot set net.ipv4.vs.expire_quiescent_template: {exc.strerror or exc}"
                " (needs root)"
            ) from None

    # ---- writing ----

    def set_weight(self, service_key: str, server_key: str, weight: int) -> None:
        validate_weight(weight)
        service, server = self.find(service_key, server_key)
        self.edit(service, server, weight)

    def drain(self, service_key: str, server_key: str) -> None:
        """Weight 0: the scheduler sends no new connections, existing ones finish."""
        self.set_weight(service_key, server_key, 0)

    def maint(self, service_key: str, server_key: str) -> None:
        """Refused without running ipvsadm: the kernel table has no such state."""
        raise LBError(NO_MAINT)

    def ready(self, service_key: str, server_key: str, weight: int) -> None:
        if validate_weight(weight) == 0:
            raise LBError("ready needs a weight of at least 1 (weight 0 is a drain)")
        self.set_weight(service_key, server_key, weight)

    def find(self, service_key: str, server_key: str) -> tuple[VirtualService, RealServer]:
        """The service and server as ipvsadm shows them now (needs root, like every edit)."""
        self._proc_table()  # refuse early, and don't let ipvsadm load the module
        try:
            want_svc = parse_service_key(service_key).key
            want_srv = canonical_server_key(server_key)
        except ValueError as exc:
            raise LBError(str(exc)) from None
        try:
            services = self._read_ipvsadm(with_counters=False)
        except _NoIpvsadm as exc:
            raise LBError(exc.message, command=exc.command) from None
        for svc in services:
            if svc.key == want_svc:
                for rs in svc.servers:
                    if rs.key == want_srv:
                        return svc, rs
                raise LBError(f"No such destination: {want_srv} in {want_svc}")
        raise LBError(f"Service not defined: {want_svc}")

    def edit(self, service: VirtualService, server: RealServer, weight: int) -> None:
        """Run the `ipvsadm -e` for a server as read by services()/find()."""
        tunnel = None
        if server.forward == "tunnel":
            infos = parse_tun_info(self._run("-Ln", "--exact", "--tun-info"))
            tunnel = infos.get((service.key, server.key))
            if tunnel is None:
                raise LBError(f"No such destination: {server.key} in {service.key}")
        self._run_command(edit_command(self.ipvsadm, service, server, weight, tunnel))

    # ---- running ipvsadm ----

    def _run(self, *args: str) -> str:
        return self._run_command([self.ipvsadm, *args])

    def _run_command(self, cmd: list[str]) -> str:
        shown = " ".join(cmd)
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env={**os.environ, "LC_ALL": "C"},
                check=False,
            )
        except FileNotFoundError:
            raise _NoIpvsadm(
                f"ipvsadm not found ({self.ipvsadm}): install the ipvsadm package", shown
            ) from None
        except subprocess.TimeoutExpired:
            raise LBError(
                f"ipvsadm did not answer within {self.timeout:g} s", command=shown
            ) from None
        if done.returncode != 0:
            message = _tool_message(done.stderr or done.stdout, done.returncode)
            if "Permission denied" in message:
                raise _NoIpvsadm(message, shown)
            raise LBError(message, command=shown)
        return done.stdout


class _NoIpvsadm(LBError):
    """ipvsadm is missing or refuses us (not root): reads fall back to /proc, writes fail."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message, command=command)


def _tool_message(output: str, rc: int) -> str:
    """ipvsadm's own words; its 'Are you sure ... built in the kernel' hint is dropped when the
    real cause is that we are not root, where it would only mislead."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if any("Permission denied" in ln for ln in lines):
        lines = [ln for ln in lines if not ln.startswith("Are you sure that IP Virtual Server")]
    return "; ".join(lines) or f"ipvsadm failed with exit status {rc}"
