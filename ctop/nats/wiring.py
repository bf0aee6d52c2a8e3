"""The engine's few lines for a director pair: the NATS link and the pair's sync, started
when the config has [nats] and a load balancer, and the VRRP roles' exchange when it has
[nats] and [pair] (nats-py imported only then)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ctop.config import DirectorConfig
from ctop.lb.service import LBService
from ctop.nats.link import NatsLink
from ctop.nats.pair import PairSync
from ctop.nats.roles import RoleShare
from ctop.pair.monitor import PairMonitor
from ctop.snapshot import EventView
from ctop.startup import setting_error


@dataclass
class Pair:
    link: NatsLink
    sync: PairSync

    def close(self) -> None:
        self.sync.close()
        self.link.close()


def start_pair(cfg: DirectorConfig, service: LBService,
               on_events: Callable[[Sequence[EventView]], None]) -> Pair:
    assert cfg.nats is not None
    try:
        import nats  # noqa: F401 - the client runs in the link's thread; fail here, clearly
    except ImportError:
        raise setting_error(cfg, "nats", "[nats]", "needs the NATS client: pip install "
                            "'ctop[nats]' (nats-py), or remove the [nats] section") from None
    link = NatsLink(cfg.nats, name=f"ctop {cfg.nats.director_name}").start()
    sync = PairSync(link, cfg.nats, cfg.cluster, apply=service.apply_peer, on_events=on_events,
                    lb_every=cfg.lb_every)
    service.pair = sync
    return Pair(link, sync)


def share_roles(cfg: DirectorConfig, monitor: PairMonitor, pair: Pair | None) -> RoleShare:
    """[pair] with [nats]: publish this director's VRRP roles and feed the peer's to the
    monitor, on the pair's link when there is one (a director without a balancer opens its
    own)."""
    assert cfg.nats is not None
    if pair is not None:
        return RoleShare(pair.link, cfg.nats, cfg.cluster, monitor)
    try:
        import nats  # noqa: F401
    except ImportError:
        raise setting_error(cfg, "nats", "[nats]", "needs the NATS client: pip install "
                            "'ctop[nats]' (nats-py), or remove the [nats] section") from None
    link = NatsLink(cfg.nats, name=f"ctop {cfg.nats.director_name} roles").start()
    return RoleShare(link, cfg.nats, cfg.cluster, monitor, own_link=True)
