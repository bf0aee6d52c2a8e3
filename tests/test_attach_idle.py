"""An attached UI polls the daemon twice a tick; the same snapshot is not decoded again (at
2,000 nodes a decode is tens of ms: most of an idle attached UI's CPU)."""

from __future__ import annotations

import time

import pytest

import ctop.codec
import ctop.tui.remote
from ctop.codec import unpack_compact
from ctop.control.client import exchange
from ctop.snapshot import NodeView
from ctop.tui.remote import RemoteSource
from tests.helpers.serve_helpers import Daemon, Sender, wait_for_node


def test_each_snapshot_is_decoded_once_however_often_it_is_polled(tmp_path, monkeypatch):
    decoded: list[tuple[float, int]] = []
    unpack = ctop.tui.remote.unpack_compact

    def counting(data: bytes):
        snap = unpack(data)
        decoded.append((snap.ts, snap.tick))
        return snap

    monkeypatch.setattr(ctop.tui.remote, "unpack_compact", counting)
    daemon = Daemon(tmp_path, "tick = 2").start()
    try:
        sender = Sender("n1")
        daemon.send(sender.join())
        daemon.send(sender.report())
        remote = RemoteSource(str(daemon.sock), str(daemon.db), poll=0.05)
        try:
            wait_for_node(remote, "n1")
            time.sleep(1.0)  # ~20 polls, at most one new tick (every 2 s)
            # each snapshot (a tick, or a liveness change patched in between: a new ts) is
            # decoded once, however often it is polled
            assert len(decoded) == len(set(decoded)) and len(decoded) < 10
            # watching a node asks for its raw metrics: that answer is decoded
            remote.watch("n1")
            wait_for_node(remote, "n1", metrics=True, timeout=10)
        finally:
            remote.close()
    finally:
        daemon.stop()


def test_an_idle_cluster_decodes_no_rows_through_a_real_daemon(tmp_path, monkeypatch):
    """Nodes that do not change are not decoded again, tick after tick (the old UI decoded
    every row of every new tick), and the UI's snapshot equals the daemon's full one."""
    built: list[str] = []
    real_new = ctop.codec._tuple_new

    def counting(cls, fields):
        if cls is NodeView:
            built.append(fields[0])
        return real_new(cls, fields)

    daemon = Daemon(tmp_path, "tick = 0.2").start()
    try:
        senders = [Sender(f"n{i:02d}") for i in range(30)]
        for s in senders:
            daemon.send(s.join())
            daemon.send(s.report(interval=120.0))  # alive for two minutes without a report
        remote = RemoteSource(str(daemon.sock), str(daemon.db), poll=0.05)
        try:
            deadline = time.monotonic() + 15
            while len(remote.snapshot().nodes) < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(remote.snapshot().nodes) == 30
            time.sleep(0.5)  # the last report's effects (rates, history) settle
            monkeypatch.setattr(ctop.codec, "_tuple_new", counting)
            first = remote.snapshot().tick
            deadline = time.monotonic() + 10
            while remote.snapshot().tick < first + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert remote.snapshot().tick >= first + 5  # five new snapshots taken
            assert built == []
            monkeypatch.undo()
            for _ in range(20):  # the same tick read both ways
                held = remote.snapshot()
                full = unpack_compact(exchange(str(daemon.sock), "ui"))
                if full.tick == held.tick:
                    assert held.nodes == full.nodes
                    break
                time.sleep(0.02)
            else:
                pytest.fail("never read the same tick twice")
        finally:
            remote.close()
    finally:
        daemon.stop()
