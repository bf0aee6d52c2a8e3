"""Balancers and controller from config. No balancer configured = monitoring only."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ctop.config import default_database
from ctop.lb.actions import LBController
from ctop.lb.automation import AutoQuiescer, policy_lookup
from ctop.lb.base import Balancer
from ctop.lb.config import ConfigError, LBConfig
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.journal import Journal
from ctop.lb.limits import LBLimits
from ctop.lb.lock import SharedLock, lock_path
from ctop.lb.owners.describe import owners_line
from ctop.lb.owners.hooks import owner_hooks, state_files
from ctop.lb.service import EventSink, LBService, ViewsHook
from ctop.snapshot import Snapshot

MONITORING_ONLY = "monitoring only: no load balancer configured ([lb.haproxy] or [lb.ipvs])"


def default_db_path() -> Path:
    """The director's database ($CTOP_DB, else /var/lib/ctop/ctop.db as root, else
    $XDG_DATA_HOME/ctop/ctop.db): the CLI shares the journal with `ctop serve`."""
    return Path(default_database())


def build_balancers(cfg: LBConfig) -> dict[str, Balancer]:
    balancers: dict[str, Balancer] = {}
    for h in cfg.haproxy:
        balancers[h.name] = HAProxyBalancer(h.socket, timeout=h.timeout, name=h.name)
    if cfg.ipvs:
        try:  # imported lazily: hosts without IPVS never load it
            from ctop.lb.ipvs import IPVSBalancer
        except ImportError as exc:
            raise ConfigError(
                f"[lb.ipvs] is enabled but the IPVS driver is missing: {exc}"
            ) from exc
        balancers["ipvs"] = (
            IPVSBalancer(ipvsadm=cfg.ipvsadm) if cfg.ipvsadm != "ipvsadm" else IPVSBalancer()
        )
    return balancers


def build_controller(
    cfg: LBConfig, db_path: str | os.PathLike[str] | None = None, *, readonly: bool | None = None
) -> LBController:
    """The controller the engine, UI and CLI share; readonly=None takes [lb].readonly.

    Its changes hold an flock next to the database, so every process acting on these balancers
    (the daemon, `ctop lb` without one) takes turns."""
    path = db_path if db_path is not None else default_db_path()
    balancers = build_balancers(cfg)
    before, after = owner_hooks(cfg, balancers)  # first: a config error opens nothing
    controller = LBController(
        balancers,
        Journal(path),
        readonly=cfg.readonly if readonly is None else readonly,
        lock=SharedLock(lock_path(path)),
    )
    controller.before_change += before  # keepalived, ldirectord: refused if they'd undo it
    controller.after_change += after  # state, include and maintenance files
    return controller


def build_quiescer(cfg: LBConfig, controller: LBController) -> AutoQuiescer | None:
    """None when no service opted in to auto-quiesce."""
    if not any(p.enabled for p in cfg.automation.values()):
        return None
    return AutoQuiescer(controller, policy_lookup(cfg.automation))


def status_line(cfg: LBConfig, readonly: bool | None = None) -> str:
    """What the UI says about load-balancer control (readonly: the effective value)."""
    if cfg.monitoring_only:
        return MONITORING_ONLY
    parts = [f"{h.name} ({h.socket})" for h in cfg.haproxy] + (["ipvs"] if cfg.ipvs else [])
    mode = "read-only" if (cfg.readonly if readonly is None else readonly) else "actions enabled"
    return f"load balancers: {', '.join(parts)}; {mode}"


def build_service(
    cfg: LBConfig,
    db_path: str | os.PathLike[str] | None,
    snapshot: Callable[[], Snapshot],
    *,
    readonly: bool,
    limits: LBLimits,
    on_events: EventSink,
    controller: LBController | None = None,
    history: ViewsHook | None = None,
) -> LBService | None:
    """The director's load-balancer service (None: monitoring only). `readonly` is the
    effective value: automation then does not even try (the controller would refuse it)."""
    if controller is None:
        if cfg.monitoring_only:
            return None
        controller = build_controller(cfg, db_path, readonly=readonly)
    if readonly:
        controller.readonly = True
    controller.limits = limits  # guards and what-if: quorum and CPU thresholds
    quiescer = None if readonly else build_quiescer(cfg, controller)
    service = LBService(controller, snapshot, cfg, quiescer=quiescer, readonly=readonly,
                        on_events=on_events, history=history)
    keepers = state_files(cfg, controller.balancers)
    service.describe_owners = lambda: owners_line(cfg.ipvs, keepers)
    return service
