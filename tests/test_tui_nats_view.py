"""`ctop --nats URL`'s screen: the groups a collector publishes in the table, and its nodes
shown `unknown` (not dead) when it is lost. Real nats-server, a real CollectorPublisher."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest

from ctop.nats.collector import CollectorPublisher
from ctop.nats.config import NatsConfig
from ctop.nats.link import NatsLink
from ctop.nats.view import NatsSource
from ctop.snapshot import Liveness, Snapshot
from ctop.tui.app import CtopApp
from tests.helpers.nats_servers import NatsServer
from tests.helpers.sample import sample_snapshot
from tests.helpers.screen import screen_text
from tests.helpers.tui_helpers import SIZE

pytest.importorskip("nats")


@contextmanager
def _collectors(nats_server: NatsServer,
                *clusters: str) -> Iterator[tuple[list[CollectorPublisher], NatsSource]]:
    """A publishing collector for each cluster (named col-<cluster>) and a view of them all."""
    links: list[NatsLink] = []
    pubs: list[CollectorPublisher] = []
    source = NatsSource(NatsConfig(servers=(nats_server.url,)))
    try:
        for cluster in clusters:
            cfg = NatsConfig(servers=(nats_server.url,), name=f"col-{cluster}",
                             role="collector")
            links.append(NatsLink(cfg).start())
            pubs.append(CollectorPublisher(links[-1], cfg, cluster))
        assert all(lk.wait_connected(10) for lk in links) and source.link.wait_connected(10)
        yield pubs, source
    finally:
        for p in pubs:
            p.close()
        source.close()
        for lk in links:
            lk.close()


async def _until_shown(source: NatsSource, pubs: list[CollectorPublisher], snap: Snapshot,
                       count: int) -> None:
    """Publish `snap` from each collector, tick after tick, until the view holds `count`
    nodes."""
    for _ in range(100):
        for p in pubs:
            p.offer(snap)
        await asyncio.sleep(0.05)
        if len(source.snapshot().nodes) == count:
            return
    raise AssertionError(f"the view shows {len(source.snapshot().nodes)} nodes, not {count}")


async def test_the_nats_view_shows_the_groups_and_a_lost_collectors_nodes_unknown(
        nats_server: NatsServer) -> None:
    snap = sample_snapshot(6, lb=False)
    snap = replace(snap, nodes=tuple(n._replace(liveness=Liveness.ALIVE) for n in snap.nodes))
    with _collectors(nats_server, "t") as (pubs, source):
        await _until_shown(source, pubs, snap, 6)
        app = CtopApp(source, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(1.2)
            text = "\n".join(screen_text(app))
            for n in snap.nodes:
                assert n.hostname in text or n.node_id in text, text
            assert "unknown" not in text
            pubs[0].close()  # the collector goes silent
            for _ in range(60):
                await pilot.pause(0.1)
                text = "\n".join(screen_text(app))
                if "unknown" in text:
                    break
            rows = [line for line in screen_text(app)
                    if any(n.node_id in line[:20] for n in snap.nodes)]
            assert len(rows) == 6, text
            assert all("unknown" in r and "dead" not in r for r in rows), text
            assert "collector col-t (t) lost" in text and "0 dead" in text
            assert "● 0 alive ● 0 suspect ● 0 dead ● 0 left ● 6 unknown" in text, text


async def test_ctx_in_the_command_palette_narrows_the_view_to_one_cluster(
        nats_server: NatsServer) -> None:
    snap = sample_snapshot(6, lb=False)
    with _collectors(nats_server, "east", "west") as (pubs, source):
        await _until_shown(source, pubs, snap, 12)
        assert {n.group.split("/")[0] for n in source.snapshot().nodes} == {"east", "west"}
        app = CtopApp(source, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            await pilot.press("colon")
            await pilot.pause(0.3)
            await pilot.press(*"ctx west")
            await pilot.pause(0.8)
            await pilot.press("enter")
            for _ in range(30):
                for p in pubs:
                    p.offer(snap)
                await pilot.pause(0.1)
                text = "\n".join(screen_text(app))
                if "ctop west " in text:
                    break
            assert source.context == "west"
            # one cluster now: its six nodes, its groups without the cluster's prefix
            assert "ctop west " in text and " 6 nodes" in text and "east" not in text, text


async def test_without_victoria_metrics_the_node_detail_says_where_the_history_is(
        nats_server: NatsServer) -> None:
    snap = sample_snapshot(3, lb=False, cluster="nohist")
    with _collectors(nats_server, "nohist") as (pubs, source):
        await _until_shown(source, pubs, snap, 3)
        app = CtopApp(source, view="table")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            await pilot.press("enter")
            await pilot.pause(0.5)
            await app.workers.wait_for_complete()
            await pilot.pause(0.2)
            text = "\n".join(screen_text(app))
            assert "no history in a NATS view: it is on the collector" in text, text
