"""Shared test settings.

In CI (CI=true) a test that would skip because a real peer (server, package, privilege) is
missing fails instead: a green run must mean every real part was exercised.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.helpers.haproxy_peer", "tests.helpers.peers", "tests.helpers.nats_servers",
                  "tests.helpers.victoria"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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
