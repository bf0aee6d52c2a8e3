"""End to end: the installed `ctop --demo` in a real terminal (tmux), driven by keys."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.agent_helpers import AGENTD, write_key
from tests.helpers.tmux_helpers import TmuxTerminal

pytestmark = pytest.mark.e2e  # the whole system: demo cluster, processes, terminal

CTOP = Path(sys.executable).with_name("ctop")
SESSION = "ctop-e2e"


_terminal = TmuxTerminal(SESSION)
tmux, screen, wait_for = _terminal.tmux, _terminal.screen, _terminal.wait_for


@pytest.fixture
def demo_terminal():
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (the demo's load balancer)")
    tmux("kill-session", "-t", SESSION)
    # Start a shell first, then type the command: an app started with the session itself
    # can read the terminal size before tmux applies -x/-y.
    tmux("new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48")
    time.sleep(0.5)
    tmux("send-keys", "-t", SESSION, f"{CTOP} --demo --demo-nodes 4; echo CTOP-EXITED $?",
         "Enter")
    yield
    tmux("kill-session", "-t", SESSION)


def agents_running() -> int:
    out = subprocess.run(["pgrep", "-f", "agentd --config /tmp/ctop-demo-"], capture_output=True,
                         text=True).stdout
    return len(out.split())


def test_demo_drains_a_real_server_from_the_keyboard_and_quits_cleanly(demo_terminal):
    wait_for("4 alive", timeout=40)
    shown = wait_for("serving")
    # HAProxy's four real servers, each mapped to its demo node and serving
    serving = {m.group(1) for m in re.finditer(r"(web-0[1-4])\b.*serving", shown)}
    assert serving == {"web-01", "web-02", "web-03", "web-04"}, shown
    assert agents_running() == 4

    tmux("send-keys", "-t", SESSION, "Tab")  # focus the load-balancer pane
    time.sleep(0.5)
    tmux("send-keys", "-t", SESSION, "d")
    dialog = wait_for("Drain?")
    # the plan: the first server, from the demo's weight 10 serving to weight 0 drained
    assert re.search(r"server\s+web-01\s", dialog), dialog
    assert re.search(r"before\s+weight 10\s+serving", dialog), dialog
    assert re.search(r"after\s+weight 0\s+drained", dialog), dialog
    tmux("send-keys", "-t", SESSION, "y")
    # The dialog itself says "drained" (its plan): wait for the events pane's record of the
    # action, which exists only once the dialog is gone and the balancer answered. A "q" typed
    # while the dialog is still closing is the dialog's, and ignored.
    shown = wait_for("operator drain haproxy web", timeout=15)
    assert "Drain?" not in shown and "drained" in shown

    tmux("send-keys", "-t", SESSION, "q")
    wait_for("CTOP-EXITED 0", timeout=20)
    deadline = time.monotonic() + 10
    while agents_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert agents_running() == 0  # the demo stopped everything it started


def test_ctop_attaches_to_a_running_daemon_and_shows_the_node_it_opens(tmp_path):
    """`ctop serve` + a real agent; `ctop` in a terminal attaches (compact snapshots), and the
    node detail brings that node's raw report along: its top processes. (An embedded engine
    could not even start here: the daemon holds the UDP port.)"""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    key = write_key(tmp_path / "cluster.key")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "ctop.toml"
    config.write_text(f'cluster = "attached"\nlisten = "127.0.0.1:{port}"\nkey_file = "{key}"\n'
                      f'control_socket = "{tmp_path / "ctop.sock"}"\n'
                      f'[store]\npath = "{tmp_path / "ctop.db"}"\n')
    (tmp_path / "agent.toml").write_text("")
    serve = subprocess.Popen([str(CTOP), "serve", "--config", str(config)],
                             stderr=subprocess.DEVNULL)
    agent = subprocess.Popen(
        [str(AGENTD), "--config", str(tmp_path / "agent.toml"), "--director",
         f"127.0.0.1:{port}", "--key-file", str(key), "--node-id", "solo", "--interval", "0.5"],
        stderr=subprocess.DEVNULL)
    tmux("kill-session", "-t", SESSION)
    tmux("new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48")
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "ctop.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        tmux("send-keys", "-t", SESSION, f"{CTOP} --config {config}; echo CTOP-EXITED $?",
             "Enter")
        wait_for("attached", timeout=30)
        wait_for("1 alive", timeout=30)
        tmux("send-keys", "-t", SESSION, "Enter")  # open the selected (only) node
        shown = wait_for("Top processes", timeout=15)
        assert "solo" in shown
        deadline = time.monotonic() + 10  # its raw report arrives with the next poll
        while "not reported" in shown and time.monotonic() < deadline:
            time.sleep(0.2)
            shown = screen()
        # a process row of the node's raw report: pid, name, CPU %, size
        assert "not reported" not in shown, shown
        assert re.search(r"\b\d+\s+\S+\s+\d+\.\d%\s+\d", shown), shown
        tmux("send-keys", "-t", SESSION, "Escape")
        time.sleep(0.5)
        tmux("send-keys", "-t", SESSION, "q")
        wait_for("CTOP-EXITED 0", timeout=20)
    finally:
        tmux("kill-session", "-t", SESSION)
        agent.terminate()
        serve.terminate()
        agent.wait(timeout=10)
        serve.wait(timeout=15)
