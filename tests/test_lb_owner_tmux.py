"""The attached UI in a real terminal (tmux) on a real `ctop serve` and a real HAProxy: a drain
from the keyboard is the daemon's (its event on screen names the user), and `ctop --readonly`
attached to a writable daemon hides and refuses the action keys."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from tests.helpers.haproxy_peer import HAProxyLab
from tests.helpers.lb_owner_helpers import CTOP, director, server_stat, serving
from tests.helpers.tmux_helpers import TmuxTerminal

pytestmark = pytest.mark.e2e  # the whole system: demo cluster, processes, terminal

SESSION = f"ctop-owner-{os.getpid()}"  # other suites may use the shared tmux server


_terminal = TmuxTerminal(SESSION)
tmux, screen, wait_for = _terminal.tmux, _terminal.screen, _terminal.wait_for


@pytest.fixture
def terminal():
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    tmux("kill-session", "-t", SESSION)
    tmux("new-session", "-d", "-s", SESSION, "-x", "160", "-y", "48")
    time.sleep(0.5)
    yield
    tmux("kill-session", "-t", SESSION)


def _start_ui(config, *flags: str) -> None:
    command = f"env -u SUDO_USER {CTOP} {' '.join(flags)} --config {config}"
    tmux("send-keys", "-t", SESSION, f"{command}; echo CTOP-EXITED $?", "Enter")
    wait_for("ctop owner", timeout=30)
    wait_for("web1", timeout=30)  # the daemon's LB view has arrived


def _quit() -> None:
    tmux("send-keys", "-t", SESSION, "q")
    wait_for("CTOP-EXITED 0", timeout=20)


def test_attached_terminal_drain_is_the_daemons_and_readonly_hides_the_keys(
        haproxy: HAProxyLab, terminal) -> None:
    with director(haproxy) as d, serving(d):
        _start_ui(d.config)
        tmux("send-keys", "-t", SESSION, "Tab")  # the load-balancer pane, first real server
        time.sleep(0.5)
        assert "Drain" in screen()  # the footer offers the key
        tmux("send-keys", "-t", SESSION, "d")
        dialog = wait_for("Drain?", timeout=15)
        service = re.search(r"service\s+(\S+)", dialog).group(1)
        server = re.search(r"server\s+(\S+)", dialog).group(1)
        tmux("send-keys", "-t", SESSION, "y")
        wait_for(f"root operator drain haproxy {service}", timeout=15)  # the events pane
        assert server_stat(haproxy, service, server)[1] == "DRAIN"
        assert d.journal()[-1][:4] == ("root", None, "operator", "drain")
        _quit()

        _start_ui(d.config, "--readonly")
        wait_for("READ-ONLY", timeout=10)
        tmux("send-keys", "-t", SESSION, "Tab")
        time.sleep(0.5)
        tmux("send-keys", "-t", SESSION, "w")
        time.sleep(1.0)
        shown = screen()
        assert "Drain" not in shown and "New weight" not in shown, shown
        _quit()
        assert len(d.journal()) == 1  # nothing more reached the daemon
