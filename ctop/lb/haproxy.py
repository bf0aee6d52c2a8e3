"""The HAProxy balancer: the runtime API on the admin socket (UNIX path or host:port).

Each command goes over its own short connection (HAProxy closes a non-interactive CLI
session after answering), so an error message always belongs to the command that caused it.
Write commands answer with an empty line on success and with a line of text on failure
("No such server.", "Require 'backend/server'.", "Permission denied", ...).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import socket
import threading
import time

from ctop.lb.base import Connection, LBError, RealServer, ServerState, VirtualService

MAX_WEIGHT = 256  # HAProxy's absolute weight range is 0..256
_RECV_LIMIT = 64 * 1024 * 1024  # a stats dump of thousands of servers fits easily


def parse_endpoint(endpoint: str) -> tuple[int, str | tuple[str, int]]:
    """Return (address family, address) for a socket path or "host:port" / "[v6]:port"."""
    if endpoint.startswith(("/", ".")):
        return socket.AF_UNIX, endpoint
    host, sep, port = endpoint.rpartition(":")
    if sep and port.isdigit():
        if host.startswith("[") and host.endswith("]"):
            return socket.AF_INET6, (host[1:-1], int(port))
        if ":" in host:
            return socket.AF_INET6, (host, int(port))
        return socket.AF_INET, (host or "127.0.0.1", int(port))
    return socket.AF_UNIX, endpoint  # a relative path without "./"


# srv_admin_state bits of `show servers state` (HAProxy's SRV_ADMF_* flags)
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, health
_ADMIN_DRAIN = 0x08 | 0x10  # forced, inherited


def map_status(status: str, weight: int, admin: int = 0) -> ServerState:
    """HAProxy's status column ("UP", "UP 1/3", "DRAIN", "MAINT(via)", "no check", ...).

    `admin` is the server's srv_admin_state: the status column says "DOWN" for a server
    that failed its health check even when it is also set to drain or maint, and a drain
    that the column hides must still read back as drained.
    """
    if admin & _ADMIN_MAINT:
        return ServerState.MAINT
    if admin & _ADMIN_DRAIN:
        return ServerState.DRAINED
    word = status.strip().upper()
    if word.startswith("MAINT"):
        return ServerState.MAINT
    if word.startswith("DRAIN"):
        return ServerState.DRAINED
    if word.startswith(("DOWN", "NOLB")):  # "DOWN 1/2" (going up) is still out of rotation
        return ServerState.DOWN
    # UP, "UP 1/3" (going down), "no check": in rotation unless its weight is zero.
    return ServerState.SERVING if weight > 0 else ServerState.DRAINED


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, 0
    return host.strip("[]"), _int(port)


class HAProxyBalancer:
    """ctop.lb.base.Balancer for one HAProxy process."""

    max_weight = MAX_WEIGHT
    no_maint = ""  # `set server B/S state maint` exists

    def __init__(self, socket_path: str, *, timeout: float = 5.0, name: str = "haproxy") -> None:
        self.endpoint = socket_path
        self.name = name
        self.timeout = timeout
        self._family, self._address = parse_endpoint(socket_path)
        # (backend, server) -> (monotonic time, bin, bout) from the previous read, for byte rates
        self._last_bytes: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    # -- transport ---------------------------------------------------------------------------

    def command(self, line: str) -> str:
        """Send one runtime API command and return HAProxy's whole answer."""
        if "\n" in line or ";" in line:
            raise LBError("refusing a command with a newline or ';' in it", command=line)
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self._address)
                sock.sendall(line.encode() + b"\n")
                chunks: list[bytes] = []
                size = 0
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _RECV_LIMIT:
                        raise LBError("answer too large", command=line)
        except PermissionError as exc:
            raise LBError(
                f"{self.endpoint}: {exc.strerror}: run ctop as the socket's owner (or root)",
                command=line,
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise LBError(f"{self.endpoint}: {reason}", command=line) from exc
        return b"".join(chunks).decode("utf-8", "replace")

    def _write(self, line: str) -> None:
        """Run a write command; any text in the answer is HAProxy's error message."""
        answer = self.command(line).strip()
        if answer == "Permission denied":  # HAProxy's words, plus what to do about it
            answer += f" ({self.endpoint} needs 'level admin' in the stats socket line)"
        if answer:
            raise LBError(answer, command=line)

    # -- reading -----------------------------------------------------------------------------

    def show_stat(self) -> list[dict[str, str]]:
        """`show stat` as a list of rows keyed by the CSV header (pxname, svname, ...)."""
        text = self.command("show stat")
        if not text.startswith("# "):
            raise LBError(text.strip() or "empty answer to 'show stat'", command="show stat")
        reader = csv.DictReader(io.StringIO(text[2:]))
        return [row for row in reader if row.get("pxname")]

    def admin_states(self) -> dict[tuple[str, str], int]:
        """(backend, server) -> srv_admin_state bits, from `show servers state`."""
        text = self.command("show servers state")
        lines = text.splitlines()
        header = next((ln[2:].split() for ln in lines if ln.startswith("# ")), None)
        if header is None or "srv_admin_state" not in header:
            raise LBError(text.strip() or "empty answer", command="show servers state")
        be, sv, adm = (header.index(c) for c in ("be_name", "srv_name", "srv_admin_state"))
        states: dict[tuple[str, str], int] = {}
        for line in lines:
            cols = line.split()
            if len(cols) > max(be, sv, adm) and not line.startswith("#"):
                states[(cols[be], cols[sv])] = _int(cols[adm])
        return states

    def services(self) -> list[VirtualService]:
        rows = self.show_stat()
        try:
            admin = self.admin_states()
        except LBError:  # HAProxy < 1.6: the status column alone
            admin = {}
        now = time.monotonic()
        by_backend: dict[str, list[RealServer]] = {}
        meta: dict[str, dict[str, str]] = {}
        with self._lock:
            for row in rows:
                px, sv = row["pxname"], row["svname"]
                if sv == "FRONTEND":
                    continue
                if sv == "BACKEND":
                    meta[px] = row
                    continue
                by_backend.setdefault(px, []).append(
                    self._server(row, now, admin.get((px, sv), 0))
                )
        result = []
        for px, servers in by_backend.items():
            row = meta.get(px, {})
            mode = (row.get("mode") or servers_mode(rows, px)).lower()
            result.append(
                VirtualService(
                    key=px,
                    balancer=self.name,
                    protocol="HTTP" if mode == "http" else "TCP",
                    address="",
                    port=0,
                    scheduler=row.get("algo", ""),
                    servers=tuple(servers),
                )
            )
        return result

    def _server(self, row: dict[str, str], now: float, admin: int) -> RealServer:
        # "uweight" is the weight the operator set (kept while draining); "weight" is the
        # effective one. Prefer uweight where this HAProxy version reports it.
        weight = _int(row.get("uweight", ""), _int(row.get("weight", "")))
        address, port = _split_addr(row.get("addr", ""))
        bin_, bout = _int(row.get("bin", "")), _int(row.get("bout", ""))
        key = (row["pxname"], row["svname"])
        rate_in = rate_out = 0.0
        prev = self._last_bytes.get(key)
        if prev is not None:
            dt = now - prev[0]
            if dt > 0 and bin_ >= prev[1] and bout >= prev[2]:  # counters reset on reload
                rate_in, rate_out = (bin_ - prev[1]) / dt, (bout - prev[2]) / dt
        self._last_bytes[key] = (now, bin_, bout)
        return RealServer(
            key=row["svname"],
            address=address,
            port=port,
            weight=weight,
            state=map_status(row.get("status", ""), weight, admin),
            active_conns=_int(row.get("scur", "")),
            conns_per_s=float(_int(row.get("rate", ""))),
            total_conns=_int(row.get("stot", "")),
            bytes_in_per_s=rate_in,
            bytes_out_per_s=rate_out,
        )

    def get_weight(self, service_key: str, server_key: str) -> tuple[int, int]:
        """(current, initial) weight from `get weight`."""
        line = f"get weight {_target(service_key, server_key)}"
        answer = self.command(line).strip()
        current, _, rest = answer.partition(" (initial ")
        if not current.isdigit() or not rest.rstrip(")").isdigit():
            raise LBError(answer or "empty answer", command=line)
        return int(current), int(rest.rstrip(")"))

    def connections(self, service_key: str, server_key: str) -> list[Connection]:
        """The server's sessions from `show sess` (one line per stream)."""
        _target(service_key, server_key)
        return [
            c
            for be, c in parse_show_sess(self.command("show sess"))
            if be == service_key and c.server == server_key
        ]

    # -- writing -----------------------------------------------------------------------------

    def cut_sessions(self, service_key: str, server_key: str) -> None:
        """Kill every session on the server (`shutdown sessions server`): what `maint` alone
        leaves running."""
        self._write(f"shutdown sessions server {_target(service_key, server_key)}")

    def set_weight(self, service_key: str, server_key: str, weight: int) -> None:
        _check_weight(weight)
        self._write(f"set server {_target(service_key, server_key)} weight {weight}")

    def drain(self, service_key: str, server_key: str) -> None:
        self._write(f"set server {_target(service_key, server_key)} state drain")

    def maint(self, service_key: str, server_key: str) -> None:
        """Maintenance: no traffic at all, not even sticky sessions, and no health checks (a
        drain still takes those). The weight is kept; `ready` brings it back. Sessions already
        open are not cut by this command (HAProxy's `shutdown sessions server` would)."""
        self._write(f"set server {_target(service_key, server_key)} state maint")

    def ready(self, service_key: str, server_key: str, weight: int) -> None:
        _check_weight(weight)
        target = _target(service_key, server_key)
        # Set the weight first, while the server is still out of rotation: if it fails,
        # nothing has changed. Only then put it back in rotation.
        before = self.get_weight(service_key, server_key)[0]
        self._write(f"set server {target} weight {weight}")
        try:
            self._write(f"set server {target} state ready")
        except LBError:
            with contextlib.suppress(LBError):  # leave nothing half-done
                self._write(f"set server {target} weight {before}")
            raise


def servers_mode(rows: list[dict[str, str]], px: str) -> str:
    """Mode of a backend from any of its rows (older versions lack it on BACKEND rows)."""
    for row in rows:
        if row["pxname"] == px and row.get("mode"):
            return row["mode"]
    return "tcp"


def _target(service_key: str, server_key: str) -> str:
    for part in (service_key, server_key):
        if not part or any(c.isspace() for c in part) or "/" in part or ";" in part:
            raise LBError(f"invalid HAProxy backend/server name: {part!r}")
    return f"{service_key}/{server_key}"


def _check_weight(weight: int) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise LBError(f"HAProxy weight must be an integer 0..{MAX_WEIGHT}, got {weight!r}")



def parse_show_sess(text: str) -> list[tuple[str, Connection]]:
    """`show sess` ("0x55..: proto=tcpv4 src=1.2.3.4:5678 fe=F be=B srv=S ... age=3s ...")
    -> (backend, session) pairs. A stream not yet sent to a server has server ""."""
    out: list[tuple[str, Connection]] = []
    for line in text.splitlines():
        if ": proto=" not in line:
            continue
        fields = dict(tok.split("=", 1) for tok in line.split(": ", 1)[1].split() if "=" in tok)
        srv = fields.get("srv", "")
        conn = Connection(
            client=fields.get("src", ""),
            virtual=fields.get("fe", ""),
            server="" if srv in ("", "<NONE>") else srv,
            protocol=fields.get("proto", ""),
            age_s=_duration(fields.get("age", "")),
        )
        out.append((fields.get("be", ""), conn))
    return out


def _duration(text: str) -> float | None:
    """HAProxy's human durations ("3s", "1m12s", "2h3m", "1d2h", "450ms") -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|d|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    units = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    return sum(float(n) * units[u] for n, u in parts)
