"""Several receiver processes (`[receive] workers`, ctop/ingest/workers.py): real UDP from many
source ports, real worker processes, the real engine; agentd processes where liveness counts."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import pytest_asyncio

from agentd.protocol import Join
from ctop.config import LivenessConfig
from tests.helpers.engine_helpers import make_engine, start_agent, until
from tests.helpers.serve_helpers import Sender


def _socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


def _node_seqs(engine, node: str) -> list[int]:
    return list(engine.model.nodes[node].seqs)


@pytest_asyncio.fixture(loop_scope="function")
async def engine(tmp_path):
    e = make_engine(tmp_path, receive_workers=2)
    await e.start()
    yield e
    await e.stop()


async def test_distinct_nodes_from_many_ports_arrive_once_each_in_order(engine):
    """300 nodes, each from its own source port: the kernel spreads them over both workers;
    every join and report is applied once, each node's sequence complete and in order."""
    nodes = [(Sender(f"n{i:03d}"), _socket()) for i in range(300)]
    addr = ("127.0.0.1", engine.port)
    for sender, sock in nodes:
        sock.sendto(sender.join(), addr)
    for _ in range(5):
        for sender, sock in nodes:
            sock.sendto(sender.report(interval=1.0), addr)
    total = 300 * 6
    await until(lambda: engine.model.received >= total, timeout=20)
    await _settle(engine)
    assert engine.model.received == total
    assert engine.receiver.accepted == total
    assert not engine.receiver.drops
    for sender, _ in nodes:
        assert _node_seqs(engine, sender.node_id) == [1, 2, 3, 4, 5, 6]
    read = [w["datagrams"] for w in engine.workers.status()]
    assert sum(read) == total and all(read), read  # both workers took a share
    for _, sock in nodes:
        sock.close()


async def _settle(engine, quiet: float = 0.3) -> None:
    """Wait until nothing more arrives for `quiet` seconds (frames come every 50 ms)."""
    last = -1
    while last != engine.model.received:
        last = engine.model.received
        await __import__("asyncio").sleep(quiet)
