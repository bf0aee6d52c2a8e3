"""agentd config: TOML file plus flag overrides; every error names file, line and key."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from agentd.config import Config, ConfigError, Director, load, parse_director
from tests.helpers.agent_helpers import AGENTD


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agentd.toml"
    path.write_text(text)
    return str(path)


def error_of(path: str | None, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, overrides, required=True)
    return str(info.value)


def test_defaults_when_the_default_file_is_absent(tmp_path: Path) -> None:
    cfg = load(str(tmp_path / "absent.toml"))  # not required: defaults
    assert cfg == Config(node_id=socket.gethostname())
    assert cfg.interval == 1.0 and cfg.join_interval == 10.0
    assert cfg.key_file == "/etc/ctop/cluster.key" and cfg.directors == ()


def test_full_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
director = ["10.0.0.1:7200", "director2", "[fd00::1]:7117", "fd00::2"]
key_file = "/etc/ctop/k"
node_id = "web1"
group = "web"
interval = 2
join_interval = 60.0
probes = ["tcp://127.0.0.1:3306", {type = "smtp", host = "127.0.0.1", name = "mail"}]
""",
    )
    cfg = load(path)
    assert cfg.directors == (
        Director("10.0.0.1", 7200),
        Director("director2", 7117),
        Director("fd00::1", 7117),
        Director("fd00::2", 7117),
    )
    assert str(cfg.directors[2]) == "[fd00::1]:7117"
    assert (cfg.key_file, cfg.node_id, cfg.group) == ("/etc/ctop/k", "web1", "web")
    assert (cfg.interval, cfg.join_interval) == (2.0, 60.0)
    assert load(write(tmp_path, "beacon_interval = 0\n")).beacon_interval == 0  # reports only
    assert [(p.type, p.name) for p in cfg.probes] == [
        ("tcp", "tcp://127.0.0.1:3306"),
        ("smtp", "mail"),
    ]
    assert cfg.probes[1].port == 25


def test_flags_override_the_file_and_probes_add(tmp_path: Path) -> None:
    path = write(tmp_path, 'director = "10.0.0.1"\ninterval = 5\nprobes = ["tcp://127.0.0.1:1"]\n')
    cfg = load(
        path,
        {"director": ["127.0.0.1:9999"], "interval": 0.5, "probes": ["http://127.0.0.1:8080/"]},
    )
    assert cfg.directors == (Director("127.0.0.1", 9999),)
    assert cfg.interval == 0.5
    assert [p.name for p in cfg.probes] == ["tcp://127.0.0.1:1", "http://127.0.0.1:8080/"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('group = "x"\ninterval = "fast"\n', ":2: key 'interval': expected a number of seconds"),
        ("interval = 0\n", ":1: key 'interval': expected a number of seconds in 0.05..3600, got 0"),
        ("\n\ninterval = true\n", ":3: key 'interval'"),
        ('node_id = "a"\nspeed = 3\n', ":2: key 'speed': unknown key"),
        ("director = 7117\n", ":1: key 'director': expected \"host:port\" or a list"),
        ('\naddresses = ["10.0.0.2", "web-1"]\n',
         ":2: key 'addresses': not an IP address: \"web-1\""),
        ('director = ["h:99999"]\n', ":1: key 'director': bad port"),
        ('node_id = ""\n', ":1: key 'node_id': must not be empty"),
        ("beacon_interval = 0.01\n",
         ":1: key 'beacon_interval': expected a number of seconds in 0.05..3600, got 0.01"),
        ('group = "a"\ninterval = 1\n\ngroup = "b"\n', ":4: invalid TOML"),
        ('interval = 1\nnode_id = "unterminated\n', ":2: invalid TOML"),
    ],
)  # fmt: skip
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(path + expected), message


def test_probe_errors_point_at_the_probe(tmp_path: Path) -> None:
    tables = """interval = 1

[[probes]]
type = "tcp"
host = "127.0.0.1"
port = 22

[[probes]]
type = "http"
host = "127.0.0.1"
colour = "blue"
"""
    path = write(tmp_path, tables)
    message = error_of(path)
    assert message.startswith(f"{path}:8: key 'probes': probe 2:"), message
    assert "colour" in message

    path = write(tmp_path, 'probes = [\n  "tcp://127.0.0.1:22",\n  "gopher://127.0.0.1",\n]\n')
    message = error_of(path)
    assert message.startswith(f"{path}:3: key 'probes': probe 2: unknown probe type"), message

    path = write(tmp_path, 'probes = ["tcp://127.0.0.1:22", "tcp://127.0.0.1:22"]\n')
    assert "repeated: tcp://127.0.0.1:22" in error_of(path)


def test_flag_errors_name_the_flag() -> None:
    assert error_of(None, {"interval": -1.0}).startswith("--interval: ")
    assert error_of(None, {"director": ["[::1"]}).startswith("--director: bad address")
    assert "--probe: probe 1:" in error_of(None, {"probes": ["nonsense"]})
    assert error_of(None, {"addresses": ["web-1"]}).startswith("--address: not an IP address")


@pytest.mark.parametrize(("flag", "bad"), [
    ("--probe", "nonsense"), ("--address", "web-1"), ("--director", "[::1"),
    ("--interval", "-1"), ("--join-interval", "0"), ("--beacon-interval", "-2"),
    ("--node-id", ""), ("--group", "x" * 300),
])
def test_agentd_names_the_flag_the_operator_typed(tmp_path: Path, flag: str, bad: str) -> None:
    """The real command: its error starts with the flag given, which agentd accepts."""
    done = subprocess.run(
        [str(AGENTD), "--config", write(tmp_path, ""), flag, bad, "--once"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"agentd: config error: {flag}: "), done.stderr


def test_missing_required_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    assert error_of(path) == f"{path}: config file does not exist"


def test_parse_director() -> None:
    assert parse_director("h") == Director("h", 7117)
    assert parse_director(" 127.0.0.1:1 ") == Director("127.0.0.1", 1)
    assert parse_director("[::1]:9") == Director("::1", 9)
    for bad in ("", ":80", "h:0", "h:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_director(bad)


def test_announced_addresses_from_file_and_flags(tmp_path: Path) -> None:
    path = write(tmp_path, 'addresses = ["10.0.0.2", "[2001:db8::2]"]\n')
    assert load(path).addresses == ("10.0.0.2", "2001:db8::2")
    assert load(path, {"addresses": ["127.0.1.7"]}).addresses == ("127.0.1.7",)
