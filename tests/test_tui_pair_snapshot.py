"""The header with a director pair ([pair]): this director BACKUP, the peer MASTER, and a
split brain (both MASTER, its alert), as pictures (pytest-textual-snapshot; regenerate with
--snapshot-update and look at the SVGs)."""

from __future__ import annotations

from dataclasses import replace

from ctop.pair.view import InstanceView, PairView, SyncDaemonView
from ctop.snapshot import AlertView, Severity
from ctop.tui.app import CtopApp
from ctop.tui.source import StaticSource
from tests.helpers.sample import sample_history, sample_snapshot
from tests.test_tui_snapshots import SIZE, settle


def _app(here: str, peer: str, alert: str = "") -> CtopApp:
    snap = sample_snapshot(16)
    pair = PairView(role=here, peer_role=peer, peer_source="peer ctop 10.0.0.12:9717",
                    instances=(InstanceView("VI_1", here, priority=100),),
                    peer_instances=(("VI_1", peer),),
                    sync_daemons=(SyncDaemonView("backup", "eth1", 7),) if not alert else ())
    alerts = (AlertView("vrrp_pair:VI_1:both", "vrrp_pair", "", Severity.CRIT, alert,
                        snap.ts - 5),) if alert else ()
    snap = replace(snap, pair=pair, alerts=alerts + snap.alerts)
    return CtopApp(StaticSource(snap, history=sample_history), view="grid", poll=3600)


def test_header_with_pair(snap_compare):
    assert snap_compare(_app("BACKUP", "MASTER"), terminal_size=SIZE, run_before=settle)


def test_header_with_split_brain(snap_compare):
    text = "VRRP VI_1: both directors are MASTER (split brain; peer from peer ctop 10.0.0.12:9717)"
    assert snap_compare(_app("MASTER", "MASTER", text), terminal_size=SIZE, run_before=settle)
