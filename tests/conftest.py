"""Shared test settings.

In CI (CI=true) a test that would skip because a real peer (server, package, privilege) is
missing fails instead: a green run must mean every real part was exercised.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path

import pytest

from tests.helpers import node_install

pytest_plugins = ["tests.helpers.haproxy_peer", "tests.helpers.peers", "tests.helpers.nats_servers",
                  "tests.helpers.victoria"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REPO = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile ctop, agentd and probes once. The suite starts hundreds of agentd and ctop
    processes; with PYTHONDONTWRITEBYTECODE set (as on CI's machines) each would compile every
    module it imports again (~0.25 s of CPU a start); a .pyc that exists is still read. Only
    files newer than their .pyc are compiled, so this is ~0.1 s once they exist."""
    for package in ("ctop", "agentd", "probes"):
        compileall.compile_dir(REPO / package, quiet=1)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A node install (tests/helpers/node_install.py) builds while the other tests run."""
    if session.config.option.collectonly:
        return
    if any(node_install.FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        node_install.start_build()


def pytest_sessionfinish() -> None:
    node_install.stop_build()


@pytest.fixture(autouse=True)
def own_default_database(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A ctop run without a store path must not open the machine's database (as root
    /var/lib/ctop/ctop.db, shared by everything on the host): $CTOP_DB points each test, and
    every process it starts, at a fresh one. A test may set its own."""
    monkeypatch.setenv("CTOP_DB", str(tmp_path_factory.mktemp("db") / "ctop.db"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
