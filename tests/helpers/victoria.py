"""A real VictoriaMetrics (Debian /usr/bin/victoria-metrics) on a random loopback port with its
storage in a temporary directory, once per test session; readiness polled on /health."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.nats_servers import free_port


@dataclass
class Victoria:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def flush(self) -> None:
        """Make everything imported so far searchable now (else up to a few seconds later)."""
        httpx.get(f"{self.url}/internal/force_flush", timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Victoria]:
    binary = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
    if not Path(binary).exists():
        pytest.skip("victoria-metrics is not installed (Debian package victoria-metrics)")
    root = tmp_path_factory.mktemp("victoria")
    port = free_port()
    log = root / "victoria.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([binary, f"-httpListenAddr=127.0.0.1:{port}",
                                 f"-storageDataPath={root / 'data'}"], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"victoria-metrics exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).is_success:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError(f"victoria-metrics not ready: {log.read_text()[-2000:]}")
    try:
        yield Victoria(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
