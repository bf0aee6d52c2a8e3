"""`python -m probes` as an operator runs it, against real servers; and probes.cli.main."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from probes.cli import main
from tests.helpers.peers import DNS_NAME, Peer


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "probes", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_all_ok_exits_0(smtp_server: Peer, dns_server: Peer) -> None:
    smtp, dns = smtp_server.url("smtp"), dns_server.url("dns", f"/{DNS_NAME}")
    proc = run_cli(smtp, dns)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "LATENCY", "PROBE", "DETAIL"]
    assert lines[1].startswith("OK") and smtp in lines[1] and " ms " in lines[1]
    assert "220 " in lines[1]
    assert lines[2].startswith("OK") and "NOERROR" in lines[2]


def test_warn_exits_1(https_server: Peer, smtp_server: Peer) -> None:
    proc = run_cli(smtp_server.url("smtp"), https_server.url("https", "/health"))
    assert proc.returncode == 1, proc.stdout
    assert "WARN" in proc.stdout and "certificate expires in" in proc.stdout


def test_fail_exits_2(http_server: Peer, silent_server: Peer, https_server: Peer) -> None:
    proc = run_cli(
        "--timeout",
        "0.5",
        http_server.url("http", "/missing"),
        silent_server.url("pop3"),
        https_server.url("https", "/"),
    )
    assert proc.returncode == 2, proc.stdout
    out = proc.stdout
    assert "HTTP 404 Not Found (expected 2xx/3xx)" in out
    assert "timeout after 0.5s waiting for POP3 greeting" in out
    assert "WARN" in out  # the https row is still shown with its own status


def test_invalid_spec_exits_2_with_message() -> None:
    proc = run_cli("smtp://127.0.0.1:25?receive=x")
    assert proc.returncode == 2
    assert "option 'receive' does not apply to smtp probes" in proc.stderr
    assert proc.stdout == ""


def test_main_json_in_process(ftp_server: Peer) -> None:
    out = io.StringIO()
    code = main(["--json", ftp_server.url("ftp")], out=out)
    assert code == 0
    row = json.loads(out.getvalue())
    assert row["probe"] == ftp_server.url("ftp") and row["status"] == "ok"
    assert row["detail"].startswith("220") and row["latency_ms"] > 0
