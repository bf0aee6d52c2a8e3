"""What agentd costs a node: CPU share of one core, peak RSS and bytes per report, against a
baseline agent run side by side in the same run.

Starts local servers (HTTP, SMTP via aiosmtpd, FTP via pyftpdlib, DNS via dnsmasq, TCP
listeners) and, for each of four sets of 7 probes, two real agents at a 1 s interval: this
tree's and a baseline's (default: commit a11a86b, before the agent imported probe libraries by
probe kind; `--baseline REV`, exported with `git archive`). All eight run at once for 60 s
(--seconds) after every one has its first probe results, next to a bare idle Python process.
CPU comes from /proc/PID/stat (utime + stime), peak RSS from VmHWM in /proc/PID/status; both
trees are byte-compiled first, as `pip install` does on a node, so neither pays the compiler.

    .venv/bin/python bench/agent_cost.py [--seconds 60] [--baseline REV] [--probe-interval S]

The probe sets: the issue's 7 (http, smtp, ftp, dns, 3 tcp), the same without dns, without
http, and without both: what each probe library costs a node. For the issue's set it also counts
every datagram this tree's agent sends in the measured window (reports, beacons, joins) as bytes
per second: the UDP payloads, and on the wire with the Ethernet, IPv4 and UDP headers (42 bytes a
datagram), with its default beacons and with `--beacon-interval 0`, beside the baseline agent's
on the same probes (ratios), and the largest report of each.

Targets: <= 0.5 % of one core (issue 2), RSS <= 25 MB (issue 11), <= 600 bytes per report
(issue 2), <= 600 bytes per second on the wire in total, beacons included (issue 10).
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
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agentd.beacon import is_beacon
from agentd.protocol import (
    TARGET_REPORT_BYTES,
    UNSENT,
    Join,
    Rejected,
    Report,
    ServiceStatus,
)
from ctop.ingest.verifier import Verifier

HOST = "127.0.0.1"
KEY = os.urandom(32).hex().encode()
TARGET_CPU, TARGET_RSS_MB, TARGET_BYTES = 0.5, 25.0, TARGET_REPORT_BYTES
TARGET_WIRE_RATE = 600  # bytes per second on the wire, all datagrams (issue 10)
FRAME_OVERHEAD = 14 + 20 + 8  # Ethernet, IPv4 and UDP headers per datagram
SETTLE = 1.0  # seconds after every agent's first probe results before the measured window
START_LIMIT = 60.0  # seconds the agents may take to start on a loaded machine
BASELINE = "a11a86b"  # main before issue 11: every agent loaded dnspython, whatever its probes
ROOT = Path(__file__).resolve().parent.parent
# label -> probe kinds; the first is the issue's set (its bytes are reported too)
PROBE_SETS: dict[str, tuple[str, ...]] = {
    "http smtp ftp dns tcp*3": ("http", "smtp", "ftp", "dns", "tcp", "tcp", "tcp"),
    "http smtp ftp tcp*4": ("http", "smtp", "ftp", "tcp", "tcp", "tcp", "tcp"),
    "dns smtp ftp tcp*4": ("dns", "smtp", "ftp", "tcp", "tcp", "tcp", "tcp"),
    "smtp ftp tcp*5": ("smtp", "ftp", "tcp", "tcp", "tcp", "tcp", "tcp"),
}
# Runs a tree's agent: its agentd and probes shadow the installed ones.
RUN_TREE = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from agentd.main import main; sys.exit(main())"
)
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
        self.services: tuple[ServiceStatus, ...] = ()  # the latest a report carried
        self.probe_names: tuple[str, ...] = ()  # the latest join's
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            if is_beacon(data):  # checked by the director's fast path, not decoded here
                if self.counting:
                    self.counted["beacon"].append(len(data))
                continue
            msg = self.verifier.verify(data)
            if self.counting:
                self.counted[{Report: "report", Join: "join"}.get(type(msg), "other")].append(
                    len(data))
            if isinstance(msg, Rejected):
                self.rejected.append(msg)
            elif isinstance(msg, Join):
                self.probe_names = tuple(p.name for p in msg.probes)
            elif isinstance(msg, Report):
                self.report_sizes.append(len(data))
                self.last = msg
                services = msg.services
                indexed = getattr(msg, "indexed", None)
                if services is UNSENT and indexed is not None:  # named from the join
                    services = indexed.named(self.probe_names) or UNSENT
                if services:  # left out while unchanged (docs/protocol.md)
                    self.services = services


def export_tree(rev: str, into: Path) -> Path:
    """The baseline's agentd and probes, exported from git."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "agentd", "probes"], capture_output=True
    )
    if archive.returncode != 0:
        sys.exit(f"cannot export the baseline {rev}: {archive.stderr.decode().strip()}")
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def byte_compile(tree: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(tree / "agentd"), str(tree / "probes")],
        check=True,
    )


class AgentRun:
    """One real agent of one tree with one probe set, and the receiver it reports to."""

    def __init__(self, tree: Path, urls: list[str], workdir: Path, args: argparse.Namespace,
                 watch: tuple[str, ...] = ()):
        self.urls = urls
        self.receiver = Collector()
        self.receiver.start()
        workdir.mkdir()
        key = workdir / "cluster.key"
        key.write_bytes(KEY)
        key.chmod(0o600)
        conf = workdir / "agentd.toml"
        conf.write_text(
            f'director = "{HOST}:{self.receiver.sock.getsockname()[1]}"\n'
            f'key_file = "{key}"\nnode_id = "node-0001.dc1.example.com"\n'
            f"interval = {args.interval}\n"
            + (f"beacon_interval = {args.beacon_interval}\n"
               if args.beacon_interval is not None else "")
            + f"probes = [{', '.join(repr(u) for u in urls)}]\n".replace("'", '"')
            + (f"watch = [{', '.join(f'{w!r}' for w in watch)}]\n".replace("'", '"')
               if watch else "")
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUN_TREE, str(tree), "--config", str(conf)],
            stderr=subprocess.PIPE,
        )
        self.cpu0 = self.cpu1 = 0.0
        self.rss = float("nan")
        self.err = b""

    def started(self) -> bool:
        """Reporting, with a first result from every probe."""
        services = self.receiver.services
        return len(services) == len(self.urls) and all(s.status != "unknown" for s in services)

    def stop(self) -> None:
        self.rss = peak_rss_mb(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        _, self.err = self.proc.communicate(timeout=10)
        self.receiver.stopping.set()
        self.receiver.join()

    @property
    def cpu_seconds(self) -> float:
        return self.cpu1 - self.cpu0


def probe_urls(kinds: tuple[str, ...], ports: Mapping[str, int], tcp: list[int],
               interval: float | None) -> list[str]:
    tcp_ports = iter(tcp)
    url = {
        "http": lambda: f"http://{HOST}:{ports['http']}/health",
        "smtp": lambda: f"smtp://{HOST}:{ports['smtp']}",
        "ftp": lambda: f"ftp://{HOST}:{ports['ftp']}",
        "dns": lambda: f"dns://{HOST}:{ports['dns']}/node.bench.test?type=A",
        "tcp": lambda: f"tcp://{HOST}:{next(tcp_ports)}",
    }
    urls = [url[kind]() for kind in kinds]
    if interval:
        urls = [u + ("&" if "?" in u else "?") + f"interval={interval}" for u in urls]
    return urls


def ratio(new: float, base: float) -> str:
    return f"{new / base:.2f}" if base > 0 else "-"


def _rates(receiver: Collector, window: float) -> dict[str, tuple[float, float, float]]:
    """kind -> (datagrams/s, payload B/s, on-the-wire B/s)."""
    return {
        kind: (len(sizes) / window, sum(sizes) / window,
               (sum(sizes) + FRAME_OVERHEAD * len(sizes)) / window)
        for kind, sizes in receiver.counted.items() if sizes
    }


def print_bytes(receiver: Collector, window: float, baseline: Collector | None = None) -> float:
    """Bytes per second by datagram kind (beside the baseline's, with ratios, when given);
    returns the total on the wire."""
    print(f"\nbytes per second over {window:.0f} s, the issue's probe set: payload | "
          f"on the wire (+{FRAME_OVERHEAD} B Ethernet/IPv4/UDP headers a datagram)")
    new = _rates(receiver, window)
    base = _rates(baseline, window) if baseline is not None else {}
    if base:
        print(f"  {'':8} {'new /s':>7} {'payload':>8} {'wire':>6} | {'base /s':>7} "
              f"{'payload':>8} {'wire':>6} | wire ratio new/base")
    for kind in receiver.counted:
        n, b = new.get(kind, (0.0, 0.0, 0.0)), base.get(kind)
        if not n[0] and not b:
            continue
        line = f"  {kind:8} {n[0]:7.2f} {n[1]:8.0f} {n[2]:6.0f}"
        if b:
            line += f" | {b[0]:7.2f} {b[1]:8.0f} {b[2]:6.0f} | {ratio(n[2], b[2])}"
        print(line)
    wire_rate = sum(n[2] for n in new.values())
    line = f"  {'total':8} {'':7} {'':8} {wire_rate:6.0f}"
    if base:
        base_rate = sum(b[2] for b in base.values())
        line += f" | {'':7} {'':8} {base_rate:6.0f} | {ratio(wire_rate, base_rate)}"
    print(f"{line}   (target <= {TARGET_WIRE_RATE} B/s on the wire)")
    if baseline is not None and baseline.report_sizes:
        print(f"  largest report: new {max(receiver.report_sizes)} B, baseline "
              f"{max(baseline.report_sizes)} B (target <= {TARGET_BYTES})")
    return wire_rate


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
    parser.add_argument(
        "--watch", default="", metavar="LIST",
        help="comma-separated agentd `watch` entries: also run this tree's agent with them on "
             "the issue's probe set (ratio against the same agent without; its bytes counted)")
    parser.add_argument("--baseline", default=BASELINE, metavar="REV",
                        help=f"git revision of the baseline agent (default {BASELINE})")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-cost-")))
        base_tree = export_tree(args.baseline, tmp / "baseline")
        for tree in (ROOT, base_tree):
            byte_compile(tree)
        ftp_root = tmp / "ftp"
        ftp_root.mkdir()
        ports = {
            "http": stack.enter_context(http_server()),
            "smtp": stack.enter_context(smtp_server()),
            "ftp": stack.enter_context(ftp_server(ftp_root)),
            "dns": stack.enter_context(dns_server()),
        }
        tcp = stack.enter_context(tcp_listeners(5))
        runs: dict[tuple[str, str], AgentRun] = {}
        for n, (label, kinds) in enumerate(PROBE_SETS.items()):
            urls = probe_urls(kinds, ports, tcp, args.probe_interval)
            for version, tree in (("new", ROOT), ("baseline", base_tree)):
                runs[label, version] = AgentRun(tree, urls, tmp / f"{version}-{n}", args)
        watch = tuple(w.strip() for w in args.watch.split(",") if w.strip())
        if watch:
            first = next(iter(PROBE_SETS))
            runs[first, "watch"] = AgentRun(
                ROOT, probe_urls(PROBE_SETS[first], ports, tcp, args.probe_interval),
                tmp / "watch", args, watch)
        idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        began = time.monotonic()
        while not all(r.started() for r in runs.values()):
            dead = [r for r in runs.values() if r.proc.poll() is not None]
            if dead or time.monotonic() - began > START_LIMIT:
                for r in runs.values():
                    r.proc.kill()
                idle.kill()
                err = dead[0].proc.communicate()[1].decode(errors="replace") if dead else ""
                sys.exit(f"agents did not start within {START_LIMIT:g} s\n{err}")
            time.sleep(0.1)
        time.sleep(SETTLE)
        issue_set = next(iter(PROBE_SETS))
        counted = runs[issue_set, "watch" if watch else "new"].receiver
        plain_counted = runs[issue_set, "new"].receiver  # the same agent without watches
        base_counted = runs[issue_set, "baseline"].receiver  # the baseline's bytes beside
        t0, idle0 = time.monotonic(), cpu_seconds(idle.pid)
        for r in runs.values():
            r.cpu0 = cpu_seconds(r.proc.pid)
        counted.counting = plain_counted.counting = base_counted.counting = True
        time.sleep(args.seconds)
        counted.counting = plain_counted.counting = base_counted.counting = False
        t1, idle1 = time.monotonic(), cpu_seconds(idle.pid)
        for r in runs.values():
            r.cpu1 = cpu_seconds(r.proc.pid)
        idle_rss = peak_rss_mb(idle.pid)
        for r in runs.values():
            r.stop()
        idle.kill()
        idle.wait()

    failed = [r for r in runs.values() if r.proc.returncode != 0]
    for r in failed:
        print(r.err.decode(errors="replace"), file=sys.stderr)
        print(f"agentd exited with {r.proc.returncode}", file=sys.stderr)
    if failed:
        return 1
    window = t1 - t0
    print(f"agentd, 7 probes each, {args.interval:g} s interval, over {window:.0f} s after "
          f"{t0 - began:.0f} s of start-up; 8 agents at once on this machine; "
          f"baseline = {args.baseline}, new = this tree")
    print(f"{'probes':24} {'peak RSS MB: base':>17} {'new':>6} {'ratio':>6}   "
          f"{'CPU % of a core: base':>21} {'new':>5} {'ratio':>6}   {'probes ok':>9}")
    met = True
    for label in PROBE_SETS:
        base, new = runs[label, "baseline"], runs[label, "new"]
        base_cpu, new_cpu = (r.cpu_seconds / window * 100 for r in (base, new))
        ok = sum(1 for s in new.receiver.services if s.status == "ok")
        print(f"{label:24} {base.rss:17.1f} {new.rss:6.1f} {ratio(new.rss, base.rss):>6}   "
              f"{base_cpu:21.2f} {new_cpu:5.2f} {ratio(new_cpu, base_cpu):>6}   "
              f"{ok:>7}/{len(new.urls)}")
        for s in new.receiver.services:
            if s.status != "ok":
                print(f"  probe {s.name}: {s.status} {s.detail}")
        met = met and new.rss <= TARGET_RSS_MB and new_cpu <= TARGET_CPU
    print(f"{'idle python':24} {idle_rss:17.1f} {'':6} {'':6}   "
          f"{(idle1 - idle0) / window * 100:21.2f}")
    print(f"{'target':24} {'':17} {'<= ' + format(TARGET_RSS_MB, 'g'):>6} {'':6}   "
          f"{'':21} {'<= ' + format(TARGET_CPU, 'g'):>5}")

    if watch:
        plain, watching = runs[issue_set, "new"], runs[issue_set, "watch"]
        plain_cpu, watch_cpu = (r.cpu_seconds / window * 100 for r in (plain, watching))
        print(f"{'+ watch ' + str(len(watch)):24} {plain.rss:17.1f} {watching.rss:6.1f} "
              f"{ratio(watching.rss, plain.rss):>6}   {plain_cpu:21.2f} {watch_cpu:5.2f} "
              f"{ratio(watch_cpu, plain_cpu):>6}   (against this tree without watch: {watch})")
        met = met and watching.rss <= TARGET_RSS_MB and watch_cpu <= TARGET_CPU
    sizes = counted.report_sizes
    mean, top = (statistics.mean(sizes), max(sizes)) if sizes else (float("nan"), 0)
    rejected = sum(len(r.receiver.rejected) for r in runs.values())
    print(f"\nreports, this tree, the issue's probe set: {len(sizes)}, {mean:.0f} B mean, "
          f"{top} B max (target <= {TARGET_BYTES}); rejected by the verifier, all agents: "
          f"{rejected}")
    if watch:
        print("\nwithout watch (this tree, same run):", end="")
        plain_rate = print_bytes(plain_counted, window)
        print("\nwith watch:", end="")
    wire_rate = print_bytes(counted, window, None if watch else base_counted)
    if watch:
        print(f"watch costs {wire_rate - plain_rate:+.0f} B/s on the wire "
              f"(ratio {ratio(wire_rate, plain_rate)})")
    met = met and top <= TARGET_BYTES and wire_rate <= TARGET_WIRE_RATE and not rejected
    print("all targets met" if met else "TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
