"""A node's install, for real: a fresh venv with `pip install ctop` (no extras) from a copy of
this source tree, as README's "Installing" says. It must run agentd with its probes, talk to a
director, and carry no UI libraries; `ctop`'s UI must say what to install instead of crashing.

One venv per session, built in the background from the end of collection on
(tests/helpers/node_install.py); pip's cache makes the second run cheap.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agentd.protocol import Report
from ctop.ingest import Verifier
from tests.helpers.agent_helpers import KEY, Receiver, write_key
from tests.helpers.node_install import NodeInstall, start_build


@pytest.fixture(scope="session")
def node_install() -> NodeInstall:
    """Built in the background since collection (tests/helpers/node_install.py)."""
    return start_build().result(timeout=600)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"OK\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_node_install_has_no_ui_libraries(node_install: NodeInstall) -> None:
    for library in ("textual", "rich"):
        found = subprocess.run(
            [str(node_install.python), "-c", f"import {library}"], capture_output=True, text=True
        )
        assert found.returncode != 0, f"a node install can import {library}"
        assert "ModuleNotFoundError" in found.stderr


def test_node_agent_once_json_runs_its_probes(
    node_install: NodeInstall, tmp_path: Path, http_port: int, tcp_port: int
) -> None:
    conf = tmp_path / "agentd.toml"  # its own config: never the machine's /etc/ctop
    conf.write_text('node_id = "node-a"\ninterval = 0.2\n')
    done = subprocess.run(
        [str(node_install.agentd), "--config", str(conf), "--once", "--json",
         "--probe", f"http://127.0.0.1:{http_port}/", "--probe", f"tcp://127.0.0.1:{tcp_port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["node"] == "node-a"
    assert report["metrics"]["mem_percent"] > 0
    statuses = {s["name"]: (s["status"], s["detail"]) for s in report["services"]}
    assert statuses[f"http://127.0.0.1:{http_port}/"] == ("ok", "HTTP 200 OK")
    assert statuses[f"tcp://127.0.0.1:{tcp_port}"][0] == "ok"


def test_node_agent_reports_to_a_director(node_install: NodeInstall, tmp_path: Path) -> None:
    key = write_key(tmp_path / "cluster.key")
    conf = tmp_path / "agentd.toml"
    conf.write_text(f'node_id = "node-b"\ninterval = 0.2\nkey_file = "{key}"\n')
    receiver = Receiver()
    agent = subprocess.Popen(
        [str(node_install.agentd), "--config", str(conf), "--director", receiver.address],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        verifier = Verifier(KEY)
        reports = []
        deadline = time.monotonic() + 20
        while not reports and time.monotonic() < deadline:
            data = receiver.receive(1.0)
            if data is not None and isinstance(msg := verifier.verify(data), Report):
                reports.append(msg)
        assert reports, "no verified report from the node-installed agentd"
        assert reports[0].header.node == "node-b"
    finally:
        agent.terminate()
        agent.wait(10)
        receiver.close()


@pytest.mark.parametrize("args", [[], ["--demo"]], ids=["ui", "demo"])
def test_ctop_ui_on_a_node_says_what_to_install(
    node_install: NodeInstall, tmp_path: Path, args: list[str]
) -> None:
    done = subprocess.run(
        [str(node_install.ctop), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "pip install '.[director]'" in done.stderr
    assert "textual" in done.stderr


def test_ctop_probe_runs_on_a_node(node_install: NodeInstall, tcp_port: int) -> None:
    done = subprocess.run(
        [str(node_install.ctop), "probe", f"tcp://127.0.0.1:{tcp_port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout
