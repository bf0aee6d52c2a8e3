"""Group collectors on NATS (docs/scaling.md): `ctop serve --collector` publishes its groups,
a NATS view merges them, and a lost collector makes its nodes unknown — never dead — within
3 s. Real `ctop serve` processes, real nats-server, signed datagrams as agents send them."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentd.encoder import encode
from agentd.protocol import Join
from ctop.cli import status_text
from ctop.nats.collector import HEARTBEAT
from ctop.nats.config import NatsConfig
from ctop.nats.status import nats_status
from ctop.nats.view import NatsSource
from ctop.snapshot import Liveness, Snapshot
from ctop.tui.colors import RICH
from ctop.tui.widgets.header import render_header
from tests.helpers.nats_servers import NatsCluster, NatsServer
from tests.helpers.serve_helpers import Daemon, Sender


class Agents:
    """Plays agents of one group against a daemon: a join each, then a report a second."""

    def __init__(self, daemon: Daemon, group: str, names: list[str]) -> None:
        self.daemon = daemon
        self.senders = [Sender(n, key=daemon.key) for n in names]
        self.group = group
        self._stop = threading.Event()
        for s in self.senders:
            daemon.send(encode(s.key, Join(s.header(), s.node_id, ("127.0.0.9",), 2, 1 << 30,
                                           "test", 1.0, group)))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for s in self.senders:
                try:
                    self.daemon.send(s.report(interval=1.0))
                except OSError:
                    return
            self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def collector(root: Path, nats: NatsServer, name: str, groups: str = "",
              login: str = "") -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    return Daemon(root, f'[nats]\nservers = ["{nats.url}"]\nname = "{name}"\n'
                        f'role = "collector"\n{groups}\n{login}\n')


def wait_until(source: NatsSource, check: Callable[[Snapshot], bool], timeout: float = 15,
               what: str = "") -> Snapshot:
    deadline = time.monotonic() + timeout
    snap = source.snapshot()
    while time.monotonic() < deadline:
        snap = source.snapshot()
        if check(snap):
            return snap
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: "
                         f"{[(n.node_id, n.group, str(n.liveness)) for n in snap.nodes]}")


@pytest.fixture
def view(nats_server: NatsServer) -> Iterator[NatsSource]:
    source = NatsSource(NatsConfig(servers=(nats_server.url,)))
    assert source.link.wait_connected(10)
    yield source
    source.close()


def test_two_collectors_one_view_and_a_lost_collector_is_unknown_not_dead(
        tmp_path: Path, nats_server: NatsServer, view: NatsSource) -> None:
    a = collector(tmp_path / "a", nats_server, "col-a", 'groups = ["storage"]').start()
    b = collector(tmp_path / "b", nats_server, "col-b").start()
    agents = [Agents(a, "storage", ["s1", "s2"]), Agents(b, "web", ["w1", "w2", "w3"])]
    try:
        snap = wait_until(view, lambda s: sum(n.liveness is Liveness.ALIVE
                                              for n in s.nodes) == 5, what="5 alive nodes")
        # one table with its groups, each node in its group, totals over both collectors
        assert [(n.group, n.node_id) for n in snap.nodes] == [
            ("storage", "s1"), ("storage", "s2"), ("web", "w1"), ("web", "w2"), ("web", "w3")]
        assert [g.name for g in snap.groups] == ["storage", "web"]
        assert snap.totals.alive == 5
        assert any(e.kind == "join" and e.node_id == "w1" for e in snap.events), snap.events

        # `ctop --nats URL status` listening while the collector is lost
        listened: dict[str, Any] = {}
        listening = threading.Thread(target=lambda: listened.update(nats_status(
            NatsConfig(servers=(nats_server.url,)), settle=5, listen=8)))
        listening.start()
        time.sleep(2)  # it has both collectors' groups by now

        agents[0].stop()
        a.stop(signal.SIGKILL)  # the collector disappears without a word
        lost_at = time.monotonic()
        seen_dead: list[str] = []

        def storage_unknown(s: Snapshot) -> bool:
            seen_dead.extend(n.node_id for n in s.nodes if n.liveness is Liveness.DEAD)
            return all(n.liveness is Liveness.UNKNOWN for n in s.nodes if n.group == "storage")

        snap = wait_until(view, storage_unknown, timeout=5, what="storage unknown")
        assert time.monotonic() - lost_at <= 3.0
        assert seen_dead == []
        assert [str(n.liveness) for n in snap.nodes if n.group == "web"] == ["alive"] * 3
        assert "collector col-a" in snap.lb_note and "lost" in snap.lb_note
        assert snap.totals.alive == 3 and snap.totals.dead == 0
        # counted as unknown in the header, in the unknown colour: not alive, not dead
        assert snap.totals.unknown == 2 and snap.totals.nodes == 5
        header = render_header(snap, RICH)
        assert "● 3 alive ● 0 suspect ● 0 dead ● 0 left ● 2 unknown" in header.plain
        assert {header.plain[sp.start:sp.end].strip(): sp.style for sp in header.spans}[
            "● 2 unknown"] == RICH.unknown
        # and it stays unknown, never turns dead, while the collector is away
        time.sleep(1.5)
        snap = view.snapshot()
        assert {str(n.liveness) for n in snap.nodes if n.group == "storage"} == {"unknown"}
        assert any("col-a" in e.message and "lost" in e.message for e in snap.events)
        listening.join(10)
        assert listened["totals"]["unknown"] == 2 and listened["totals"]["alive"] == 3, listened
        assert [c["collector"] for c in listened["lost_collectors"]] == ["col-a"]
        assert {n["node_id"]: n["liveness"] for n in listened["nodes"]} == {
            "s1": "unknown", "s2": "unknown", "w1": "alive", "w2": "alive", "w3": "alive"}
        assert "3 alive, 0 suspect, 0 dead, 0 left, 2 unknown (collector lost)" in \
            status_text(listened)
        # the command itself: a fresh view knows only the collector still there
        out = b.ctop("--nats", nats_server.url, "status", "--json")
        assert out.returncode == 0, out.stderr
        fresh = json.loads(out.stdout)
        assert fresh["totals"]["unknown"] == 0 and fresh["totals"]["alive"] == 3
        assert sorted(n["node_id"] for n in fresh["nodes"]) == ["w1", "w2", "w3"]

        # back: the same collector again, its nodes alive again
        a2 = a.again()
        agents[0] = Agents(a2, "storage", ["s1", "s2"])
        wait_until(view, lambda s: sum(n.liveness is Liveness.ALIVE for n in s.nodes) == 5,
                   what="alive again")
        a = a2
    finally:
        for ag in agents:
            ag.stop()
        a.stop()
        b.stop()


def test_a_collector_publishes_only_its_groups(tmp_path: Path, nats_server: NatsServer,
                                               view: NatsSource) -> None:
    c = collector(tmp_path / "c", nats_server, "col-c", 'groups = ["db"]').start()
    agents = [Agents(c, "db", ["d1"]), Agents(c, "cache", ["k1"])]
    try:
        wait_until(view, lambda s: s.node("d1") is not None, what="d1")
        time.sleep(1.0)  # several ticks: k1 would be there by now
        assert view.snapshot().node("k1") is None
        assert c.status()["nodes"] and {n["node_id"] for n in c.status()["nodes"]} == {"d1", "k1"}
    finally:
        for ag in agents:
            ag.stop()
        c.stop()


def test_the_view_refuses_every_action(view: NatsSource) -> None:
    import asyncio

    assert view.lb is None and view.readonly
    with pytest.raises(RuntimeError, match="acts on nothing"):
        asyncio.run(view.lb_action(None))


def test_collector_flag_needs_a_nats_section(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    out = d.ctop("serve", "--collector")
    assert out.returncode == 2 and "--collector needs a [nats] section" in out.stderr


# Conga's per-user scopes (seed 002) as NATS permissions: "storage" may read the storage
# group's subjects and the collectors' heartbeats, and publish nothing but a request for the
# storage group's full snapshot (`want`: a view that joins asks for it, ctop.nats.view).
SCOPES = """
authorization {
  users = [
    { user: "admin", password: "admin-pw" }
    { user: "storage", password: "storage-pw", permissions: {
        publish: { allow: ["ctop.*.storage.want"] }
        subscribe: { allow: ["ctop.*.storage.>", "ctop.*._collector.*", "_INBOX.>"] } } }
  ]
}
"""
ADMIN = 'user = "admin"\npassword = "admin-pw"'


@pytest.fixture(scope="module")
def scoped_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer("scoped", tmp_path_factory.mktemp("nats-scoped"),
                        extra=SCOPES).start().wait_ready()
    yield server
    server.stop()


def test_a_user_scoped_to_storage_sees_only_storage_and_acts_on_nothing(
        tmp_path: Path, scoped_nats: NatsServer) -> None:
    from ctop.nats.link import KeyNotFound
    from ctop.nats.pair import bucket_name

    c = collector(tmp_path / "c", scoped_nats, "col", login=ADMIN).start()
    agents = [Agents(c, "storage", ["s1"]), Agents(c, "web", ["w1"])]
    admin_cfg = NatsConfig(servers=(scoped_nats.url,), user="admin", password="admin-pw")
    storage_cfg = NatsConfig(servers=(scoped_nats.url,), user="storage", password="storage-pw",
                             groups=("storage",))
    admin, storage = NatsSource(admin_cfg), NatsSource(storage_cfg)
    try:
        wait_until(admin, lambda s: {n.node_id for n in s.nodes} == {"s1", "w1"},
                   what="the admin sees both groups")
        # well before the collector's next keyframe (KEYFRAME s): it asked, and was answered
        snap = wait_until(storage, lambda s: s.node("s1") is not None, timeout=8,
                          what="storage sees s1")
        time.sleep(1.0)  # several snapshots of web were published meanwhile
        snap = storage.snapshot()
        assert [n.node_id for n in snap.nodes] == ["s1"]
        assert [g.name for g in snap.groups] == ["storage"]
        assert all(e.node_id in (None, "s1") for e in snap.events), snap.events
        assert storage.view.errors == 0

        # acting = writing an intent into the pair's bucket: refused to storage, not to admin
        bucket = bucket_name(admin_cfg, "t")
        admin.link.bucket(bucket)
        admin.link.kv_put(bucket, "probe", b"admin")
        storage.link.publish(f"$KV.{bucket}.drain.web.w1", b"drain w1")
        with pytest.raises(KeyNotFound):
            admin.link.kv_get(bucket, "drain.web.w1")
        assert admin.link.kv_get(bucket, "probe").value == b"admin"
        # nor can it pretend to be a collector
        storage.link.publish("ctop.t.storage.snap", b"forged")
        time.sleep(0.3)
        assert admin.view.errors == 0

        # and a scoped user asking for everything gets nothing, not the other groups
        greedy = NatsSource(replace(storage_cfg, groups=()))
        try:
            time.sleep(1.5)
            assert greedy.snapshot().nodes == ()
        finally:
            greedy.close()
    finally:
        admin.close()
        storage.close()
        for ag in agents:
            ag.stop()
        c.stop()


def _holding(cluster: NatsCluster, client: str) -> NatsServer:
    """The server of the 3-node cluster the named client is connected to (its /connz)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for n in (n for n in cluster.nodes if n.running):
            conns = httpx.get(f"http://127.0.0.1:{n.monitor}/connz", timeout=2).json()
            if any(c.get("name") == client for c in conns.get("connections") or []):
                return n
        time.sleep(0.1)
    raise AssertionError(f"no server of the cluster holds {client!r}")


def test_losing_the_collectors_nats_server_loses_no_node_and_kills_none(
        tmp_path: Path, nats_cluster_whole: NatsCluster) -> None:
    servers = ", ".join(f'"{u}"' for u in nats_cluster_whole.urls)
    c = Daemon(_dir(tmp_path / "c"), f'[nats]\nservers = [{servers}]\nname = "col-n"\n'
                                      f'role = "collector"\n').start()
    agents = Agents(c, "storage", ["s1", "s2", "s3"])
    view = NatsSource(NatsConfig(servers=tuple(nats_cluster_whole.urls)))
    try:
        wait_until(view, lambda s: sum(n.liveness is Liveness.ALIVE for n in s.nodes) == 3,
                   what="3 alive")
        server = _holding(nats_cluster_whole, "ctop collector col-n")
        assert server.proc is not None
        server.proc.kill()  # the collector's server dies: it reconnects to another
        server.proc.wait()
        states: set[str] = set()
        deadline = time.monotonic() + 6  # well past the 2 s a lost collector is allowed
        while time.monotonic() < deadline:
            snap = view.snapshot()
            states |= {str(n.liveness) for n in snap.nodes}
            time.sleep(0.05)
        assert states == {"alive"}, states  # never unknown, never dead
        assert [n.node_id for n in view.snapshot().nodes] == ["s1", "s2", "s3"]
        assert _holding(nats_cluster_whole, "ctop collector col-n") is not server
    finally:
        view.close()
        agents.stop()
        c.stop()


def test_a_collector_whose_server_hangs_then_dies_keeps_its_nodes_alive(
        tmp_path: Path, nats_cluster_whole: NatsCluster) -> None:
    """The collector's server hangs (SIGSTOP) long enough for a publish to wait on it, then
    dies: the collector reconnects to another member and its nodes stay alive in a view on
    the other members. Its heartbeat used to wait out the dead server's PONG (5 s, nats-py
    forgets it on reconnect): the view called it lost and its nodes unknown."""
    servers = ", ".join(f'"{u}"' for u in nats_cluster_whole.urls)
    c = Daemon(_dir(tmp_path / "c"), f'[nats]\nservers = [{servers}]\nname = "col-h"\n'
                                      f'role = "collector"\n').start()
    agents = Agents(c, "hung", ["h1", "h2"])
    view: NatsSource | None = None
    try:
        server = _holding(nats_cluster_whole, "ctop collector col-h")
        assert server.proc is not None
        view = NatsSource(NatsConfig(servers=tuple(
            n.url for n in nats_cluster_whole.nodes if n is not server)))
        wait_until(view, lambda s: sum(n.liveness is Liveness.ALIVE for n in s.nodes) == 2,
                   what="2 alive")
        server.proc.send_signal(signal.SIGSTOP)
        time.sleep(HEARTBEAT + 0.1)  # a heartbeat's publish now waits for the hung server
        server.proc.kill()
        server.proc.wait()
        states: set[str] = set()
        deadline = time.monotonic() + 6  # past the 5 s the heartbeat used to wait
        while time.monotonic() < deadline:
            states |= {str(n.liveness) for n in view.snapshot().nodes}
            time.sleep(0.05)
        assert states == {"alive"}, (states, view.view.lost())
        assert _holding(nats_cluster_whole, "ctop collector col-h") is not server
    finally:
        if view is not None:
            view.close()
        agents.stop()
        c.stop()

def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_each_directors_balancers_in_the_view_and_gone_with_the_director(
        nats_server: NatsServer, view: NatsSource) -> None:
    from ctop.nats.collector import CollectorPublisher
    from ctop.nats.link import NatsLink
    from tests.helpers.sample import sample_snapshot

    links, pubs = [], []
    try:
        for name in ("dir-a", "dir-b"):
            cfg = NatsConfig(servers=(nats_server.url,), name=name)  # role director
            links.append(NatsLink(cfg).start())
            pubs.append(CollectorPublisher(links[-1], cfg, "t"))
        snap = sample_snapshot(6, lb=True)
        assert snap.lb
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(view.snapshot().lb) < 2 * len(snap.lb):
            for p in pubs:
                p.offer(snap)
            time.sleep(0.1)
        keys = [s.key for s in view.snapshot().lb]
        assert keys == [f"dir-a {s.key}" for s in snap.lb] + [f"dir-b {s.key}" for s in snap.lb]
        assert view.snapshot().nodes == ()  # a director publishes no groups
        pubs[0].close()  # dir-a goes away: its balancers leave the view, dir-b's stay
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                s.key.startswith("dir-a ") for s in view.snapshot().lb):
            pubs[1].offer(snap)
            time.sleep(0.1)
        assert [s.key for s in view.snapshot().lb] == [f"dir-b {s.key}" for s in snap.lb], \
            view.view.lost()
    finally:
        for p in pubs:
            p.close()
        for lk in links:
            lk.close()
