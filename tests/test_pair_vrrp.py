"""Pair awareness without the lab: keepalived's real JSON dumps and FIFO lines, the IPVS
sync daemon's real output, [pair] config errors by line, the pair alerts, what `ctop status`
and the header say. The two-director lab with real keepalived: tests/test_pair_lab.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ctop.cli import status_text
from ctop.codec import from_plain, to_plain, unpack_compact
from ctop.codec import pack_compact as pack
from ctop.config import ConfigError, TomlSource, from_source
from ctop.pair.alerts import HOLD, PairAlerts
from ctop.pair.config import PairConfig
from ctop.pair.keepalived import NotifyFifo
from ctop.pair.monitor import PairMonitor
from ctop.pair.peer import PeerError, fetch_peer, instance_roles
from ctop.pair.syncd import SyncDaemonError, parse_sync_daemons
from ctop.pair.view import InstanceView, PairView
from ctop.pair.vrrp import KeepalivedError, parse_fifo_line, parse_json_dump
from ctop.prometheus import exposition, start_metrics
from ctop.snapshot import Aggregate, EventView, Snapshot
from ctop.tomlsource import key_lines
from ctop.tui.colors import RICH
from ctop.tui.widgets.header import render_header

FIXTURES = Path(__file__).parent / "fixtures" / "pair"


# -- keepalived's formats ------------------------------------------------------------------------

def test_real_json_dumps_give_role_priority_vips_and_transition() -> None:
    # captured from keepalived 2.2.7 in tests/helpers/vrrp_lab.py (one MASTER, one BACKUP)
    (master,) = parse_json_dump((FIXTURES / "keepalived-master.json").read_text())
    (backup,) = parse_json_dump((FIXTURES / "keepalived-backup.json").read_text())
    assert (master.name, master.state, master.priority) == ("VI_1", "MASTER", 150)
    assert master.vips == master.vips_held == ("10.99.17.100/24",)  # on its interface
    assert (backup.state, backup.priority, backup.master_priority) == ("BACKUP", 100, 150)
    assert backup.vips == ("10.99.17.100/24",) and backup.vips_held == ()
    assert backup.adverts_received > 0 and master.last_transition > 1.7e9


@pytest.mark.parametrize("text, words", [
    ("{not json", "is not JSON"),
    ('{"data": {}}', "not a list"),
    ('[{"data": {"state": 2}}]', "no data.iname"),
    ('[{"data": {"iname": "VI_1", "state": "x"}}]', "VI_1"),
    ('[{"data": {"iname": "VI_1", "vips": "10.0.0.1"}}]', "vips"),
])
def test_a_bad_dump_is_a_clear_error(text: str, words: str) -> None:
    with pytest.raises(KeepalivedError, match=words):
        parse_json_dump(text)


def test_fifo_lines_in_keepalived_format_and_others_skipped() -> None:
    line = parse_fifo_line('INSTANCE "VI_1" MASTER 150\n')
    assert line is not None and (line.kind, line.name, line.state, line.priority) == (
        "INSTANCE", "VI_1", "MASTER", 150)
    spaced = parse_fifo_line('INSTANCE "web vips" BACKUP 100')
    assert spaced is not None and spaced.name == "web vips"
    rx = parse_fifo_line('INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150')
    assert rx is not None and rx.state == "MASTER_RX_LOWER_PRI"
    # the checker's lines share the FIFO; a line cut short or garbage is skipped
    for other in ('VS [10.0.0.1]:tcp:80 UP', 'RS [10.0.0.2]:tcp:80 [10.0.0.1]:tcp:80 DOWN',
                  'INSTANCE "VI_1" MAS', "\x00\xff", ""):
        assert parse_fifo_line(other) is None


def test_fifo_reader_keeps_a_line_cut_between_reads(tmp_path: Path) -> None:
    fifo = NotifyFifo(str(tmp_path / "ka.fifo"))  # created: keepalived then opens ours
    writer = os.open(tmp_path / "ka.fifo", os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(writer, b'INSTANCE "VI_1" BACKUP 100\nINSTANCE "VI_1" MAS')
        assert [(x.state, x.priority) for x in fifo.lines()] == [("BACKUP", 100)]
        os.write(writer, b'TER 100\nVS [10.0.0.1]:tcp:80 UP\n')
        assert [x.state for x in fifo.lines()] == ["MASTER"]
        os.close(writer)  # keepalived stops: no end of file for us, it may come back
        assert fifo.lines() == []
    finally:
        fifo.close()


def test_notify_fifo_path_that_is_a_file_is_refused_and_said(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep me")
    with pytest.raises(KeepalivedError, match="not a FIFO"):
        NotifyFifo(str(tmp_path / "f"))
    # ctop serve goes on without it, and says why in the pair view (status, --json)
    mon = PairMonitor(PairConfig(enabled=True, notify_fifo=str(tmp_path / "f"),
                                 keepalived_pid_file=str(tmp_path / "none.pid"),
                                 sync_daemon=False), lambda events: None)
    mon.start()
    try:
        deadline = time.monotonic() + 5
        while "no pid file" not in mon.view().error and time.monotonic() < deadline:
            time.sleep(0.02)
        assert f"notify_fifo {tmp_path / 'f'}: notify_fifo" in mon.view().error
        assert "no pid file" in mon.view().error
    finally:
        mon.stop()
    assert (tmp_path / "f").read_text() == "keep me"


# -- ipvsadm --list --daemon ---------------------------------------------------------------------

def test_sync_daemons_from_real_ipvsadm_output() -> None:
    capture = (FIXTURES / "ipvsadm-daemon-capture.txt").read_text()
    both = capture.split("== both\n")[1].split("==")[0]
    master, backup = parse_sync_daemons(both)
    assert (master.role, master.mcast_interface, master.syncid) == ("master", "sbr0", 7)
    assert (backup.role, backup.maxlen, backup.group, backup.port, backup.ttl) == (
        "backup", 1472, "224.0.0.81", 8848, 1)
    assert parse_sync_daemons(capture.split("== none\n")[1].split("rc=")[0]) == ()
    old_kernel = parse_sync_daemons("master sync daemon (mcast=eth1, syncid=3)\n")
    assert old_kernel[0].syncid == 3 and old_kernel[0].group == ""
    with pytest.raises(SyncDaemonError, match="unexpected line"):
        parse_sync_daemons("illegal syncid specified\n")


# -- [pair] ---------------------------------------------------------------------------------------

def _config(text: str) -> PairConfig:
    return from_source(TomlSource("/etc/ctop/ctop.toml", tomllib.loads(text), text,
                                  key_lines(text))).pair


def test_pair_section_turns_pair_awareness_on() -> None:
    assert _config('cluster = "c"\n').enabled is False
    cfg = _config('[pair]\nnotify_fifo = "/run/ctop/keepalived.fifo"\npeer = "10.0.0.2:9100"\n'
                  'json_every = "10s"\n')
    assert cfg.enabled and cfg.notify_fifo == "/run/ctop/keepalived.fifo"
    assert (cfg.peer, cfg.json_every, cfg.keepalived_pid_file) == (
        "10.0.0.2:9100", 10.0, "/run/keepalived.pid")


@pytest.mark.parametrize("text, line, words", [
    ('[store]\npath = "/x"\n\n[pair]\njson_every = "soon"\n', 5, "key 'pair.json_every'"),
    ('[pair]\npeer_every = 0\n', 2, "key 'pair.peer_every': expected a duration in"),
    ('[pair]\nnotify_fifo = "/f"\npeer = "nowhere"\n', 3, "key 'pair.peer': expected host:port"),
    ('[pair]\njson_file = ""\n', 2, "key 'pair.json_file': is empty"),
    ('[pair]\nsync_daemon = "yes"\n', 2, "key 'pair.sync_daemon': expected true or false"),
    ('[pair]\nnotify_fifo = "/f"\npid_file = "/run/k.pid"\n', 3, "key 'pair.pid_file': unknown"),
])
def test_pair_config_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        _config(text)
    assert str(e.value).startswith(f"/etc/ctop/ctop.toml:{line}: ") and words in str(e.value)


# -- alerts ---------------------------------------------------------------------------------------

def _view(here: str, peer: str, source: str = "peer ctop 10.0.0.2:9100") -> PairView:
    inst = InstanceView("VI_1", here, priority=150)
    return PairView(role=here, peer_role=peer, peer_source=source, instances=(inst,),
                    peer_instances=(("VI_1", peer),) if peer != "unknown" else ())


def test_both_master_and_no_master_alert_after_hold_and_resolve() -> None:
    alerts = PairAlerts("lab")
    t = 1000.0
    assert alerts.evaluate(_view("MASTER", "BACKUP"), t) == ([], [])
    # a split brain: both MASTER; shorter than HOLD is a failover passing by
    assert alerts.evaluate(_view("MASTER", "MASTER"), t + 1) == ([], [])
    events, notes = alerts.evaluate(_view("MASTER", "MASTER"), t + 1 + HOLD)
    assert [n.state for n in notes] == ["firing"]
    assert "both directors are MASTER" in events[0].message and events[0].kind == "alert"
    assert alerts.firing()[0].severity == "crit"
    events, notes = alerts.evaluate(_view("MASTER", "BACKUP"), t + 10)
    assert [n.state for n in notes] == ["resolved"] and alerts.firing() == ()
    # neither MASTER: FAULT here, the peer unknown (FAULT counts as not master)
    alerts.evaluate(_view("FAULT", "unknown"), t + 20)
    events, _ = alerts.evaluate(_view("FAULT", "unknown"), t + 20 + HOLD)
    assert "no director is MASTER (this director FAULT, peer unknown)" in events[0].message
    # the peer takes over: resolved
    events, _ = alerts.evaluate(_view("FAULT", "MASTER"), t + 30)
    assert events[0].kind == "resolved"


def test_keepalived_not_running_and_no_peer_alerts() -> None:
    alerts = PairAlerts()
    view = PairView(role="STOP", error="keepalived is not running (no pid file /run/k.pid)")
    alerts.evaluate(view, 0)
    events, _ = alerts.evaluate(view, HOLD)
    assert "no director known to be MASTER (keepalived is not running" in events[0].message


# -- the monitor's FIFO and the peer feed ---------------------------------------------------------

def test_monitor_sees_fifo_transition_at_once_and_takes_fed_peer(tmp_path: Path) -> None:
    """keepalived is not running here: the dump fails (said in the view), yet a transition on
    the FIFO is an event at once, and a peer role fed from another link (NATS, later) is
    believed for its ttl."""
    events: list[EventView] = []
    fifo = tmp_path / "ka.fifo"
    cfg = PairConfig(enabled=True, keepalived_pid_file=str(tmp_path / "none.pid"),
                     notify_fifo=str(fifo), json_every=60, sync_daemon=False)
    mon = PairMonitor(cfg, events.extend)
    os.mkfifo(fifo)
    stale = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(stale, b'INSTANCE "VI_1" FAULT 0\n')  # before ctop started: old news
    mon.start()
    try:
        deadline = time.monotonic() + 5
        while "not running" not in mon.view().error and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mon.view().role == "STOP" and "no pid file" in mon.view().error
        os.write(stale, b'INSTANCE "VI_1" MASTER 150\n')
        t0 = time.monotonic()
        while not mon.view().instances and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert time.monotonic() - t0 < 1.0
        assert mon.view().role == "MASTER"
        assert any(e.message == "VRRP VI_1: this director MASTER (prio 150)" for e in events)
        assert not any("FAULT" in e.message for e in events)  # the stale line was dropped
        mon.feed_peer({"VI_1": "BACKUP"}, "nats pair.lab", ttl=0.5)
        time.sleep(0.4)
        assert (mon.view().peer_role, mon.view().peer_source) == ("BACKUP", "nats pair.lab")
        time.sleep(0.5)
        assert mon.view().peer_role == "unknown"  # the feed went quiet: not believed
    finally:
        mon.stop()
        os.close(stale)


# -- where the user sees it -----------------------------------------------------------------------

def _snapshot(pair: PairView | None) -> Snapshot:
    return Snapshot(ts=1.0, tick=1, cluster="lab", nodes=(), groups=(), totals=Aggregate(),
                    pair=pair)


def test_status_json_and_text_carry_the_pair() -> None:
    (inst,) = parse_json_dump((FIXTURES / "keepalived-master.json").read_text())
    (sync,) = parse_sync_daemons(
        "master sync daemon (mcast=eth1, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, "
        "ttl=1)\n")
    pair = PairView(role="MASTER", peer_role="BACKUP", peer_source="peer ctop 10.0.0.2:9100",
                    instances=(inst,), peer_instances=(("VI_1", "BACKUP"),),
                    sync_daemons=(sync,))
    plain = to_plain(_snapshot(pair))
    assert plain["pair"]["role"] == "MASTER" and plain["pair"]["instances"][0]["vips"] == [
        "10.99.17.100/24"]
    assert from_plain(plain).pair == pair
    assert unpack_compact(pack(_snapshot(pair))).pair == pair  # an attached UI's header
    assert to_plain(_snapshot(None))["pair"] is None
    text = status_text(json.loads(json.dumps(plain)))  # as `ctop status` gets it
    assert "pair: this director MASTER (VI_1 MASTER prio 150), peer BACKUP (peer ctop " \
           "10.0.0.2:9100)" in text
    assert "VIPs 10.99.17.100/24 (held: 10.99.17.100/24)" in text
    assert "IPVS sync daemon: master, mcast interface eth1, syncid 7" in text
    plain["pair"] = replace(pair, sync_daemons=(), sync_error="ipvsadm: not installed"
                            ).to_plain()
    assert "IPVS sync daemon: ipvsadm: not installed" in status_text(plain)


def test_header_shows_this_director_and_the_peer() -> None:
    head = render_header(_snapshot(_view("BACKUP", "MASTER")), RICH).plain
    assert "VRRP BACKUP · peer MASTER" in head and "sync" not in head
    (sync,) = parse_sync_daemons("backup sync daemon (mcast=eth1, syncid=7)\n")
    pair = replace(_view("BACKUP", "MASTER"), sync_daemons=(sync,))
    first, second = render_header(_snapshot(pair), RICH).plain.split("\n")
    assert "VRRP BACKUP · peer MASTER" in first and second.endswith("sync backup eth1/7")
    assert "VRRP" not in render_header(_snapshot(None), RICH).plain


async def test_peer_ctop_link_answers_pair_view_over_http() -> None:
    """GET /pair on [prometheus] listen is what the peer director's ctop reads."""
    current = [_snapshot(_view("MASTER", "BACKUP"))]
    server = await start_metrics(lambda: current[0], "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    task = asyncio.create_task(server.serve_forever())
    try:
        with httpx.Client(timeout=2) as client:
            data = await asyncio.to_thread(fetch_peer, client, f"127.0.0.1:{port}")
            assert data["role"] == "MASTER" and instance_roles(data) == {"VI_1": "MASTER"}
            current[0] = _snapshot(None)  # a ctop without [pair]: a clear error, not a role
            with pytest.raises(PeerError, match="404"):
                await asyncio.to_thread(fetch_peer, client, f"127.0.0.1:{port}")
    finally:
        task.cancel()
        server.close()


def test_prometheus_exposes_both_roles_as_typed_families() -> None:
    (inst,) = parse_json_dump((FIXTURES / "keepalived-backup.json").read_text())
    pair = PairView(role="BACKUP", peer_role="MASTER", instances=(inst,),
                    peer_instances=(("VI_1", "MASTER"),))
    fams = {f.name: f for f in text_string_to_metric_families(
        exposition(_snapshot(pair)))}
    (here,) = fams["ctop_vrrp_master"].samples
    assert here.labels == {"cluster": "lab", "instance": "VI_1", "state": "BACKUP"}
    assert here.value == 0 and fams["ctop_vrrp_priority"].samples[0].value == 100
    assert fams["ctop_vrrp_peer_master"].samples[0].value == 1
    assert "ctop_vrrp_master" not in exposition(_snapshot(None))  # no [pair]: no families
