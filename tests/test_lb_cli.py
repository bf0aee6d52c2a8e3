"""`ctop lb` as scripts use it (real subprocess, real HAProxy), and the [lb] config."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ctop.lb import cli
from ctop.lb.automation import QuiescePolicy
from ctop.lb.base import ServerState
from ctop.lb.config import ConfigError, parse_config
from ctop.lb.factory import build_balancers, build_controller, build_quiescer, status_line
from ctop.lb.haproxy import HAProxyBalancer
from tests.helpers.haproxy_peer import HAProxyLab


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctop.lb.cli", *args], capture_output=True, text=True, timeout=30
    )


def test_cli_subprocess_drain_weight_restore(haproxy: HAProxyLab, tmp_path) -> None:
    opts = ["--haproxy-socket", haproxy.admin_socket, "--db", str(tmp_path / "ctop.db")]
    p = run("list", *opts)
    assert p.returncode == 0, p.stderr
    assert "web5" in p.stdout and "s3" in p.stdout and "serving" in p.stdout
    # scripts read the balancer's name under the key "backend" (as before the rename)
    p = run("--json", "list", *opts)
    assert {vs["backend"] for vs in json.loads(p.stdout)} == {"haproxy"}

    p = run("weight", "web5", "s2", "4", *opts)
    assert p.returncode == 0 and "weight 1 → 4" in p.stdout, p.stderr
    p = run("drain", "web5", "s2", *opts)
    assert p.returncode == 0, p.stderr
    assert haproxy.hits("web5", 20)["s2"] == 0
    p = run("--json", "restore", "web5", "s2", *opts)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] and out["after"] == 4 and out["origin"] == "cli"
    assert out["backend"] == "haproxy"

    p = run("log", "--json", *opts)
    rows = json.loads(p.stdout)
    assert [r["action"] for r in rows] == ["restore", "drain", "weight"]
    assert {(r["origin"], r["backend"]) for r in rows} == {("cli", "haproxy")}


def test_a_service_two_balancers_have_is_named_with_balancer_or_the_old_backend(
        haproxy: HAProxyLab, tmp_path) -> None:
    # the same HAProxy through its admin and its TCP socket: two balancers, both with web5
    opts = ["--haproxy-socket", haproxy.admin_socket, "--haproxy-socket", haproxy.tcp_socket,
            "--db", str(tmp_path / "ctop.db")]
    p = run("drain", "web5", "s3", *opts)
    assert p.returncode == 1 and "give --balancer" in p.stderr, p.stderr
    assert haproxy.hits("web5", 9)["s3"] > 0  # nothing changed
    p = run("--balancer", "haproxy2", "drain", "web5", "s3", *opts)
    assert p.returncode == 0, p.stderr
    assert haproxy.hits("web5", 9)["s3"] == 0
    p = run("restore", "web5", "s3", "--backend", "haproxy2", *opts)  # the flag's old name
    assert p.returncode == 0, p.stderr
    assert haproxy.hits("web5", 9)["s3"] > 0
    rows = json.loads(run("log", "--json", *opts).stdout)
    assert [(r["backend"], r["action"]) for r in rows] == [("haproxy2", "restore"),
                                                           ("haproxy2", "drain")]
    p = run("--balancer", "nosuch", "drain", "web5", "s3", *opts)
    assert p.returncode == 1, p.stderr
    assert "no balancer 'nosuch' (balancers: haproxy, haproxy2)" in p.stderr


def test_cli_exit_codes(haproxy: HAProxyLab, tmp_path) -> None:
    opts = ["--haproxy-socket", haproxy.admin_socket, "--db", str(tmp_path / "ctop.db")]
    p = run("drain", "web5", "nope", *opts)
    assert p.returncode == 1 and "no real server 'nope'" in p.stderr
    p = run("weight", "web5", "s1", "300", *opts)
    assert p.returncode == 1 and "out of range 0..256" in p.stderr
    p = run("--readonly", "drain", "web5", "s1", *opts)
    assert p.returncode == 1 and "read-only" in p.stderr
    p = run("drain", "nosuch", "s1", *opts)
    assert p.returncode == 1 and "no service 'nosuch'" in p.stderr
    p = run("weight", "web5", "s1", *opts)  # missing N
    assert p.returncode == 2
    p = run("list", "--db", str(tmp_path / "ctop.db"))
    assert p.returncode == 2 and "monitoring only" in p.stderr
    user = ["--haproxy-socket", haproxy.user_socket, "--db", str(tmp_path / "ctop.db")]
    p = run("weight", "web5", "s1", "3", *user)
    assert p.returncode == 1 and "Permission denied" in p.stderr
    assert HAProxyBalancer(haproxy.admin_socket).get_weight("web5", "s1")[0] == 1


def test_cli_maint_and_its_exit_codes(haproxy: HAProxyLab, tmp_path) -> None:
    opts = ["--haproxy-socket", haproxy.admin_socket, "--db", str(tmp_path / "ctop.db")]
    p = run("--help")
    assert p.returncode == 0 and "maint" in p.stdout, p.stdout
    p = run("--readonly", "maint", "web6", "s2", *opts)
    assert p.returncode == 1 and "read-only" in p.stderr
    assert _state(haproxy, "web6", "s2") == ServerState.SERVING
    p = run("weight", "web6", "s2", "2", *opts)
    assert p.returncode == 0, p.stderr
    p = run("maint", "web6", "s2", *opts)
    assert p.returncode == 0 and "maint done, weight 2 → 0 (maint)" in p.stdout, p.stderr
    assert _state(haproxy, "web6", "s2") == ServerState.MAINT
    assert haproxy.hits("web6", 20)["s2"] == 0
    p = run("maint", "web6", "s2", *opts)  # nothing to do: still success
    assert p.returncode == 0 and "already in maintenance" in p.stdout, p.stderr
    p = run("maint", "web6", "nope", *opts)
    assert p.returncode == 1 and "no real server 'nope'" in p.stderr
    p = run("maint", "nosuch", "s1", *opts)
    assert p.returncode == 1 and "no service 'nosuch'" in p.stderr
    p = run("maint", "web6", *opts)  # missing SERVER
    assert p.returncode == 2
    user = ["--haproxy-socket", haproxy.user_socket, "--db", str(tmp_path / "ctop.db")]
    p = run("maint", "web6", "s1", *user)
    assert p.returncode == 1 and "Permission denied" in p.stderr
    assert _state(haproxy, "web6", "s1") == ServerState.SERVING
    p = run("--json", "restore", "web6", "s2", *opts)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] and out["after"] == 2 and out["state_after"] == "serving"
    p = run("log", "--json", "web6", "s2", *opts)
    rows = json.loads(p.stdout)
    assert [(r["action"], r["origin"], r["result"]) for r in rows] == [
        ("restore", "cli", "ok"),
        ("maint", "cli", "ok"),
        ("weight", "cli", "ok"),
    ]


def _state(haproxy: HAProxyLab, service: str, server: str) -> ServerState:
    vs = next(v for v in HAProxyBalancer(haproxy.admin_socket).services() if v.key == service)
    return next(rs.state for rs in vs.servers if rs.key == server)


def test_cli_main_in_process_with_config_file(haproxy: HAProxyLab, tmp_path, capsys) -> None:
    toml = tmp_path / "ctop.toml"
    toml.write_text(f'[lb.haproxy]\nsocket = "{haproxy.tcp_socket}"\n')
    db = str(tmp_path / "ctop.db")
    assert cli.main(["lb", "--config", str(toml), "--db", db, "weight", "web4", "s3", "2"]) == 0
    assert cli.main(["--config", str(toml), "--db", db, "weight", "web4", "s3", "2"]) == 0
    assert "already at weight 2" in capsys.readouterr().out  # no-op, still success
    toml.write_text("[lb.haproxy]\nsockett = 1\n")
    assert cli.main(["--config", str(toml), "list"]) == 2
    assert "unknown key(s) sockett" in capsys.readouterr().err


def test_config_parsing() -> None:
    cfg = parse_config(
        {
            "lb": {
                "haproxy": {"socket": "/run/haproxy/admin.sock"},
                "ipvs": {"enabled": True},
                "automation": {"web": {"quiesce_after": 3, "restore_after": 2}},
                "advice": {"max_step": 0.2, "max_weight": 50},
            }
        }
    )
    assert cfg.haproxy[0].name == "haproxy" and cfg.ipvs and not cfg.monitoring_only
    assert cfg.automation["web"] == QuiescePolicy(True, 3, 2, True)
    assert cfg.advice.max_step == 0.2 and cfg.advice.max_weight == 50 and not cfg.advice.auto
    assert parse_config({}).monitoring_only and parse_config({"other": 1}).monitoring_only
    assert "monitoring only" in status_line(parse_config(None))
    two = parse_config({"haproxy": [{"socket": "/a"}, {"socket": "127.0.0.1:1", "name": "edge"}]})
    assert [h.name for h in two.haproxy] == ["haproxy", "edge"]
    for bad in (
        {"haproxy": {}},
        {"haproxy": {"socket": 5}},
        {"ipvs": {"enabled": "yes"}},
        {"automation": {"web": {"quiesce_after": 0}}},
        {"automation": {"web": {"quiesce_after": True}}},
        {"advice": {"max_step": 2.0}},
        {"nonsense": 1},
    ):
        with pytest.raises(ConfigError):
            parse_config({"lb": bad})


def test_factory(haproxy: HAProxyLab, tmp_path) -> None:
    cfg = parse_config({"haproxy": {"socket": haproxy.admin_socket}, "automation": {"web1": {}}})
    assert set(build_balancers(cfg)) == {"haproxy"}
    ctl = build_controller(cfg, tmp_path / "db")
    assert any(vs.key == "web1" for vs in ctl.services())
    aq = build_quiescer(cfg, ctl)
    assert aq is not None and aq.policy("haproxy", "web1").enabled
    assert not aq.policy("haproxy", "web2").enabled
    assert build_quiescer(parse_config({"haproxy": {"socket": "/x"}}), ctl) is None
    ipvs = build_balancers(parse_config({"ipvs": {"enabled": True}}))  # lazy import
    assert ipvs["ipvs"].name == "ipvs"
