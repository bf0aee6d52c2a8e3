"""One IPVS VM boot per test session; every test in this directory reads its results.

The boot overlaps the rest of the suite: qemu TCG is CPU-bound on one core while most other
tests wait on sockets and timers. As soon as collection is done, if any selected test needs
`vm_results`, the VM starts in the background (niced a little, so the suite's timing-sensitive
tests keep their CPU); the IPVS tests run last and `vm_results` waits for that run. A run that
selects no IPVS test (a file, -k, -m "not vm") never boots it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import ipvs_vm
import pytest

REPO = Path(__file__).resolve().parents[2]
# How long vm_results waits for the run, from when the first IPVS test asks (before that it
# ran beside the suite): alone ~300 s on a loaded 2-core machine, the owner checks 350-530 s at
# load 18. Under the IPVS tests' own pytest-timeout (1200 s), so a hung guest fails them with
# its console. The budget test bounds qemu's CPU time.
VM_WAIT = 1100.0
# qemu's CPU priority beside the suite: a little below it, so the suite's timing-sensitive tests
# keep their CPU, but not so far that the guest starves when the suite is busy (at nice 19 on a
# machine at load 15 the guest's HTTP servers did not start within 120 s)
VM_NICE = 5

_boot: ipvs_vm.VMBoot | None = None


def _needs_vm(item: pytest.Item) -> bool:
    return "vm_results" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The IPVS tests last: they wait for the VM, which boots while the others run."""
    items.sort(key=_needs_vm)  # stable: the order within each part is kept


def pytest_collection_finish(session: pytest.Session) -> None:
    global _boot
    if session.config.option.collectonly or not any(map(_needs_vm, session.items)):
        return
    if ipvs_vm.missing() is None:  # else vm_results skips (fails in CI) with the reason
        _boot = _start()


def pytest_sessionfinish() -> None:
    if _boot is not None and not _boot.done():  # e.g. -x stopped before the IPVS tests
        _boot.kill()
        shutil.rmtree(_boot.share, ignore_errors=True)


def _start() -> ipvs_vm.VMBoot:
    # the host venv's python runs inside: the guest sees the host's / read-only at the same paths
    return ipvs_vm.start_vm(
        f"PYTHONPATH={REPO} {sys.executable} tests/ipvs/guest_checks.py "
        f"{ipvs_vm.GUEST_SHARE}/result.json",
        cwd=REPO, nice=VM_NICE,
    )


@pytest.fixture(scope="session")
def vm_results() -> Iterator[dict]:
    """The one VM run of guest_checks.py (started at collection), its JSON results."""
    reason = ipvs_vm.missing()
    if reason:
        pytest.skip(f"IPVS VM unavailable: {reason}")
    run = (_boot or _start()).result(wait=VM_WAIT)
    result = run.share / "result.json"
    if not result.exists():
        pytest.fail(
            f"IPVS VM gave no result (rc {run.rc}, {run.seconds:.0f} s)\n"
            f"stderr:\n{run.stderr[-3000:]}\nconsole:\n{run.console[-3000:]}"
        )
    data = json.loads(result.read_text())
    data["_run"] = {"seconds": run.seconds, "cpu_seconds": run.cpu_seconds, "rc": run.rc,
                    "stderr": run.stderr}
    yield data
    shutil.rmtree(run.share, ignore_errors=True)


@pytest.fixture
def vm(vm_results: dict) -> dict:
    if "setup_error" in vm_results:
        pytest.fail(f"IPVS VM set-up failed:\n{vm_results['setup_error']}")
    return vm_results
