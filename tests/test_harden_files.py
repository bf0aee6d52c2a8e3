"""Files, sockets and errors of the director (issue 10, points 5-11): real `ctop serve`
processes, real UNIX sockets planted by other users, real agentd processes."""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import pytest

from ctop.codec import to_plain
from ctop.control.wire import MAX_REQUEST
from tests.helpers.agent_helpers import start_agent, stop_agent, write_key
from tests.helpers.sample import sample_snapshot
from tests.helpers.serve_helpers import CTOP, Daemon, Sender, env_without, free_udp_port, node

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes owners: needs root")


# -- 5: the database is 0640, group from [control] group ---------------------------------------


def _modes(directory: Path) -> dict[str, tuple[int, int]]:
    return {name: (stat.S_IMODE(st.st_mode), st.st_gid) for name in
            ("ctop.db", "ctop.db-wal", "ctop.db-shm") if (st := os.stat(directory / name))}


def _run_briefly(d: Daemon) -> dict[str, tuple[int, int]]:
    d.start()
    try:
        d.send(Sender("n1").report())
        d.wait_for(lambda s: node(s, "n1") is not None, what="n1")
        wal = d.root / "ctop.db-wal"  # polled by size: a reader here would make files itself
        deadline = time.monotonic() + 10
        while not (wal.exists() and wal.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)  # until a tick has written to the -wal
        modes = _modes(d.root)
    finally:
        d.stop()
    return modes


def test_the_history_database_is_not_readable_by_other_users(tmp_path):
    modes = _run_briefly(Daemon(tmp_path))
    assert {mode for mode, _ in modes.values()} == {0o640}, modes
    # a database an older version made 0644 is tightened at start
    (tmp_path / "ctop.db").chmod(0o644)
    Daemon(tmp_path).start().stop()
    assert stat.S_IMODE((tmp_path / "ctop.db").stat().st_mode) == 0o640


@pytest.mark.root
@needs_root
def test_the_history_database_belongs_to_the_control_group(tmp_path):
    group = grp.getgrgid(NOBODY).gr_name  # any group the daemon does not run as
    modes = _run_briefly(Daemon(tmp_path, f'[control]\ngroup = "{group}"'))
    assert set(modes.values()) == {(0o640, NOBODY)}, modes



def test_opening_the_journal_next_to_the_store_keeps_every_write(tmp_path):
    """The daemon opens the journal on the store's file: making sure the file is private must
    not close a descriptor of it (that drops the process's SQLite locks, and another process's
    connection then deletes the WAL the daemon still writes to: its writes vanish)."""
    import sqlite3

    from ctop.lb.journal import Journal
    from ctop.store import Store

    db = tmp_path / "ctop.db"
    store = Store(str(db))
    journal = Journal(db)
    try:
        for i in range(3):
            # another process reads the journal and closes its connection (ctop lb log)
            subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect("
                            "sys.argv[1]); c.execute('SELECT count(*) FROM lb_actions')"
                            ".fetchone(); c.close()", str(db)], check=True, timeout=30)
            journal.record(origin="cli", balancer="haproxy", service="web", server=f"s{i}",
                           action="drain", weight_before=1, weight_after=0, result="ok")
        assert (tmp_path / "ctop.db-wal").exists()
        with contextlib.closing(sqlite3.connect(db)) as other:
            rows = other.execute("SELECT server FROM lb_actions ORDER BY id").fetchall()
        assert rows == [("s0",), ("s1",), ("s2",)]
    finally:
        journal.close()
        store.close()

# -- 6: a socket another user planted is never trusted ------------------------------------------


class ForgedDaemon:
    """Another local user's socket answering every request with a forged cluster."""

    def __init__(self, path: Path, owner: int) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        os.chmod(path, 0o666)
        os.chown(path, owner, owner)
        snap = to_plain(sample_snapshot(3))
        snap["cluster"] = "FORGED-cluster"
        body = msgpack.packb(snap)
        self.answer = len(body).to_bytes(4, "big") + body
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


def _as_nobody(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", str(CTOP), *args],
                          capture_output=True, text=True, timeout=30, env=env, cwd="/")


@pytest.mark.root
@needs_root
def test_a_socket_planted_in_tmp_by_another_user_is_refused():
    """No XDG_RUNTIME_DIR: the socket is /tmp/ctop-UID, which another user can create first."""
    planted = Path(f"/tmp/ctop-{NOBODY}")
    shutil.rmtree(planted, ignore_errors=True)
    planted.mkdir(mode=0o755)
    os.chown(planted, 1, 1)  # the attacker's (uid 1, daemon) directory
    forged = ForgedDaemon(planted / "ctop.sock", owner=1)
    try:
        env = {**env_without("XDG_RUNTIME_DIR"), "HOME": "/nonexistent"}
        out = _as_nobody("status", "--config", "/dev/null", env=env)  # not the machine's
        assert "FORGED" not in out.stdout
        assert out.returncode == 3
        assert f"{planted}/ctop.sock belongs to daemon (uid 1)" in out.stderr
        assert "planted" in out.stderr and "Traceback" not in out.stderr
    finally:
        forged.close()
        shutil.rmtree(planted, ignore_errors=True)


@pytest.mark.root
@needs_root
def test_a_socket_in_a_directory_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could have replaced the socket
    forged = ForgedDaemon(shared / "ctop.sock", owner=0)
    try:
        out = subprocess.run([str(CTOP), "status", "--config", "/dev/null",
                              "--socket", str(shared / "ctop.sock")],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 3 and "FORGED" not in out.stdout
        assert f"directory {shared} can be written by others (mode 0777)" in out.stderr
    finally:
        forged.close()


# -- 7: control_socket pointing at a file ----------------------------------------------------


def test_a_control_socket_setting_that_names_a_file_never_deletes_it(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    d = Daemon(tmp_path)
    d.sock = precious
    d.config.write_text(d.config.read_text().replace(str(tmp_path / "ctop.sock"), str(precious)))
    out = subprocess.run([str(CTOP), "serve", "--config", str(d.config)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert precious.read_text() == "keep me\n"
    assert f"key 'control_socket' = '{precious}'" in out.stderr and "not a socket" in out.stderr


# -- 8: serve errors name the setting, file:line and the address ---------------------------------


def _serve_error(tmp_path: Path, text: str) -> str:
    write_key(tmp_path / "k.key")
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    out = subprocess.run([str(CTOP), "serve", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=30, cwd=tmp_path)
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip().splitlines()[-1]


def _base(tmp_path: Path, listen: str = "127.0.0.1:0") -> str:
    return (f'cluster = "t"\nlisten = "{listen}"\nkey_file = "{tmp_path}/k.key"\n'
            f'control_socket = "{tmp_path}/s.sock"\n')


def test_serve_says_which_listen_address_is_not_on_this_host(tmp_path):
    err = _serve_error(tmp_path, _base(tmp_path, "192.0.2.1:7117") + f'[store]\npath = '
                       f'"{tmp_path}/db"\n')
    assert err == (f"ctop serve: {tmp_path}/c.toml:2: key 'listen' = '192.0.2.1:7117': cannot "
                   "listen on udp 192.0.2.1:7117: no such address on this host")


def test_serve_says_which_host_name_does_not_resolve(tmp_path):
    err = _serve_error(tmp_path, _base(tmp_path, "no-such-host.invalid:7117"))
    assert f"{tmp_path}/c.toml:2: key 'listen' = 'no-such-host.invalid:7117'" in err
    assert "does not resolve" in err


def test_serve_says_which_port_is_in_use(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        err = _serve_error(tmp_path, _base(tmp_path, f"127.0.0.1:{port}")
                           + f'[store]\npath = "{tmp_path}/db"\n')
    assert f"c.toml:2: key 'listen' = '127.0.0.1:{port}'" in err and "already in use" in err


def test_serve_says_which_database_path_cannot_be_opened(tmp_path):
    err = _serve_error(tmp_path, _base(tmp_path) + f'[store]\npath = "{tmp_path}"\n')
    assert f"c.toml:6: key 'store.path' = '{tmp_path}'" in err
    assert "cannot open or create the history database" in err
    err = _serve_error(tmp_path, _base(tmp_path) + '[store]\npath = "/proc/none/ctop.db"\n')
    assert "c.toml:6: key 'store.path' = '/proc/none/ctop.db'" in err


def test_serve_says_which_socket_directory_cannot_be_created(tmp_path):
    text = _base(tmp_path).replace(f"{tmp_path}/s.sock", "/proc/none/ctop.sock")
    err = _serve_error(tmp_path, text + f'[store]\npath = "{tmp_path}/db"\n')
    assert "c.toml:4: key 'control_socket' = '/proc/none/ctop.sock'" in err


def test_an_empty_key_file_setting_says_so(tmp_path):
    err = _serve_error(tmp_path, _base(tmp_path).replace(f"{tmp_path}/k.key", ""))
    assert err == f"ctop: {tmp_path}/c.toml:3: key 'key_file': is empty; give the path of " \
                  "the cluster key file"


def test_malformed_toml_at_the_end_of_a_file_names_its_line(tmp_path):
    err = _serve_error(tmp_path, _base(tmp_path) + '[store]\npath = "/var/lib/ctop')
    assert err.startswith(f"ctop: {tmp_path}/c.toml:6: invalid TOML")


def test_a_prometheus_listen_that_fails_is_fatal(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = _serve_error(tmp_path, _base(tmp_path) + f'[store]\npath = "{tmp_path}/db"\n'
                           f'[prometheus]\nlisten = "127.0.0.1:{port}"\n')
    assert f"c.toml:8: key 'prometheus.listen' = '127.0.0.1:{port}'" in err
    assert "already in use" in err


# -- 9: which host sends the rejected datagrams --------------------------------------------------


def test_the_sources_of_rejected_datagrams_are_named(tmp_path):
    prom = free_udp_port()
    d = Daemon(tmp_path, f'[prometheus]\nlisten = "127.0.0.1:{prom}"').start()
    wrong = Sender("n9", key=b"another cluster's key, 32 bytes!")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.7", 0))  # the misconfigured host
            for _ in range(5):
                s.sendto(wrong.report(), ("127.0.0.1", d.port))
        d.send(Sender("n1").report())
        status = d.wait_for(lambda s: s["drops"].get("bad_tag") == 5, what="5 bad tags")
        assert status["drop_sources"]["bad_tag"] == [["127.0.0.7", 5]]
        assert "bad_tag from 127.0.0.7 (5)" in d.status_text()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5).read()
        assert (b'ctop_receiver_drops_by_source_total{cluster="t",reason="bad_tag",'
                b'source="127.0.0.7"} 5') in metrics
    finally:
        d.stop()


# -- 10: agentd's HTTP probes do not log every request --------------------------------------------


def test_agentd_http_probes_are_quiet(tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits = []

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    (tmp_path / "agent.toml").write_text(f'probes = ["{url}"]\n')
    key = write_key(tmp_path / "k.key")
    agent = start_agent("--config", str(tmp_path / "agent.toml"), "--director",
                        f"127.0.0.1:{free_udp_port()}", "--key-file", str(key), "--interval",
                        "0.2")
    deadline = time.monotonic() + 10
    while not hits and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    _, err = stop_agent(agent)
    server.shutdown()
    assert hits  # the probe ran
    assert "HTTP Request" not in err and "httpx" not in err, err


# -- 11: a closed pipe and bad requests are handled quietly -------------------------------------


def test_status_json_into_head_is_quiet(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        for i in range(300):  # a status far larger than a pipe's buffer
            d.send(Sender(f"node-{i:03d}").report())
        d.wait_for(lambda s: len(s["nodes"]) == 300, what="300 nodes")
        head = subprocess.run(f"{CTOP} status --json --config {d.config} | head -c 100",
                              shell=True, capture_output=True, text=True, timeout=30)
        assert len(head.stdout) == 100
        assert head.stderr == ""
    finally:
        d.stop()


def _raw_request(path: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)  # the daemon may stop reading a too long request: that is fine
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def test_oversized_and_non_utf8_requests_get_an_answer_and_no_traceback(tmp_path):
    d = Daemon(tmp_path).start()
    try:
        for bad in (b"\xff\xfe status\n", b"x" * (MAX_REQUEST * 30) + b"\n", b"x" * 200_000):
            answer = _raw_request(d.sock, bad)
            if answer:
                assert b"bad request" in answer
        assert d.status()["cluster"] == "t"  # and the daemon serves on
    finally:
        code, err = d.stop()
    assert code == 0
    assert "Traceback" not in err and "Error" not in err, err
