"""The engine's few lines for a director pair: the NATS link and the pair's sync, started
when the config has [nats] and a load balancer, and the VRRP roles' exchange when it has
[nats] and [pair] (nats-py imported only then)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ctop.config import DirectorConfig
from ctop.lb.service import LBService
from ctop.nats.collector import CollectorPublisher
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


@dataclass
class Collector:
    link: NatsLink
    publisher: CollectorPublisher
    own_link: bool  # False: the pair's link, closed with the pair

    def close(self) -> None:
        self.publisher.close()
        if self.own_link:
            self.link.close()


def _need_client(cfg: DirectorConfig) -> None:
    try:
        import nats  # noqa: F401 - the client runs in the link's thread; fail here, clearly
    except ImportError:
        raise setting_error(cfg, "nats", "[nats]", "needs the NATS client: pip install "
                            "'ctop[nats]' (nats-py), or remove the [nats] section") from None


def start_collector(cfg: DirectorConfig, link: NatsLink | None = None) -> Collector:
    """[nats] role = "collector": publish the groups' snapshots (ctop.nats.collector)."""
    assert cfg.nats is not None
    _need_client(cfg)
    own = link is None
    if link is None:
        link = NatsLink(cfg.nats, name=f"ctop collector {cfg.nats.director_name}").start()
    return Collector(link, CollectorPublisher(link, cfg.nats, cfg.cluster), own)


def start_pair(cfg: DirectorConfig, service: LBService,
               on_events: Callable[[Sequence[EventView]], None]) -> Pair:
    assert cfg.nats is not None
    _need_client(cfg)
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
