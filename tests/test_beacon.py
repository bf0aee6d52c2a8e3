"""Liveness beacons on the director's receiver: real UDP into the real Receiver and model.

A beacon is accepted only for the current boot of a node the director has a fresh, verified
message of, with a sequence after everything of that boot it has seen; everything else is
dropped and counted by reason like any other datagram (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from agentd.beacon import BEACON_BYTES, Beacon, encode_beacon
from agentd.encoder import encode
from agentd.protocol import Header, Join, Leave, Reason, Rejected
from ctop.cluster import ClusterModel
from ctop.ingest.beacons import BeaconVerifier
from ctop.ingest.verifier import Verifier
from ctop.receiver import Receiver
from ctop.snapshot import Liveness

KEY = b"k" * 32
BOOT = 0x1234_5678_9ABC


class Director:
    """The real Receiver (beacon fast path on) feeding a real ClusterModel, on 127.0.0.1."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.model = ClusterModel("t")
        self.beacons: list[Beacon] = []

        def on_beacon(b: Beacon, source: str, now: float) -> None:
            self.beacons.append(b)
            self.model.beacon(b, now)

        self.receiver = Receiver(Verifier(KEY), lambda m, s, now: self.model.apply(m, now, s),
                                 "127.0.0.1", 0, tune_gc=False, on_beacon=on_beacon)
        loop.run_until_complete(self._open())
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.connect(("127.0.0.1", self.receiver.port))

    async def _open(self) -> None:
        self.receiver.open()

    def send(self, *datagrams: bytes) -> None:
        """Send, then run the loop until the receiver has read them all."""
        seen = self.receiver.accepted + sum(self.receiver.drops.values())
        for d in datagrams:
            self.out.send(d)
        deadline = time.monotonic() + 5
        while self.receiver.accepted + sum(self.receiver.drops.values()) < seen + len(datagrams):
            assert time.monotonic() < deadline, "the receiver did not read the datagrams"
            self.loop.run_until_complete(asyncio.sleep(0.005))

    def close(self) -> None:
        self.out.close()
        self.receiver.close()


@pytest.fixture
def director() -> Iterator[Director]:
    loop = asyncio.new_event_loop()
    d = Director(loop)
    yield d
    d.close()
    loop.close()


def join(seq: int, boot: int = BOOT, ts: float | None = None) -> bytes:
    header = Header("web1", boot, seq, time.time() if ts is None else ts)
    return encode(KEY, Join(header, "web1", ("10.0.0.1",), 4, 1 << 30, "t", 1.0))


def test_a_beacon_keeps_a_known_boot_alive_and_announces_its_gap(director: Director) -> None:
    director.send(join(1))
    director.send(encode_beacon(KEY, BOOT, 2, 0.25))
    assert director.beacons == [Beacon("web1", BOOT, 2, 0.25)]
    node = director.model.nodes["web1"]
    # Judged on the announced gap from now on: dead after 10.5 gaps of silence, not 5 reports.
    assert node.dead_s == pytest.approx(0.25 * director.model.liveness.beacon_dead_after)
    assert len(encode_beacon(KEY, BOOT, 2, 0.25)) == BEACON_BYTES


def test_forged_replayed_and_unknown_beacons_are_dropped_by_reason(director: Director) -> None:
    director.send(join(10))
    good = encode_beacon(KEY, BOOT, 11, 0.25)
    forged = encode_beacon(b"not the cluster key at all......", BOOT, 12, 0.25)
    flipped = bytearray(encode_beacon(KEY, BOOT, 12, 0.25))
    flipped[14] ^= 1  # the sequence, under the tag
    director.send(good, good)  # the second is a replay
    director.send(forged, bytes(flipped))
    director.send(encode_beacon(KEY, BOOT, 9, 0.25))  # before the join: a replay too
    director.send(encode_beacon(KEY, BOOT + 1, 12, 0.25))  # a boot no message announced
    director.send(good[:-1])  # cut short
    drops = director.receiver.drops
    assert drops == {"replay": 2, "bad_tag": 2, "unknown_boot": 1, "malformed": 1}, drops
    assert [b.seq for b in director.beacons] == [11]
    assert director.receiver.drops_by_source["127.0.0.1"] == 6


def test_a_new_boot_retires_the_old_boots_beacons(director: Director) -> None:
    director.send(join(5))
    old = encode_beacon(KEY, BOOT, 6, 0.25)
    director.send(join(1, boot=BOOT + 7))  # the agent restarted (newer timestamp)
    director.send(old, encode_beacon(KEY, BOOT + 7, 2, 0.25))
    assert director.receiver.drops == {"unknown_boot": 1}
    assert [b.boot for b in director.beacons] == [BOOT + 7]


def test_after_a_leave_no_beacon_of_that_boot_brings_the_node_back(director: Director) -> None:
    director.send(join(1))
    captured = encode_beacon(KEY, BOOT, 2, 0.25)  # seen on the wire before it arrived
    director.send(encode(KEY, Leave(Header("web1", BOOT, 3, time.time()), "SIGTERM")))
    director.send(captured)
    assert director.receiver.drops == {"replay": 1}
    assert director.model.nodes["web1"].liveness is Liveness.LEFT


def test_beacons_need_a_fresh_message_of_their_boot() -> None:
    # The boot's freshness comes from its timestamped messages: beacons alone cannot keep a
    # node alive past max_age after its last verified message.
    v = BeaconVerifier(KEY, max_age=30.0)
    v.note(Header("web1", BOOT, 1, 1000.0), now=1000.0)
    assert isinstance(v.verify(encode_beacon(KEY, BOOT, 2, 0.25), now=1029.0), Beacon)
    stale = v.verify(encode_beacon(KEY, BOOT, 3, 0.25), now=1031.0)
    assert isinstance(stale, Rejected) and stale.reason is Reason.STALE
    v.note(Header("web1", BOOT, 4, 1031.0), now=1031.0)
    assert isinstance(v.verify(encode_beacon(KEY, BOOT, 5, 0.25), now=1031.5), Beacon)


def test_the_32_bit_sequence_on_the_wire_extends_across_a_wrap() -> None:
    v = BeaconVerifier(KEY)
    v.note(Header("web1", BOOT, (1 << 32) - 2, 1.0), now=1.0)
    got = v.verify(encode_beacon(KEY, BOOT, (1 << 32) + 1, 0.25), now=1.0)
    assert isinstance(got, Beacon) and got.seq == (1 << 32) + 1
    again = v.verify(encode_beacon(KEY, BOOT, (1 << 32) + 1, 0.25), now=1.0)
    assert isinstance(again, Rejected) and again.reason is Reason.REPLAY


def test_without_a_beacon_handler_a_beacon_is_an_ordinary_drop() -> None:
    # An engine that does not take beacons (or an old director) counts them, nothing more.
    loop = asyncio.new_event_loop()
    try:
        d = Director(loop)
        d.receiver.on_beacon = None
        d.send(join(1), encode_beacon(KEY, BOOT, 2, 0.25))
        assert d.receiver.drops == {"bad_version": 1} and d.beacons == []
        d.close()
    finally:
        loop.close()
