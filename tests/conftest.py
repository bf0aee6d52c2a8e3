"""Shared test settings.

In CI (CI=true) a test that would skip because a real peer (server, package, privilege) is
missing fails instead: a green run must mean every real part was exercised.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.helpers.haproxy_peer", "tests.helpers.peers"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
