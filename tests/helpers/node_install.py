"""A node's install (tests/test_node_install.py), built in the background like the IPVS VM.

`pip install ctop` (no extras) into a fresh venv takes most of a minute on a busy 2-core
machine and waits on nothing but itself. When a selected test needs it (`node_install`), the
build starts as soon as collection is done (tests/conftest.py), niced a little so the suite's
timing-sensitive tests keep their CPU, and the fixture waits for it: by the time the node
tests run it is usually done. A run that selects no node test never builds it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("pyproject.toml", "README.md", "ctop", "agentd", "probes")  # what a build reads
NICE = 10  # below the IPVS VM (nice 5): it has most of the suite to finish in
FIXTURE = "node_install"


@dataclass(frozen=True)
class NodeInstall:
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def agentd(self) -> Path:
        return self.venv / "bin" / "agentd"

    @property
    def ctop(self) -> Path:
        return self.venv / "bin" / "ctop"


class NodeInstallBuild:
    """The venv and `pip install` of a copy of the source tree, in a thread of its own."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ctop-node-install."))
        src = self.base / "src"  # a copy: pip builds in the source tree, would leave build/
        src.mkdir()
        for name in SHIPPED:
            origin = ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, src / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, src / name)
        self.install = NodeInstall(self.base / "venv")
        self._steps = [
            [sys.executable, "-m", "venv", str(self.install.venv)],
            [str(self.install.venv / "bin" / "pip"), "install", "-q",
             "--disable-pip-version-check", str(src)],
        ]
        self._proc: subprocess.Popen[str] | None = None
        self._failed = ""  # the failing step and its stderr
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="node-install", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for step in self._steps:
            with self._lock:
                if self._stopped:
                    return
                self._proc = subprocess.Popen(["nice", "-n", str(NICE), *step], text=True,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE)
            _, err = self._proc.communicate()
            if self._proc.returncode != 0:
                self._failed = f"{' '.join(step)} exited with {self._proc.returncode}:\n{err}"
                return

    def result(self, timeout: float = 600) -> NodeInstall:
        """The install once built; AssertionError with pip's words if it failed."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the node install took over {timeout:g} s"
        assert not self._failed, f"pip install of the node package failed:\n{self._failed}"
        return self.install

    def stop(self) -> None:
        """End a build nobody will read (e.g. -x stopped the run first) and remove it."""
        with self._lock:
            self._stopped = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
        self._thread.join(30)
        shutil.rmtree(self.base, ignore_errors=True)


_build: NodeInstallBuild | None = None


def start_build() -> NodeInstallBuild:
    """The session's one build, started now if it was not yet."""
    global _build
    if _build is None:
        _build = NodeInstallBuild()
    return _build


def stop_build() -> None:
    global _build
    if _build is not None:
        _build.stop()
        _build = None
