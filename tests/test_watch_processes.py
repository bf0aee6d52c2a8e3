"""Watched processes end to end: a real agentd watching real processes the test starts, real
UDP to a real engine, and the process_missing / process_count / process_restarted alerts.

The watched processes are copies of /bin/sleep under a name of their own, so their comm is
unique on this shared machine (no other process can be counted with them).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
import pytest_asyncio

from agentd.config import ConfigError, load
from agentd.watch import WatchSpecError, parse_watch
from tests.helpers.engine_helpers import make_engine, processes, start_agent, until


def _binary(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    shutil.copy("/bin/sleep", path)
    return path


@pytest.fixture
def procs():
    with processes() as procs:
        yield procs


@pytest_asyncio.fixture(loop_scope="function")
async def engine(tmp_path):
    eng = make_engine(tmp_path, alerts=[
        {"name": "gone", "process_missing": "*", "severity": "crit"},
        {"name": "count", "process_count": "*"},
        {"name": "restarted", "process_restarted": "*", "hold": "1h"},
    ])
    await eng.start()
    yield eng
    await eng.stop()


def _alerts(engine, rule: str) -> list[str]:
    return [a.message for a in engine.snapshot().alerts if a.rule == rule]


def _watched(engine, node: str, label: str):
    n = engine.snapshot().node(node)
    if n is None:
        return None
    return next((w for w in n.metrics.get("watched", ()) if w[0] == label), None)


async def test_kill_restart_and_count_of_watched_processes_raise_alerts(
        engine, procs, tmp_path):
    tag = uuid.uuid4().hex[:6]
    pool, daemon = f"wpool{tag}", f"wdmn{tag}"
    pool_bin, daemon_bin = _binary(tmp_path, pool), _binary(tmp_path, daemon)
    (tmp_path / "none.toml").write_text(f'watch = ["{pool}:2", "{daemon}"]\n')
    for _ in range(2):
        procs.append(subprocess.Popen([str(pool_bin), "600"]))
    agent = start_agent(tmp_path, engine.port, "w1")
    procs.append(agent)

    # Two of the pool as expected; the daemon not running yet: missing, by name.
    await until(lambda: _alerts(engine, "gone"), timeout=20)
    assert _alerts(engine, "gone") == [f"{daemon} on w1: no process (expected at least 1)"]
    pool_row = _watched(engine, "w1", pool)
    _label, count, low, high, restarts, _cpu, rss, threads, fds = pool_row
    assert (count, low, high, restarts) == (2, 2, 2, 0)
    assert rss > 0 and threads == 2 and fds is not None and fds >= 2
    assert not _alerts(engine, "count")

    # The daemon starts: missing resolves (a first start is no restart).
    first = subprocess.Popen([str(daemon_bin), "600"])
    procs.append(first)
    await until(lambda: not _alerts(engine, "gone"), timeout=20)
    assert not _alerts(engine, "restarted")

    # One of the pool dies: the count is out of its range.
    procs[0].kill()
    procs[0].wait()
    await until(lambda: _alerts(engine, "count"), timeout=20)
    assert _alerts(engine, "count") == [f"{pool} on w1: 1 processes (expected 2)"]

    # The daemon is killed: missing; started again: resolved, and a restart.
    first.kill()
    first.wait()
    await until(lambda: _alerts(engine, "gone"), timeout=20)
    procs.append(subprocess.Popen([str(daemon_bin), "600"]))
    await until(lambda: _alerts(engine, "restarted"), timeout=20)
    assert _alerts(engine, "restarted") == [
        f"{daemon} on w1 restarted (1 since the agent started)"]
    assert not _alerts(engine, "gone")

    # The history keeps each change: the daemon's count went 0, 1, 0, 1 with one restart.
    engine.store.flush()
    db = sqlite3.connect(tmp_path / "ctop.db")
    rows = db.execute("SELECT count, restarts FROM watched WHERE node = 'w1' AND label = ? "
                      "ORDER BY ts", (daemon,)).fetchall()
    counts = [c for c, _ in rows]
    assert [c for k, c in enumerate(counts) if k == 0 or counts[k - 1] != c] == [0, 1, 0, 1]
    assert rows[-1] == (1, 1)


async def test_a_glob_on_the_command_line_picks_the_processes(engine, procs, tmp_path):
    tag = uuid.uuid4().hex[:6]
    name = f"wglob{tag}"
    binary = _binary(tmp_path, name)
    (tmp_path / "none.toml").write_text(f'watch = ["{name}:*777*", "{name}:1:*600*"]\n')
    procs.append(subprocess.Popen([str(binary), "600"]))
    procs.append(subprocess.Popen([str(binary), "601"]))
    procs.append(start_agent(tmp_path, engine.port, "w2"))
    await until(lambda: _watched(engine, "w2", f"{name}:*600*"), timeout=20)
    assert _watched(engine, "w2", f"{name}:*600*")[1] == 1
    assert _watched(engine, "w2", f"{name}:*777*")[1] == 0
    assert _alerts(engine, "gone") == [f"{name}:*777* on w2: no process (expected at least 1)"]


@pytest.mark.parametrize(("entry", "why"), [
    ("", "empty process name"),
    (":2", "empty process name"),
    ("worker:8-2", "bad count range"),
    ("worker:2x", "bad count"),
    ("worker:0", "a count of 0"),
    ("worker:2:", "empty command-line glob"),
    ("my worker", "no spaces"),
])
def test_bad_watch_entries_are_refused_with_the_reason(entry, why):
    with pytest.raises(WatchSpecError, match=why):
        parse_watch(entry)


def _fields(text: str) -> tuple[object, ...]:
    s = parse_watch(text)
    return s.name, s.low, s.high, s.glob


def test_watch_forms():
    assert _fields("nginx") == ("nginx", 1, None, "")
    assert _fields("haproxy:2") == ("haproxy", 2, 2, "")
    assert _fields("worker:2-8") == ("worker", 2, 8, "")
    assert _fields("java:*tomcat*") == ("java", 1, None, "*tomcat*")
    assert parse_watch("java:2:*tomcat*").label == "java:*tomcat*"


def test_a_bad_watch_entry_in_agentd_toml_names_its_line(tmp_path):
    path = tmp_path / "agentd.toml"
    path.write_text('node_id = "n1"\nwatch = [\n  "nginx",\n  "worker:8-2",\n]\n')
    with pytest.raises(ConfigError, match=rf"^{path}:4: key 'watch': entry 2: .*bad count range"):
        load(str(path))
    path.write_text('watch = ["nginx", "nginx"]\n')
    with pytest.raises(ConfigError, match=r":1: key 'watch': entry 2: 'nginx' is watched twice"):
        load(str(path))
    path.write_text('watch = "nginx"\n')
    with pytest.raises(ConfigError, match=r":1: key 'watch': expected a list"):
        load(str(path))


def test_agentd_once_reports_the_watched_processes(tmp_path):
    """`agentd --once --json` shows what a watch finds (the operator's check of a config)."""
    import json

    from tests.helpers.agent_helpers import AGENTD

    name = f"wonce{uuid.uuid4().hex[:6]}"
    p = subprocess.Popen([str(_binary(tmp_path, name)), "600"])
    try:
        (tmp_path / "agentd.toml").write_text(f'watch = ["{name}", "nothere{os.getpid()}"]\n')
        out = subprocess.run([str(AGENTD), "--config", str(tmp_path / "agentd.toml"), "--once",
                              "--json", "--interval", "0.5"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    finally:
        p.kill()
        p.wait()
    watched = {w[0]: w for w in json.loads(out)["metrics"]["watched"]}
    assert watched[name][1] == 1 and watched[f"nothere{os.getpid()}"][1] == 0


@pytest.mark.parametrize(("text", "line", "says"), [
    ('[[alert]]\nname = "a"\nprocess_missing = "*"\n\n[[alert]]\nname = "b"\n'
     'process_count = 3\n', 7, "[[alert]] #2: key 'process_count': expected a watched"),
    ('[[alert]]\nname = "a"\nprocess_missing = "nginx"\nhold = "5m"\n', 4,
     "[[alert]] #1: key 'hold': only a process_restarted rule"),
    ('[[alert]]\nname = "a"\nprocess_restarted = "*"\nhold = "soon"\n', 4, "key 'hold'"),
    ('[[alert]]\nname = "a"\nprocess_missing = "*"\nprocess_count = "*"\n', 4,
     "key 'process_count': one rule, one kind"),
])
def test_a_bad_process_rule_in_ctop_toml_names_its_line(tmp_path, text, line, says):
    from ctop.config import ConfigError as DirectorConfigError
    from ctop.config import TomlSource, from_source

    path = tmp_path / "ctop.toml"
    path.write_text(text)
    with pytest.raises(DirectorConfigError) as e:
        from_source(TomlSource.load(path))
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert says in str(e.value)


GOOD_ROW = ["nginx", 2, 1, None, 0, 125, 1024, 4, 30]


@pytest.mark.parametrize("rows", [
    [["nginx", -1, 1, None, 0, 0, 0, 0, 0]],  # negative count
    [["nginx", 2, 3, 2, 0, 0, 0, 0, 0]],  # high below low
    [["", 2, 1, None, 0, 0, 0, 0, 0]],  # empty label
    [["x" * 65, 2, 1, None, 0, 0, 0, 0, 0]],  # label too long
    [["nginx", 2, 1, None, 0, 0, 2**60, 0, 0]],  # rss beyond 2^53
    [["nginx", 2.5, 1, None, 0, 0, 0, 0, 0]],  # a float count
    [GOOD_ROW[:8]],  # short
    [GOOD_ROW] * 17,  # more than 16 watches
    "nginx",
])
def test_a_bad_watched_value_is_refused_by_name_and_the_node_keeps_reporting(rows):
    """Hostile or broken `wp` values are `bad_field` naming the metric; the same report with
    good values is accepted (what the agent's encoder sends always is)."""
    import time

    from agentd.protocol import Reason, Rejected, seal
    from ctop.ingest import Verifier
    from tests.helpers.agent_helpers import KEY

    def body(seq: int, wp: object) -> dict:
        return {"k": "r", "n": "n1", "b": 1, "q": seq, "t": time.time(), "i": 1,
                "m": {"v": [0] * 21, "wp": wp}}

    verifier = Verifier(KEY)
    bad = verifier.verify(seal(KEY, body(1, rows)))
    assert isinstance(bad, Rejected) and bad.reason is Reason.BAD_FIELD
    assert "watched" in bad.detail
    good = verifier.verify(seal(KEY, body(2, [GOOD_ROW])))
    assert good.metrics["watched"] == [("nginx", 2, 1, None, 0, 12.5, 1 << 20, 4, 30)]
