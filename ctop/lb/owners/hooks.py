"""The controller's after-change hooks that keep each table's owner in step, from [lb]."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ctop.lb.actions import Plan
from ctop.lb.base import Balancer
from ctop.lb.config import ConfigError, LBConfig
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.owners.haproxy_state import (
    HAProxyStateFile,
    StateConfigError,
    StateTarget,
    targets_from_config,
)
from ctop.lb.owners.ipvs_owners import IPVSOwners

Hook = Callable[[Plan], str]


def state_files(cfg: LBConfig, balancers: Mapping[str, Balancer]) -> list[HAProxyStateFile]:
    """One state-file keeper per [lb.haproxy] that names a state_file or its config."""
    out = []
    for i, h in enumerate(cfg.haproxy):
        at = ("haproxy", i)
        if h.state_file and h.config:
            raise ConfigError(f"[lb.haproxy] {h.name}: give state_file or config, not both", at)
        if h.state_file:
            targets: tuple[StateTarget, ...] = (StateTarget(Path(h.state_file), None),)
        elif h.config:
            try:
                targets = targets_from_config(h.config)
            except StateConfigError as exc:
                raise ConfigError(f"[lb.haproxy] {h.name}.config: {exc}", (*at, "config")) from exc
        else:
            continue
        be = balancers.get(h.name)
        if isinstance(be, HAProxyBalancer):
            out.append(HAProxyStateFile(be, targets))
    return out


def owner_hooks(cfg: LBConfig, balancers: Mapping[str, Balancer]
                ) -> tuple[list[Hook], list[Hook]]:
    """(before-change, after-change) hooks for the controller."""
    before: list[Hook] = []
    after: list[Hook] = [keeper.after_change for keeper in state_files(cfg, balancers)]
    if cfg.ipvs:
        owners = IPVSOwners(cfg.keepalived_dir)
        before.append(owners.before_change)
        after.append(owners.after_change)
    return before, after
