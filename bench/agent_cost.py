"""What agentd costs a node: CPU share of one core, peak RSS and bytes per report.

Runs a real agentd for 60 s (--seconds) at a 1 s interval with 7 probes against real local
servers started here (HTTP, SMTP via aiosmtpd, FTP via pyftpdlib, DNS via dnsmasq, three TCP
listeners), receives its reports on a UDP socket, and measures a bare idle Python process in the
same run for comparison. CPU comes from /proc/PID/stat (utime + stime) after a warm-up, peak RSS
from VmHWM in /proc/PID/status.

    .venv/bin/python bench/agent_cost.py [--seconds 60] [--probe-interval SECONDS]

It also counts every datagram the agent sends in the measured window (reports, beacons,
joins) as bytes per second: the UDP payloads, and on the wire with the Ethernet, IPv4 and UDP
headers (42 bytes a datagram), with its default beacons and with `--beacon-interval 0`.

Targets (issue 2): <= 0.5 % of one core, RSS <= 35 MB, <= 600 bytes per report.
Target (issue 10): <= 600 bytes per second on the wire in total, beacons included.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agentd.beacon import is_beacon
from agentd.protocol import TARGET_REPORT_BYTES, Join, Rejected, Report
from ctop.ingest.verifier import Verifier

HOST = "127.0.0.1"
KEY = os.urandom(32).hex().encode()
TARGET_CPU, TARGET_RSS_MB, TARGET_BYTES = 0.5, 35.0, TARGET_REPORT_BYTES
TARGET_WIRE_RATE = 600  # bytes per second on the wire, all datagrams (issue 10)
FRAME_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers per datagram
WARMUP = 3.0  # seconds: imports, first probe round and first report are not the steady state
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free for TCP and UDP alike (dnsmasq wants both)."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            return port


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- local servers ---------------------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"OK\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer((HOST, 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def smtp_server() -> Iterator[int]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = Controller(Sink(), hostname=HOST, port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextlib.contextmanager
def ftp_server(root: Path) -> Iterator[int]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.log import config_logging
    from pyftpdlib.servers import FTPServer

    config_logging(level=logging.WARNING)  # one line per session otherwise
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(str(root))
    handler = type("BenchFTP", (FTPHandler,), {"authorizer": authorizer})
    server = FTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    try:
        yield server.address[1]
    finally:
        server.close_all()


@contextlib.contextmanager
def dns_server() -> Iterator[int]:
    dnsmasq = shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin:/sbin")
    if dnsmasq is None:
        sys.exit("dnsmasq is not installed (apt-get install dnsmasq-base)")
    port = free_port()
    proc = subprocess.Popen(
        [
            dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}",
            f"--listen-address={HOST}", "--bind-interfaces", "--no-resolv", "--no-hosts",
            "--pid-file=", f"--user={getpass.getuser()}", "--log-facility=-",
            "--address=/node.bench.test/127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


@contextlib.contextmanager
def tcp_listeners(count: int) -> Iterator[list[int]]:
    """Listeners that accept and close, like a service that is up."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((HOST, 0))
        s.listen(64)
        s.settimeout(0.2)
        socks.append(s)
    stop = threading.Event()

    def accept(s: socket.socket) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                s.accept()[0].close()

    threads = [threading.Thread(target=accept, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    try:
        yield [s.getsockname()[1] for s in socks]
    finally:
        stop.set()
        for t in threads:
            t.join()
        for s in socks:
            s.close()


# --- measuring -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Collector(threading.Thread):
    """Receives and verifies everything the agent sends."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.verifier = Verifier(KEY)
        self.report_sizes: list[int] = []
        self.counting = False
        self.counted: dict[str, list[int]] = {"report": [], "beacon": [], "join": [], "other": []}
        self.rejected: list[Rejected] = []
        self.last: Report | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            if is_beacon(data) and not self.counting:
                continue
            if self.counting:
                kind = "beacon" if is_beacon(data) else {
                    Report: "report", Join: "join"}.get(
                    type(self.verifier.verify(data)), "other")
                self.counted[kind].append(len(data))
                if kind != "report":
                    continue
                self.verifier = Verifier(KEY)  # verified once above: start afresh
            msg = self.verifier.verify(data)
            if isinstance(msg, Rejected):
                self.rejected.append(msg)
            elif isinstance(msg, Report):
                self.report_sizes.append(len(data))
                self.last = msg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured run time")
    parser.add_argument("--interval", type=float, default=1.0, help="agent report interval")
    parser.add_argument(
        "--beacon-interval", type=float, default=None,
        help="agent beacon interval (default: agentd's)")
    parser.add_argument(
        "--probe-interval", type=float, default=None, help="probe interval (default: probes')"
    )
    args = parser.parse_args()
    agentd = Path(sys.executable).with_name("agentd")

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-cost-")))
        http = stack.enter_context(http_server())
        smtp = stack.enter_context(smtp_server())
        ftp = stack.enter_context(ftp_server(tmp))
        dns = stack.enter_context(dns_server())
        tcp = stack.enter_context(tcp_listeners(3))
        urls = [
            f"http://{HOST}:{http}/health",
            f"smtp://{HOST}:{smtp}",
            f"ftp://{HOST}:{ftp}",
            f"dns://{HOST}:{dns}/node.bench.test?type=A",
            *(f"tcp://{HOST}:{p}" for p in tcp),
        ]
        every = f"?interval={args.probe_interval}" if args.probe_interval else ""
        urls = [u + ("&" if "?" in u else "?") + every[1:] if every else u for u in urls]

        receiver = Collector()
        receiver.start()
        key = tmp / "cluster.key"
        key.write_bytes(KEY)
        key.chmod(0o600)
        conf = tmp / "agentd.toml"
        conf.write_text(
            f'director = "{HOST}:{receiver.sock.getsockname()[1]}"\n'
            f'key_file = "{key}"\nnode_id = "node-0001.dc1.example.com"\n'
            f"interval = {args.interval}\n"
            + (f"beacon_interval = {args.beacon_interval}\n"
               if args.beacon_interval is not None else "")
            +
            f"probes = [{', '.join(repr(u) for u in urls)}]\n".replace("'", '"')
        )
        idle = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({args.seconds + WARMUP + 30})"]
        )
        agent = subprocess.Popen([str(agentd), "--config", str(conf)], stderr=subprocess.PIPE)
        started = time.monotonic()
        time.sleep(WARMUP)
        t0, agent0, idle0 = time.monotonic(), cpu_seconds(agent.pid), cpu_seconds(idle.pid)
        receiver.counting = True
        time.sleep(args.seconds)
        receiver.counting = False
        t1, agent1, idle1 = time.monotonic(), cpu_seconds(agent.pid), cpu_seconds(idle.pid)
        agent_rss, idle_rss = peak_rss_mb(agent.pid), peak_rss_mb(idle.pid)
        lifetime_cpu = agent1 / (t1 - started) * 100
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=10)
        idle.kill()
        idle.wait()
        receiver.stopping.set()
        receiver.join()

    if agent.returncode != 0:
        print(err.decode(errors="replace"), file=sys.stderr)
        print(f"agentd exited with {agent.returncode}", file=sys.stderr)
        return 1
    window = t1 - t0
    agent_cpu = (agent1 - agent0) / window * 100
    idle_cpu = (idle1 - idle0) / window * 100
    sizes = receiver.report_sizes
    services = receiver.last.services if receiver.last else ()
    ok = sum(1 for s in services if s.status == "ok")
    print(
        f"agentd over {window:.0f} s (after {WARMUP:g} s warm-up), interval {args.interval:g} s, "
        f"{len(urls)} probes ({ok}/{len(services)} ok in the last report), "
        f"{len(sizes)} reports, {len(receiver.rejected)} rejected"
    )
    for s in services:
        if s.status != "ok":
            print(f"  probe {s.name}: {s.status} {s.detail}")
    mean = statistics.mean(sizes) if sizes else float("nan")
    top = max(sizes, default=0)
    rows = [
        ("", "CPU % of one core", "peak RSS MB", "bytes/report mean/max"),
        ("agentd", f"{agent_cpu:.2f}", f"{agent_rss:.1f}", f"{mean:.0f} / {top}"),
        ("idle python", f"{idle_cpu:.2f}", f"{idle_rss:.1f}", "-"),
        ("target", f"<= {TARGET_CPU}", f"<= {TARGET_RSS_MB:g}", f"<= {TARGET_BYTES}"),
    ]
    for row in rows:
        print(f"{row[0]:12} {row[1]:>18} {row[2]:>12} {row[3]:>22}")
    print(f"(agentd CPU including start-up: {lifetime_cpu:.2f} % over {t1 - started:.0f} s)")
    print(f"\nbytes per second over {window:.0f} s: payload | on the wire (+{FRAME_OVERHEAD} B "
          "Ethernet/IPv4/UDP headers a datagram)")
    wire_rate = 0.0
    for kind, sizes_ in receiver.counted.items():
        if not sizes_:
            continue
        payload = sum(sizes_) / window
        framed = (sum(sizes_) + FRAME_OVERHEAD * len(sizes_)) / window
        wire_rate += framed
        print(f"  {kind:8} {len(sizes_) / window:5.2f}/s  mean {statistics.mean(sizes_):5.0f} B"
              f"  {payload:6.0f} B/s | {framed:6.0f} B/s")
    print(f"  {'total':8} {'':30} {'':8} | {wire_rate:6.0f} B/s   (target <= {TARGET_WIRE_RATE})")
    met = agent_cpu <= TARGET_CPU and agent_rss <= TARGET_RSS_MB and top <= TARGET_BYTES \
        and wire_rate <= TARGET_WIRE_RATE
    print("all targets met" if met else "TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
