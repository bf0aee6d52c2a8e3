"""Boot Debian's kernel (it has IPVS as modules) under qemu and run one command in it as root.

Adapted from the ipvs-lab recipe (build-initramfs + ipvs-vm). The guest mounts the host's / read-
only over 9p with a tmpfs overlay, so the host's venv and ipvsadm run inside unchanged and writes
vanish at power-off. A second 9p share (a host temp dir) carries the command in and the results
out; inside the guest it is /mnt/share.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUEST_SHARE = "/mnt/share"  # where the share dir appears inside the guest's chroot
_QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class VMRun:
    rc: int  # the command's exit status; 125 when the guest never finished
    stdout: str
    stderr: str
    console: str  # kernel and init output, for diagnosing a failed boot
    seconds: float  # wall time from qemu's start to its exit
    cpu_seconds: float  # qemu's own CPU time (user + system), whatever else shares the CPU
    share: Path  # host dir seen as /mnt/share in the guest (result files)


def find_kernel() -> Path | None:
    """The newest /boot/vmlinuz-* (from linux-image-amd64), as build-initramfs picks it."""
    kernels = sorted(
        Path("/boot").glob("vmlinuz-*"), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)]
    )
    return kernels[-1] if kernels else None


def missing() -> str | None:
    """Why the VM can't run here, or None. Checked before anything is built or booted."""
    if shutil.which(_QEMU) is None:
        return f"{_QEMU} not installed (Debian package qemu-system-x86)"
    kernel = find_kernel()
    if kernel is None:
        return "no /boot/vmlinuz-* (Debian package linux-image-amd64)"
    if not os.access(kernel, os.R_OK):
        return f"{kernel} is not readable (needs root)"
    release = kernel.name.removeprefix("vmlinuz-")
    if not (Path("/lib/modules") / release / "kernel/net/netfilter/ipvs").is_dir():
        return f"no IPVS modules for {release} under /lib/modules"
    for tool, package in (
        ("ipvsadm", "ipvsadm"),
        ("cpio", "cpio"),
        ("depmod", "kmod"),
        ("ip", "iproute2"),
        ("setpriv", "util-linux"),
    ):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} not installed (Debian package {package})"
    if not Path("/bin/busybox").exists():
        return "/bin/busybox missing (Debian package busybox-static)"
    return None


def build_initramfs(outdir: Path, kernel: Path) -> Path:
    """busybox + ipvsadm + the modules the guest needs; well under a second."""
    release = kernel.name.removeprefix("vmlinuz-")
    subprocess.run(
        ["bash", str(HERE / "build-initramfs.sh"), str(outdir)],
        env={**os.environ, "K": release},
        check=True,
        capture_output=True,
        text=True,
    )
    return outdir / "initramfs.cpio.gz"


def run_in_vm(command: str, *, cwd: Path, timeout: float = 240, mem: str = "1G") -> VMRun:
    """Boot, run `command` (bash) as root in `cwd` inside the guest, power off."""
    return start_vm(command, cwd=cwd, mem=mem).result(wait=timeout)


def start_vm(command: str, *, cwd: Path, mem: str = "1G", nice: int = 0) -> VMBoot:
    """Boot in the background (`run_in_vm` without the wait): the caller goes on while qemu
    runs and collects the VMRun with .result(wait=). `nice` lowers qemu's CPU priority, so a
    test suite running beside it keeps its timing while qemu takes the idle CPU."""
    kernel = find_kernel()
    assert kernel is not None, missing()
    share = Path(tempfile.mkdtemp(prefix="ctop-ipvs-vm."))
    initrd = build_initramfs(share / "initramfs", kernel)
    (share / "cmd").write_text(command + "\n")
    # run.sh runs in the initramfs; it chroots into the host's / (overlay) with a clean env
    (share / "run.sh").write_text(
        "#!/bin/sh\n"
        "chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
        "/sbin:/bin HOME=/root TERM=dumb LC_ALL=C.UTF-8 "
        f"/bin/bash -c 'cd {cwd} && . {GUEST_SHARE}/cmd' "
        "> /share/stdout 2> /share/stderr\n"
    )
    (share / "run.sh").chmod(0o755)
    qemu = [
        _QEMU, "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", mem,
        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet mods=ip_vs",
        "-fsdev", f"local,id=fs0,path={share},security_model=none",
        "-device", "virtio-9p-pci,fsdev=fs0,mount_tag=share",
        "-fsdev", "local,id=fs1,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=fs1,mount_tag=hostroot",
    ]  # fmt: skip
    if nice:
        qemu = ["nice", "-n", str(nice), *qemu]  # nice execs qemu: all its threads inherit it
    return VMBoot(qemu, share)


HARD_LIMIT = 2400.0  # seconds from qemu's start: beside a slow suite it takes 5-15 minutes


class VMBoot:
    """One qemu run, started at once; a thread waits for it (wait4, for qemu's own CPU time).
    The console goes to a file in the share dir (the guest never writes there), not a pipe:
    nobody has to drain it while the caller does other work."""

    def __init__(self, qemu: list[str], share: Path) -> None:
        self.share = share
        self._console = share / "initramfs" / "console.log"
        self._start = time.monotonic()
        with open(self._console, "wb") as out:
            self._proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT)
        self._seconds = 0.0
        self._cpu = 0.0
        self._killed_after: float | None = None
        # a guest that spins from the start must not hold a core for the whole suite: killed
        # after HARD_LIMIT seconds whoever waits (result()'s limit only counts from its call)
        self._cap = threading.Timer(HARD_LIMIT, self.kill)
        self._cap.daemon = True
        self._cap.start()
        self._waiter = threading.Thread(target=self._wait, name="ipvs-vm", daemon=True)
        self._waiter.start()

    def _wait(self) -> None:
        _, status, usage = os.wait4(self._proc.pid, 0)
        self._cap.cancel()
        self._proc.returncode = os.waitstatus_to_exitcode(status)
        self._seconds = time.monotonic() - self._start
        self._cpu = usage.ru_utime + usage.ru_stime

    def done(self) -> bool:
        return not self._waiter.is_alive()

    def kill(self) -> None:
        """Stop qemu (a hung guest, or a run nobody will read)."""
        if not self.done():
            self._killed_after = time.monotonic() - self._start
            self._proc.kill()
            self._waiter.join(timeout=30)

    def result(self, wait: float) -> VMRun:
        """The run, once qemu is off; killed when it is still running after `wait` seconds
        more (counted from this call: the time it ran beside other work is not held against
        it)."""
        self._waiter.join(timeout=wait)
        self.kill()
        console = _read(self._console)
        if self._killed_after is not None:
            console = f"qemu killed after {self._killed_after:.0f} s\n{console}"
        rc_file = self.share / "rc"
        rc = int(rc_file.read_text().strip()) if rc_file.exists() and rc_file.read_text() else 125
        return VMRun(
            rc=rc,
            stdout=_read(self.share / "stdout"),
            stderr=_read(self.share / "stderr"),
            console=console,
            seconds=self._seconds,
            cpu_seconds=self._cpu,
            share=self.share,
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
