"""Spec parsing (URL and TOML table forms), validation errors, and ProbeResult rules."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from probes import TYPES, ProbeResult, ProbeSpec, ProbeSpecError, from_table, from_url, parse, worst
from probes.result import MAX_DETAIL


def test_url_forms() -> None:
    smtp = from_url("smtp://10.0.0.2")
    assert (smtp.type, smtp.host, smtp.port, smtp.name) == (
        "smtp",
        "10.0.0.2",
        25,
        "smtp://10.0.0.2:25",
    )
    dns = from_url("dns://10.0.0.3:5353/www.example.com?type=mx&tcp=yes&timeout=2")
    assert (dns.query, dns.qtype, dns.tcp, dns.port, dns.timeout) == (
        "www.example.com",
        "MX",
        True,
        5353,
        2.0,
    )
    http = from_url("http://h:8080/health?expect=200,204&receive=OK&virtualhost=www.x&interval=30")
    assert (http.path, http.expect, http.receive, http.virtualhost, http.interval) == (
        "/health",
        (200, 204),
        "OK",
        "www.x",
        30.0,
    )
    https = from_url("https://[::1]/?cert_warn_days=30&verify=1&connect_timeout=0.5")
    assert (https.host, https.port, https.verify, https.cert_warn_days) == ("::1", 443, True, 30)
    assert https.connect_limit == 0.5 and https.name == "https://[::1]:443/"
    cmd = from_url("command:///usr/lib/mon/check --flag 'two words'")
    assert cmd.command == ("/usr/lib/mon/check", "--flag", "two words")
    assert from_url("command:check_disk -w 10").command == ("check_disk", "-w", "10")
    assert from_url("ssh://h").port == 22 and from_url("nntp://h").port == 119


def test_every_type_has_a_url_form() -> None:
    for kind, info in TYPES.items():
        if kind == "command":
            continue
        url = f"{kind}://127.0.0.1:{info.default_port or 7}" + ("/x.test" if kind == "dns" else "")
        assert from_url(url).type == kind


def test_table_forms() -> None:
    config = tomllib.loads(
        """
        [[probe]]
        type = "smtp"
        host = "10.0.0.2"
        name = "mail"
        timeout = 3

        [[probe]]
        url = "http://10.0.0.4/health"
        receive = "OK"
        expect = [200]

        [[probe]]
        type = "command"
        command = ["/usr/lib/check", "--flag"]
        interval = 60
        """
    )
    mail, web, cmd = (from_table(t) for t in config["probe"])
    assert (mail.name, mail.port, mail.timeout) == ("mail", 25, 3.0)
    assert (web.path, web.receive, web.expect, web.name) == (
        "/health",
        "OK",
        (200,),
        "http://10.0.0.4:80/health",
    )
    assert cmd.command == ("/usr/lib/check", "--flag") and cmd.interval == 60.0
    assert (
        parse(mail) is mail
        and parse("tcp://h:1").port == 1
        and parse({"type": "ssh", "host": "h"}).port == 22
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("gopher://h", "unknown probe type 'gopher'"),
        ("tcp://h", "tcp probe needs a port"),
        ("smtp://h:0", "port 0 out of range"),
        ("smtp://h:99999", "bad port"),
        ("smtp://", "smtp probe needs a host"),
        ("smtp://h/path", "smtp probe URL takes no path"),
        ("smtp://user@h", "must not carry user info"),
        ("smtp://h?receive=x", "option 'receive' does not apply to smtp probes"),
        ("http://h/?bogus=1", "unknown option 'bogus' for http probe"),
        ("http://h/?timeout=-1", "timeout must be > 0"),
        ("http://h/?timeout=soon", "bad value for 'timeout'"),
        ("http://h/?expect=abc", "bad value for 'expect'"),
        ("http://h/?expect=99", "is not a status code"),
        ("https://h/?verify=maybe", "bad value for 'verify'"),
        ("dns://h", "dns probe needs a name"),
        ("dns://h/x.test?type=BOGUS", "unknown dns record type 'BOGUS'"),
        ("command:", "command probe needs a command"),
        ("nonsense", "not a probe URL"),
        ({"host": "h"}, "needs type"),
        ({"type": "smtp", "host": "h", "port": "25x"}, "bad value for 'port'"),
        ({"type": "smtp", "host": "h", "port": True}, "bad value for 'port'"),
        ({"type": "command", "command": "true", "host": "h"}, "takes no host"),
        ({"url": "smtp://h", "type": "pop3"}, "contradicts url scheme"),
        ({"type": "command", "command": [1, 2]}, "bad value for 'command'"),
    ],
)
def test_invalid_specs_raise(source: str | dict, message: str) -> None:
    with pytest.raises(ProbeSpecError, match=message.replace("?", r"\?")):
        parse(source)


def test_a_spec_built_in_code_is_checked_like_a_parsed_one() -> None:
    with pytest.raises(ProbeSpecError, match="timeout"):
        ProbeSpec(type="smtp", host="h", port=25, timeout=0)


def test_result_detail_is_short_single_line_text() -> None:
    result = ProbeResult("fail", None, "220 line one\r\nline\x00two " + "x" * 300)
    assert len(result.detail) == MAX_DETAIL and "\n" not in result.detail
    assert result.detail.startswith("220 line one line?two")
    with pytest.raises(ValueError):
        ProbeResult("bad", None, "")  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "ok"  # type: ignore[misc]


def test_worst() -> None:
    ok, warn, fail = (ProbeResult(s, 1.0, "") for s in ("ok", "warn", "fail"))  # type: ignore[arg-type]
    assert worst([]) == "ok" and worst([ok, warn]) == "warn" and worst([warn, fail, ok]) == "fail"
