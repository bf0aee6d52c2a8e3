"""ui wire 2 (ctop.control.delta) against the code before it, both ways, as real processes:
a new UI on an older `ctop serve` falls back to whole compact snapshots; an older UI on a new
daemon is served as before (`ui`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ctop.control.client import ControlError, hello
from ctop.tui.remote import RemoteSource
from tests.helpers.serve_helpers import Daemon, Sender, wait_for_node

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "48f6e80"  # main before ui wire 2


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("before-wire2")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE], capture_output=True)
    if archive.returncode:
        pytest.skip(f"no git history with {BEFORE}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def _in_tree(tree: Path, code: str) -> list[str]:
    """python running `code` on the `ctop` package of `tree` (not this checkout's)."""
    boot = textwrap.dedent(f"""\
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path
                            if not getattr(f, "__module__", "").startswith("__editable__")]
        sys.path.insert(0, {str(tree)!r})
        """)
    return [sys.executable, "-c", boot + textwrap.dedent(code)]


def test_a_new_ui_on_an_older_daemon_falls_back_to_whole_snapshots(tmp_path, old_tree):
    daemon = Daemon(tmp_path)  # its config, key and database; the older tree's `ctop serve`
    proc = subprocess.Popen(_in_tree(old_tree, f"""
        from ctop.cli import main
        sys.exit(main(["serve", "--config", {str(daemon.config)!r}]))
        """), cwd=old_tree, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                hello(str(daemon.sock))
                break
            except ControlError:
                time.sleep(0.1)
        sender = Sender("n1")
        daemon.send(sender.join())
        daemon.send(sender.report())
        remote = RemoteSource(str(daemon.sock), str(daemon.db), poll=0.05)
        try:
            wait_for_node(remote, "n1")
            assert remote._delta is None  # it asked `ui2`, heard "unknown request", uses `ui`
            remote.watch("n1")  # the node detail's metrics the old way too
            wait_for_node(remote, "n1", metrics=True, timeout=10)
        finally:
            remote.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
        daemon.udp.close()


def test_an_older_ui_on_a_new_daemon_is_served_as_before(tmp_path, old_tree):
    daemon = Daemon(tmp_path).start()
    try:
        sender = Sender("n1")
        daemon.send(sender.join())
        daemon.send(sender.report())
        out = subprocess.run(_in_tree(old_tree, f"""
            import time
            from ctop.tui.remote import RemoteSource
            remote = RemoteSource({str(daemon.sock)!r}, {str(daemon.db)!r}, poll=0.05)
            deadline = time.monotonic() + 15
            while remote.snapshot().node("n1") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            node = remote.snapshot().node("n1")
            print(node.node_id if node else "none", node.cpu if node else "")
            remote.close()
            """), cwd=old_tree, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["n1", "10.0"]
    finally:
        daemon.stop()
