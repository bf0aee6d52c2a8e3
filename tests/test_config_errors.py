"""A bad ctop.toml names the file, the line and the key, in every section: the top level,
[liveness], [store], [prometheus], [control], [receive], [[alert]], [[hook]] and every part of [lb].
Where it can, a file here has the offending key's name written elsewhere too, where a search
by name finds the wrong line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctop.config import ConfigError, TomlSource, from_source

CASES = {
    "top level": (
        'cluster = "x"\ncolour = "blue"\n\n[store]\nraw_every = 1\n',
        2, "key 'colour': unknown key"),
    "liveness": (
        '[store]\nraw_every = 1\n\n[liveness]\nsuspect_after = 2\ndead_after = "soon"\n',
        6, "key 'liveness.dead_after'"),
    "store": (
        'key_file = "/k"\n\n[store]\npath = 3\n', 4, "key 'store.path': expected a string"),
    "prometheus": (
        'listen = "0.0.0.0:7117"\n\n[prometheus]\nlisten = "nowhere"\n',
        4, "key 'prometheus.listen'"),
    "control": (
        '[store]\nraw_every = 1\n\n[control]\ngroup = 5\n', 5, "key 'control.group'"),
    "alert": (
        '[[alert]]\nname = "a"\nwhen = "cpu_percent > 90"\nrepeat = "1h"\n\n'
        '[[alert]]\nname = "b"\nwhen = "cpu_percent > 95"\nfor = "5s"\nrepeat = "often"\n',
        10, "[[alert]] #2: key 'repeat'"),
    "hook": (
        '[[hook]]\ncommand = "true"\non = ["firing"]\n\n'
        '[[hook]]\ncommand = "true"\non = ["paged"]\n',
        7, "[[hook]] #2: key 'on'"),
    "a hook's missing key": (
        '[[hook]]\ncommand = "true"\n\n[[hook]]\ntimeout = "5s"\n',
        4, "[[hook]] #2: give exactly one of 'command' or 'webhook'"),
    "[[lb.haproxy]]": (
        '[[lb.haproxy]]\nsocket = "/run/a.sock"\ntimeout = 5\n\n'
        '[[lb.haproxy]]\nname = "edge"\nsocket = "/run/b.sock"\ntimeout = "long"\n',
        8, "[[lb.haproxy]] #2.timeout has the wrong type"),
    "[lb.ipvs]": (
        '[lb.automation."web"]\nenabled = true\n\n[lb.ipvs]\nenabled = "yes"\n',
        5, "[lb.ipvs].enabled"),
    "[lb.automation.service]": (
        '[lb.automation."api"]\nquiesce_after = 2\n\n'
        '[lb.automation."web"]\nrestore_after = 2\nquiesce_after = 0\n',
        4, '[lb.automation."web"]: quiesce_after and restore_after must be >= 1'),
    "[lb.advice]": (
        'cluster = "x"\n\n[lb.advice]\nmin_weight = 1\nmax_step = 2.0\n',
        3, "[lb.advice]: need 0 < max_step <= 1"),
    "[lb]": ('[lb]\nreadonly = false\nbogus = 1\n', 3, "[lb]: unknown key(s) bogus"),
    "receive": (
        'workers = 1\n\n[receive]\nworkers = 0\n', 4,
        "key 'receive.workers': expected a number of processes 1..256 or \"auto\", got 0"),
    "a dotted key": ('[lb]\nhaproxy.socket = 5\n', 2, "[lb.haproxy].socket has the wrong type"),
    "after a multi-line string": (
        '[[hook]]\ncommand = """\ntimeout = 5\nexec true\n"""\ntimeout = "soon"\n',
        6, "[[hook]] #1: key 'timeout'"),
}


@pytest.mark.parametrize("text,line,says", CASES.values(), ids=CASES.keys())
def test_a_bad_config_names_the_file_line_and_key(tmp_path: Path, text: str, line: int,
                                                   says: str) -> None:
    path = tmp_path / "ctop.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        from_source(TomlSource.load(path))
    assert str(e.value).startswith(f"{path}:{line}: "), str(e.value)
    assert says in str(e.value)


def test_the_parsed_config_is_typed_and_frozen(tmp_path: Path) -> None:
    """Alert rules, hooks and the [lb] section come out parsed: what the engine, `ctop lb`
    and the guards use, with nothing left to parse (or to fail) later."""
    path = tmp_path / "ctop.toml"
    path.write_text(
        '[[alert]]\nname = "hot"\nwhen = "cpu_percent > 80 for 10s"\ncrit = 95\n\n'
        '[[hook]]\nwebhook = "http://127.0.0.1:9/x"\non = ["firing"]\ntimeout = "3s"\n\n'
        '[lb]\nreadonly = true\n\n[lb.haproxy]\nsocket = "/run/h.sock"\n\n'
        '[lb.automation."web"]\nquiesce_after = 4\n')
    cfg = from_source(TomlSource.load(path))
    [rule] = cfg.alerts
    assert (rule.metric, rule.op, rule.warn, rule.crit, rule.duration) == (
        "cpu_percent", ">", 80.0, 95, 10.0)
    [hook] = cfg.hooks
    assert (hook.webhook, hook.states, hook.timeout) == (
        "http://127.0.0.1:9/x", frozenset({"firing"}), 3.0)
    assert [h.socket for h in cfg.lb.haproxy] == ["/run/h.sock"] and cfg.lb.readonly
    assert cfg.lb.automation["web"].quiesce_after == 4 and cfg.lb.automation["web"].enabled
    with pytest.raises(AttributeError):
        cfg.alerts = ()  # type: ignore[misc]


def test_without_alert_tables_the_default_rules_apply(tmp_path: Path) -> None:
    path = tmp_path / "ctop.toml"
    path.write_text('cluster = "x"\n')
    names = [r.name for r in from_source(TomlSource.load(path)).alerts]
    assert "node-dead" in names and "service-failing" in names
