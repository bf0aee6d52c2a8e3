"""Runs INSIDE the IPVS VM (from guest_checks.py, same boot): the owners of the table.

A real keepalived (checkers only, -C) and then a real ldirectord own a second virtual
service, TCP 10.1.0.9:80, over the same real servers rs1 (10.1.1.2) and rs2 (10.1.2.2).
ctop drains through its controller with the owner hooks ([lb.ipvs] as `ctop serve` builds
them); the owner is then restarted (which rebuilds the table from its config) and reloaded,
and the table read again. A hand edit of the other server (ipvsadm -e, not ctop's) is the
control: the restart undoes it, which proves the table was rebuilt, while ctop's drain stays.

    python tests/ipvs/guest_owners.py RESULT.json [keepalived|ldirectord]   # alone
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from ctop.lb.config import parse_config
from ctop.lb.factory import build_controller
from ctop.lb.ipvs import IPVSBalancer
from ctop.lb.owners.detect import detect

VIP2 = "10.1.0.9"
SVC2 = f"TCP {VIP2}:80"
RS1, RS2 = "10.1.1.2:80", "10.1.2.2:80"
WORK = Path("/tmp/ctop-owners")

KEEPALIVED_CONF = """global_defs {{
    router_id ctop_owner_test
}}
virtual_server {vip} 80 {{
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 10.1.1.2 80 {{
        weight 3
        include {dir}/{vip}_80/10.1.1.2_80.conf
    }}
    real_server 10.1.2.2 80 {{   # no include: ctop must refuse
        weight 2
    }}
}}
"""

LDIRECTORD_CF = """checktimeout=2
checkinterval=1
quiescent=yes
maintenancedir={maint}
logfile="{log}"
virtual={vip}:80
\treal=10.1.1.2:80 masq 3
\treal=10.1.2.2:80 masq 2
\tscheduler=wrr
\tprotocol=tcp
\tchecktype=connect
"""


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def weights() -> dict[str, int]:
    return {rs.key: rs.weight for s in IPVSBalancer().services() if s.key == SVC2
            for rs in s.servers}


def until(what: Callable[[], object], timeout: float = 60.0, step: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = what()
        except Exception:  # the table may be between two states
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s; table {weights()}")


def controller(db: str, keepalived_dir: str = str(WORK / "ka")) -> object:
    cfg = parse_config({"lb": {"ipvs": {"enabled": True, "keepalived_dir": keepalived_dir}}})
    return build_controller(cfg, db)


def start_keepalived(conf: Path, log: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["keepalived", "-f", str(conf), "-n", "-l", "-D", "-C",
                             "-p", str(WORK / "ka.pid"), "-c", str(WORK / "kc.pid")],
                            stdout=log, stderr=log)  # type: ignore[arg-type]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def keepalived_check() -> dict[str, object]:
    out: dict[str, object] = {}
    conf = WORK / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF.format(vip=VIP2, dir=WORK / "ka"))
    include = WORK / "ka" / f"{VIP2}_80" / "10.1.1.2_80.conf"
    log = open(WORK / "keepalived.log", "w")  # noqa: SIM115 - closed below
    proc = start_keepalived(conf, log)
    try:
        until(lambda: weights() == {RS1: 3, RS2: 2})
        out["owners"] = [o.text() for o in detect()]
        out["owner_pid_is_main"] = any(o.pid == proc.pid for o in detect())
        ctl = controller(str(WORK / "ka.db"))
        refused = ctl.drain("ipvs", SVC2, RS2, origin="cli")  # type: ignore[attr-defined]
        out["refused"] = {"ok": refused.ok, "message": refused.message, "table": weights()}
        drained = ctl.drain("ipvs", SVC2, RS1, origin="cli")  # type: ignore[attr-defined]
        out["drain"] = {"ok": drained.ok, "message": drained.message}
        out["include"] = include.read_text() if include.exists() else None
        # ctop's SIGHUP: keepalived re-reads its config, weight 0 for rs1 (a poll, not a fixed
        # 3 s: the table is recorded either way and the test asserts on it)
        with contextlib.suppress(AssertionError):
            until(lambda: weights().get(RS1) == 0, timeout=30)
        out["after_ctop_reload"] = weights()
        # a restart rebuilds the table from the config: the control is a hand edit of rs2
        sh(f"ipvsadm -e -t {VIP2}:80 -r {RS2} -m -w 9")
        stop(proc)
        out["table_while_stopped"] = weights()
        proc = start_keepalived(conf, log)
        until(lambda: weights().get(RS2) == 2)
        time.sleep(3)  # three delay_loops: nothing puts rs1 back
        out["after_restart"] = weights()
        proc.send_signal(signal.SIGHUP)  # `systemctl reload keepalived`
        time.sleep(3)
        out["after_reload"] = weights()
        restored = ctl.restore("ipvs", SVC2, RS1, origin="cli")  # type: ignore[attr-defined]
        out["restore"] = {"ok": restored.ok, "message": restored.message,
                          "include_left": include.exists()}
        stop(proc)
        proc = start_keepalived(conf, log)
        until(lambda: weights().get(RS2) == 2)
        time.sleep(2)
        out["after_restore_restart"] = weights()
        ctl.journal.close()  # type: ignore[attr-defined]
    finally:
        stop(proc)
        log.close()
        out["log_tail"] = (WORK / "keepalived.log").read_text()[-2000:]
        sh(f"ipvsadm -D -t {VIP2}:80", check=False)  # keepalived normally removes it
    return out


def ld(cf: Path, command: str, check: bool = True) -> None:
    """`ldirectord CF COMMAND`; its output to a file: the daemon it forks would otherwise keep
    our pipes open and the call would never return."""
    sh(f"ldirectord {cf} {command} >> {WORK / 'ldirectord.out'} 2>&1 < /dev/null", check=check)


def stop_ldirectord(cf: Path) -> None:
    """What `ldirectord CF stop` does (SIGTERM to the daemon named in its pid file), without
    starting another perl for it (10-25 s under TCG); then wait until the daemon is gone."""
    try:
        pid = int(Path(f"/var/run/ldirectord.{cf.name}.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):  # not running (or never started)
        return

    def gone() -> bool:
        try:  # a zombie (state Z) nobody reaps is gone too
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    with contextlib.suppress(AssertionError):  # cleanup: the table is removed below anyway
        until(gone, timeout=60)


def ldirectord_check() -> dict[str, object]:
    out: dict[str, object] = {}
    cf = WORK / "ldirectord.cf"
    maint = WORK / "maint"
    maint.mkdir(exist_ok=True)
    cf.write_text(LDIRECTORD_CF.format(vip=VIP2, maint=maint, log=WORK / "ldirectord.log"))
    Path("/var/run").mkdir(exist_ok=True)
    ld(cf, "start")
    try:
        until(lambda: weights() == {RS1: 3, RS2: 2}, timeout=180)
        out["owners"] = [o.text() for o in detect()]
        ctl = controller(str(WORK / "ld.db"))
        drained = ctl.drain("ipvs", SVC2, RS1, origin="cli")  # type: ignore[attr-defined]
        out["drain"] = {"ok": drained.ok, "message": drained.message}
        out["maintenance_files"] = sorted(p.name for p in maint.iterdir())
        # the control: a hand drain of rs2 (no file) that a restart must undo
        sh(f"ipvsadm -e -t {VIP2}:80 -r {RS2} -m -w 0")
        log = WORK / "ldirectord.log"
        seen = len(log.read_text())
        ld(cf, "restart")
        # ldirectord starts every server quiesced and restores it at its first good check:
        # wait for rs2's (the control), then three checks more: the file keeps rs1 down
        until(lambda: "Restored real server: 10.1.2.2:80" in log.read_text()[seen:]
              and weights().get(RS2) == 2, timeout=180)
        time.sleep(3)
        out["after_restart"] = weights()
        seen = len(log.read_text())
        restored = ctl.restore("ipvs", SVC2, RS1, origin="cli")  # type: ignore[attr-defined]
        out["restore"] = {"ok": restored.ok, "message": restored.message,
                          "files_left": sorted(p.name for p in maint.iterdir())}
        time.sleep(3)  # ldirectord's checks see no file: it stays up
        out["after_restore"] = weights()
        # what ldirectord did meanwhile: it must not have set rs1 to 0 again
        out["log_after_restore"] = log.read_text()[seen:]
        ctl.journal.close()  # type: ignore[attr-defined]
    finally:
        stop_ldirectord(cf)
        log = WORK / "ldirectord.log"
        out["log_tail"] = log.read_text()[-1500:] if log.exists() else ""
        out["out_tail"] = (WORK / "ldirectord.out").read_text()[-1500:] if (
            WORK / "ldirectord.out").exists() else ""
        sh(f"ipvsadm -D -t {VIP2}:80", check=False)
    return out


def owner_checks(record: Callable[[str], Callable[[Callable[[], dict[str, object]]], None]],
                 save: Callable[[], None] = lambda: None,
                 only: tuple[str, ...] = ("keepalived", "ldirectord")) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    sh(f"ip addr add {VIP2}/32 dev lo", check=False)
    checks = {"keepalived": keepalived_check, "ldirectord": ldirectord_check}
    for name in only:
        record(f"owner_{name}")(checks[name])
        save()


def main(result_path: Path) -> int:
    import guest_checks  # the same topology as the full run

    def save() -> None:
        result_path.write_text(json.dumps(guest_checks.results, indent=1))

    try:
        guest_checks.setup_network()
        owner_checks(guest_checks.check, save, tuple(sys.argv[2:]) or ("keepalived", "ldirectord"))
    except Exception:
        guest_checks.results["setup_error"] = traceback.format_exc()
    result_path.write_text(json.dumps(guest_checks.results, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(Path(sys.argv[1])))
