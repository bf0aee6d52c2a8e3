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

HEAVY = ("dns", "httpx", "httpcore", "anyio", "textual", "rich", "ctop")

# Runs agentd's own entry point, then reports which of HEAVY were imported on the way.
_RUN_AGENT = """
import json, sys
from agentd.main import main
status = main(sys.argv[2:])
loaded = sorted({name.partition(".")[0] for name in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"status": status, "loaded": loaded}), file=sys.stderr)
"""


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def loaded_by_agent(tmp_path: Path, probes: list[str]) -> set[str]:
    conf = tmp_path / "agentd.toml"
    conf.write_text('node_id = "node-a"\ninterval = 0.1\n')
    args = ["--config", str(conf), "--once", "--json"]
    for url in probes:
        args += ["--probe", url]
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AGENT, json.dumps(HEAVY), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    outcome = json.loads(done.stderr.strip().splitlines()[-1])
    assert outcome["status"] == 0, done.stderr
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


def test_each_library_loads_with_its_probe_kind_only(tmp_path: Path, tcp_port: int) -> None:
    dns_probe = f"dns://127.0.0.1:{tcp_port}/node.test?timeout=0.5"
    http_probe = f"http://127.0.0.1:{tcp_port}/?timeout=0.5"
    assert loaded_by_agent(tmp_path, [dns_probe]) == {"dns"}
    assert "dns" not in loaded_by_agent(tmp_path, [http_probe])
    assert "httpx" in loaded_by_agent(tmp_path, [http_probe])
