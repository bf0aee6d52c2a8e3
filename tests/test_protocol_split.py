"""The protocol in one place, both sides apart: the message format (agentd/protocol.py) is
what the agent's encoder writes, and the agent's side imports nothing of the director's."""

from __future__ import annotations

import subprocess
import sys
import time

import msgpack

from agentd.encoder import encode
from agentd.metrics import METRICS, Metric
from agentd.protocol import (
    BODY_KEYS,
    HEADER_BYTES,
    HEADER_KEYS,
    KIND_JOIN,
    KIND_LEAVE,
    KIND_REPORT,
    TAG_BYTES,
    ConfigVersion,
    Header,
    Join,
    Leave,
    ProbeInfo,
    Report,
    ServiceStatus,
)


def test_the_agent_and_its_wire_format_load_without_the_director():
    code = ("import sys, agentd.main, agentd.daemon, agentd.encoder, agentd.protocol, "
            "agentd.metrics, agentd.keys, agentd.beacon; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ctop'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_encoder_writes_the_keys_the_message_format_declares_in_its_order():
    header = Header("n1", 1, 1, time.time())
    full = {
        KIND_JOIN: Join(header, "h", ("10.0.0.1",), 2, 1 << 30, "1", 1.0, "g",
                        (ProbeInfo("web", "http", 80, 10.0, "/health"),),
                        ConfigVersion(7, "612bad29f5fe", 1)),
        KIND_REPORT: Report(header, 1.0, "g", {m.name: _sample_value(m) for m in METRICS},
                            (ServiceStatus("web", "fail", 1.5, "refused", 3),)),
        KIND_LEAVE: Leave(header, "SIGTERM"),
    }
    for kind, msg in full.items():
        body = msgpack.unpackb(encode(b"k" * 32, msg)[HEADER_BYTES:-TAG_BYTES])
        assert tuple(body) == HEADER_KEYS + BODY_KEYS[kind], kind
    metric_keys = set(msgpack.unpackb(
        encode(b"k" * 32, full[KIND_REPORT])[HEADER_BYTES:-TAG_BYTES])["m"])
    assert metric_keys == {m.key for m in METRICS}


def _sample_value(m: Metric) -> object:
    return {"num": 1, "list": [1, 2], "map": {"eth0": [1, 2, 3, 4]},
            "procs": [("init", 1, 0.5, 4096)],
            "watch": [("nginx", 2, 1, None, 0, 0.5, 4096, 3, 12)],
            "arp": [("all", 0, 1, 2, []), ("lo", 1, 0, 0, ["10.0.0.100"])]}[m.kind]

