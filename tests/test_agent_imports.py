"""A node's agent imports what its configured probes need, and nothing else.

dnspython and httpx cost a node megabytes of resident memory (docs/performance.md, agent
memory): a node that checks only TCP and SMTP must not load either, and no agent ever loads
the director's UI or ctop itself. Each case runs the real `agentd --once --json` in a fresh
interpreter and lists the packages it loaded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.agent_helpers import Receiver, write_key

# unicodedata comes with the idna codec: a director's address must not need it.
HEAVY = ("dns", "httpx", "httpcore", "anyio", "textual", "rich", "ctop", "unicodedata")

# Runs agentd's own entry point (stopped by a SIGTERM after argv[2] seconds when that is not 0),
# then reports which of HEAVY were imported on the way.
_RUN_AGENT = """
import json, os, signal, sys, threading
from agentd.main import main
if float(sys.argv[2]):
    threading.Timer(float(sys.argv[2]), os.kill, (os.getpid(), signal.SIGTERM)).start()
status = main(sys.argv[3:])
loaded = sorted({name.partition(".")[0] for name in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"status": status, "loaded": loaded}), file=sys.stderr)
"""


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def loaded_by_agent(tmp_path: Path, probes: list[str], director: str | None = None) -> set[str]:
    """What `agentd --once --json` loads; with a director, what the running agent loads in
    its first second of reports to it."""
    conf = tmp_path / "agentd.toml"
    conf.write_text('node_id = "node-a"\ninterval = 0.1\n')
    args = ["--config", str(conf)]
    if director is None:
        args += ["--once", "--json"]
    else:
        args += ["--director", director, "--key-file", str(write_key(tmp_path / "key"))]
    for url in probes:
        args += ["--probe", url]
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AGENT, json.dumps(HEAVY), "0" if director is None else "1",
         *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    outcome = json.loads(done.stderr.strip().splitlines()[-1])
    assert outcome["status"] == 0, done.stderr
    if director is None:
        report = json.loads(done.stdout)
        assert len(report["services"]) == len(probes)
    return set(outcome["loaded"])


def test_agent_without_probes_loads_nothing_heavy(tmp_path: Path) -> None:
    assert loaded_by_agent(tmp_path, []) == set()


def test_tcp_and_smtp_probes_load_neither_dnspython_nor_httpx(
    tmp_path: Path, tcp_port: int
) -> None:
    probes = [f"tcp://127.0.0.1:{tcp_port}", f"smtp://127.0.0.1:{tcp_port}?timeout=0.5"]
    assert loaded_by_agent(tmp_path, probes) == set()


def test_running_agent_reporting_to_an_address_loads_nothing_heavy(
    tmp_path: Path, tcp_port: int
) -> None:
    receiver = Receiver()
    try:
        loaded = loaded_by_agent(tmp_path, [f"tcp://127.0.0.1:{tcp_port}"], receiver.address)
        assert receiver.receive(1.0) is not None, "the agent sent nothing"
    finally:
        receiver.close()
    assert loaded == set()


def test_each_library_loads_with_its_probe_kind_only(tmp_path: Path, tcp_port: int) -> None:
    dns_probe = f"dns://127.0.0.1:{tcp_port}/node.test?timeout=0.5"
    http_probe = f"http://127.0.0.1:{tcp_port}/?timeout=0.5"
    with_dns = loaded_by_agent(tmp_path, [dns_probe])
    assert "dns" in with_dns and "httpx" not in with_dns
    with_http = loaded_by_agent(tmp_path, [http_probe])
    assert "httpx" in with_http and "dns" not in with_http
