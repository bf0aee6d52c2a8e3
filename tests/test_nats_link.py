"""The NATS foundation: the [nats] config section and ctop.nats.link against real nats-server
processes (a single server, a 3-node cluster with one node lost, a server with a password)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ctop.config import ConfigError, load
from ctop.nats.config import NatsConfig
from ctop.nats.link import KeyNotFound, KVEntry, NatsDown, NatsLink, WrongRevision
from tests.helpers.nats_servers import NatsCluster, NatsServer

pytest.importorskip("nats")


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ctop.toml"
    path.write_text('key_file = "/dev/null"\n' + text)
    return path


def test_no_nats_section_means_no_nats(tmp_path: Path) -> None:
    assert load(str(_config(tmp_path, "")), must_exist=True).nats is None


def test_nats_section_parsed(tmp_path: Path) -> None:
    cfg = load(str(_config(tmp_path, '[nats]\nservers = ["nats://10.0.0.1:4222", '
                           '"nats://10.0.0.2:4222"]\nname = "dir-a"\npeers = ["dir-b"]\n'
                           'user = "ctop"\npassword = "pw"\nconfirm_timeout = "2s"\n')),
               must_exist=True).nats
    assert cfg is not None
    assert cfg.servers == ("nats://10.0.0.1:4222", "nats://10.0.0.2:4222")
    assert (cfg.director_name, cfg.peers, cfg.confirm_timeout) == ("dir-a", ("dir-b",), 2.0)


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[nats]\nservers = ["10.0.0.1:4222"]\n', 3, "not a nats://host:port URL"),
    ('[nats]\nname = "a"\npassword = "x"\n', 4, "needs user"),
    ('[nats]\nname = "a"\npeers = ["a"]\n', 4, "names this director itself"),
    ('[nats]\nname = "a b"\n', 3, "letters, digits"),
    ('[nats]\nuser = "u"\ncreds = "/x.creds"\n', 4, "one way to log in"),
    ('[nats]\nconfirm_timeout = "2h"\n', 3, "0..60 s"),
    ('[nats]\nserver = ["nats://a:1"]\n', 3, "unknown key"),
])
def test_nats_section_errors_name_file_and_line(tmp_path: Path, text: str, line: int,
                                                words: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load(str(path), must_exist=True)
    assert f"{path}:{line}:" in str(err.value) and words in str(err.value)


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[NatsLink]:
    lk = NatsLink(NatsConfig(servers=(nats_server.url,))).start()
    assert lk.wait_connected(10), lk.status
    yield lk
    lk.close()


def test_kv_put_get_update_and_watch(link: NatsLink) -> None:
    bucket = f"t_{time.monotonic_ns()}"
    link.bucket(bucket, history=5)
    rev = link.kv_put(bucket, "a.1", b"one")
    assert link.kv_get(bucket, "a.1") == KVEntry("a.1", b"one", rev)
    with pytest.raises(KeyNotFound):
        link.kv_get(bucket, "a.2")
    rev2 = link.kv_update(bucket, "a.1", b"two", last=rev)
    with pytest.raises(WrongRevision):  # a second writer on the old revision loses
        link.kv_update(bucket, "a.1", b"three", last=rev)
    seen: list[KVEntry] = []
    got = threading.Event()

    def on(entry: KVEntry) -> None:
        seen.append(entry)
        if entry.value == b"four":
            got.set()

    link.watch(bucket, "a.>", on)
    link.kv_put(bucket, "a.3", b"four")
    assert got.wait(5), seen
    first = seen[0]
    assert (first.key, first.value, first.revision) == ("a.1", b"two", rev2)
    assert sorted(link.kv_keys(bucket)) == ["a.1", "a.3"]


def test_publish_subscribe(link: NatsLink) -> None:
    got: list[tuple[bytes, str]] = []
    arrived = threading.Event()
    link.subscribe("ctop.test.>", lambda data, subject: (got.append((data, subject)),
                                                          arrived.set()))
    deadline = time.monotonic() + 5
    while not arrived.is_set() and time.monotonic() < deadline:  # until the sub is in place
        link.publish("ctop.test.x", b"hello")
        arrived.wait(0.1)
    assert got[0] == (b"hello", "ctop.test.x")


def test_a_failing_callback_does_not_stop_the_link(link: NatsLink) -> None:
    bucket = f"t_{time.monotonic_ns()}"
    good = threading.Event()
    link.watch(bucket, ">", lambda e: 1 / 0)
    link.watch(bucket, ">", lambda e: good.set() if e.value == b"2" else None)
    link.kv_put(bucket, "k", b"1")
    link.kv_put(bucket, "k", b"2")
    assert good.wait(5)
    assert link.kv_get(bucket, "k").value == b"2"


def test_down_at_start_refuses_at_once_then_connects(tmp_path: Path) -> None:
    server = NatsServer("late", tmp_path / "late")
    lk = NatsLink(NatsConfig(servers=(server.url,), reconnect_wait=0.1)).start()
    try:
        time.sleep(0.3)
        assert lk.status.state == "connecting" and lk.status.error
        started = time.monotonic()
        with pytest.raises(NatsDown, match="not connected"):
            lk.kv_put("b", "k", b"v")
        assert time.monotonic() - started < 0.5  # refused at once, no timeout waited
        server.start().wait_ready()
        assert lk.wait_connected(10), lk.status
        assert lk.kv_put("b", "k", b"v") > 0
        server.stop()
        deadline = time.monotonic() + 10
        while lk.status.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lk.status.state == "reconnecting"
        assert "reconnecting for" in lk.status.text()
    finally:
        lk.close()
        server.stop()


def test_password_login(tmp_path: Path) -> None:
    server = NatsServer("auth", tmp_path / "auth",
                        extra='authorization { user: "ctop", password: "s3cret" }')
    server.start().wait_ready()
    (tmp_path / "pw").write_text("s3cret\n")
    good = NatsLink(NatsConfig(servers=(server.url,), user="ctop",
                               password_file=str(tmp_path / "pw"))).start()
    bad = NatsLink(NatsConfig(servers=(server.url,), user="ctop", password="nope")).start()
    try:
        assert good.wait_connected(10), good.status
        assert not bad.wait_connected(1)
        assert bad.status.state == "connecting" and bad.status.error  # refused, and why
    finally:
        good.close()
        bad.close()
        server.stop()


def test_cluster_node_loss_keeps_values_and_watch(nats_cluster_whole: NatsCluster) -> None:
    cluster = nats_cluster_whole
    lk = NatsLink(NatsConfig(servers=tuple(cluster.urls), replicas=3,
                             reconnect_wait=0.1)).start()
    try:
        assert lk.wait_connected(10)
        bucket = f"t_{time.monotonic_ns()}"
        lk.bucket(bucket)
        lk.kv_put(bucket, "drain", b"s1")
        values: list[bytes] = []
        after = threading.Event()
        lk.watch(bucket, ">", lambda e: (values.append(e.value),
                                         after.set() if e.value == b"s2" else None))
        deadline = time.monotonic() + 10
        while not values and time.monotonic() < deadline:  # the watch runs before the loss
            time.sleep(0.05)
        assert values == [b"s1"]
        victim = next(n for n in cluster.nodes if n.url == lk.status.server)
        victim.stop()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # reconnects to another node; JetStream re-elects
            try:
                if lk.status.connected and lk.status.server != victim.url:
                    lk.kv_put(bucket, "drain2", b"s2")
                    break
            except Exception:
                pass
            time.sleep(0.1)
        assert lk.status.server != victim.url
        assert lk.kv_get(bucket, "drain").value == b"s1"  # nothing lost
        assert after.wait(20), values  # the watch goes on after the reconnect
    finally:
        lk.close()



def test_a_call_waiting_when_its_server_dies_fails_at_once(
        nats_cluster_whole: NatsCluster) -> None:
    """The server hangs (SIGSTOP: the publish's flush waits for a PONG), then dies: the link
    reconnects to another member at once, and the publish that waited fails at once with
    NatsDown. nats-py forgets that PONG on reconnect: the call waited out all CALL_TIMEOUT
    (5 s), and a collector's heartbeat behind it made its nodes unknown in every view."""
    cluster = nats_cluster_whole
    lk = NatsLink(NatsConfig(servers=tuple(cluster.urls), reconnect_wait=0.1)).start()
    victim: NatsServer | None = None
    try:
        assert lk.wait_connected(10)
        victim = next(n for n in cluster.nodes if n.url == lk.status.server)
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGSTOP)
        outcome: list[BaseException | None] = []
        waiting = threading.Thread(target=lambda: outcome.append(_raised(
            lambda: lk.publish("ctop.test.hung", b"x"))))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive(), outcome  # the flush waits for the hung server
        victim.proc.kill()
        killed = time.monotonic()
        waiting.join(10)
        took = time.monotonic() - killed
        assert isinstance(outcome[0], NatsDown), outcome
        assert "lost during the call" in str(outcome[0])
        assert took < 2.0, f"the call waited {took:.1f} s after its server died"
        assert lk.wait_connected(10) and lk.status.server != victim.url
        lk.publish("ctop.test.after", b"y")  # and the link goes on
    finally:
        lk.close()
        if victim is not None and victim.proc is not None:
            victim.proc.kill()  # SIGKILL ends a stopped process too; the fixture restarts it
            victim.proc.wait()


def _raised(call: Callable[[], object]) -> BaseException | None:
    try:
        call()
    except BaseException as e:  # what the caller's thread would see
        return e
    return None


async def test_nats_section_without_the_client_is_a_clear_start_error(tmp_path: Path,
                                                                      monkeypatch,
                                                                      haproxy) -> None:
    import sys

    from ctop.startup import StartError
    from tests.helpers.engine_helpers import make_engine

    eng = make_engine(tmp_path, lb={"haproxy": {"socket": haproxy.admin_socket}},
                      nats=NatsConfig(name="dir-a"))
    monkeypatch.setitem(sys.modules, "nats", None)  # as if nats-py were not installed
    try:
        with pytest.raises(StartError, match=r"pip install 'ctop\[nats\]'"):
            await eng.start()
    finally:
        await eng.stop()
