"""Real nats-server processes (Debian's /usr/sbin/nats-server) on loopback, for the NATS tests.

Session fixtures:
- `nats_server`: one server with JetStream (a store directory under tmp).
- `nats_cluster`: three servers with JetStream, joined by routes (cluster "ctop-test"); a test
  may `stop()` / `start()` one node (same ports, same store) for failure tests and must leave
  the cluster whole again (`nats_cluster_whole` does that for it).
Each server has its own random free client, cluster and monitoring ports; readiness is polled on
the monitoring port's /healthz (which answers ok only once JetStream is ready). Extra server
configuration (accounts, permissions, users) goes in `extra` as nats-server config text.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import stop_process, wait_until_ready

BINARY = "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nats_binary() -> str | None:
    return shutil.which("nats-server") or (BINARY if Path(BINARY).exists() else None)


@dataclass
class NatsServer:
    name: str
    root: Path  # config, log and JetStream store live here
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    cluster_port: int | None = None  # routes listen here (cluster members only)
    routes: tuple[int, ...] = ()  # the other members' cluster ports
    extra: str = ""  # more nats-server config (authorization, accounts)
    host: str = "127.0.0.1"  # clients connect here (a lab bridge's address for namespaces)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / "nats.log"

    def config_text(self) -> str:
        lines = [
            f'server_name: "{self.name}"',
            f"listen: {self.host}:{self.port}",
            f"http: 127.0.0.1:{self.monitor}",
            f'jetstream {{ store_dir: "{self.root / "js"}", max_memory_store: 64MB, '
            "max_file_store: 256MB }",
        ]
        if self.cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines.append(f'cluster {{ name: "ctop-test", listen: 127.0.0.1:{self.cluster_port}, '
                         f"routes: [{routes}] }}")
        return "\n".join(lines) + "\n" + self.extra + "\n"

    def start(self) -> NatsServer:
        binary = nats_binary()
        if binary is None:
            pytest.skip("nats-server is not installed (Debian package nats-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nats.conf"
        conf.write_text(self.config_text())
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.monitor}/healthz", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 20) -> NatsServer:
        assert self.proc is not None
        wait_until_ready(f"nats-server {self.name}", self.proc, self.ready, self.log, timeout)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class NatsCluster:
    nodes: list[NatsServer]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def wait_ready(self, timeout: float = 30) -> NatsCluster:
        for n in self.nodes:
            n.wait_ready(timeout)
        _wait_meta_leader(self.nodes[0], timeout)
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def _wait_meta_leader(node: NatsServer, timeout: float) -> None:
    """JetStream in a cluster answers only once its meta group has a leader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            info = httpx.get(f"http://127.0.0.1:{node.monitor}/jsz", timeout=1).json()
            if (info.get("meta_cluster") or {}).get("leader"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError("the NATS cluster elected no JetStream meta leader")


def start_cluster(root: Path, size: int = 3, extra: str = "") -> NatsCluster:
    cports = [free_port() for _ in range(size)]
    nodes = [NatsServer(f"n{i + 1}", root / f"n{i + 1}", cluster_port=cports[i],
                        routes=tuple(p for j, p in enumerate(cports) if j != i), extra=extra)
             for i in range(size)]
    for n in nodes:
        n.start()
    return NatsCluster(nodes).wait_ready()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer("single", tmp_path_factory.mktemp("nats")).start().wait_ready()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("nats-cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_cluster_whole(nats_cluster: NatsCluster) -> Iterator[NatsCluster]:
    """The 3-node cluster, every node running again after the test (a failure test stops
    one)."""
    yield nats_cluster
    for n in nats_cluster.nodes:
        if not n.running:
            n.start()
    nats_cluster.wait_ready()
