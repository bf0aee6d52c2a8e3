"""The controller's after-change hooks that keep each table's owner in step, from [lb]."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ctop.lb.base import Balancer
from ctop.lb.config import ConfigError, LBConfig
from ctop.lb.haproxy import HAProxyBalancer
from ctop.lb.owners.haproxy_state import (
    HAProxyStateFile,
    StateConfigError,
    StateTarget,
    targets_from_config,
)

AfterChange = Callable[[str], str]


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


def owner_hooks(cfg: LBConfig, balancers: Mapping[str, Balancer]) -> list[AfterChange]:
    return [keeper.after_change for keeper in state_files(cfg, balancers)]
