"""An attached UI polls the daemon twice a tick; the same snapshot is not decoded again (at
2,000 nodes a decode is tens of ms: most of an idle attached UI's CPU)."""

from __future__ import annotations

import time

import ctop.tui.remote
from ctop.tui.remote import RemoteSource
from tests.helpers.serve_helpers import Daemon, Sender


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
            deadline = time.monotonic() + 15
            while remote.snapshot().node("n1") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert remote.snapshot().node("n1") is not None
            time.sleep(1.0)  # ~20 polls, at most one new tick (every 2 s)
            # each snapshot (a tick, or a liveness change patched in between: a new ts) is
            # decoded once, however often it is polled
            assert len(decoded) == len(set(decoded)) and len(decoded) < 10
            # watching a node asks for its raw metrics: that answer is decoded
            remote.watch("n1")
            deadline = time.monotonic() + 10
            while not remote.snapshot().node("n1").metrics and time.monotonic() < deadline:
                time.sleep(0.05)
            assert remote.snapshot().node("n1").metrics
        finally:
            remote.close()
    finally:
        daemon.stop()
