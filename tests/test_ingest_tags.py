"""The receiver's HMAC with precomputed pads (ctop/ingest/tags.py) is exactly HMAC-SHA256:
a datagram it accepts is one `hmac.digest` accepts, for every key length the config allows."""

from __future__ import annotations

import hmac
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctop.ingest.tags import Tagger


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=1200))
def test_tags_are_hmac_sha256(key: bytes, msg: bytes) -> None:
    assert Tagger(key).digest(msg) == hmac.digest(key, msg, "sha256")


@pytest.mark.parametrize("length", [1, 32, 63, 64, 65, 128])
def test_one_tagger_tags_many_messages_like_hmac(length: int) -> None:
    key = os.urandom(length)
    tagger = Tagger(key)
    for msg in (b"", b"CT\x01" + os.urandom(440), os.urandom(1200), b"CT\x01"):
        assert tagger.digest(msg) == hmac.digest(key, msg, "sha256")  # no state carried over


def test_forged_node_ids_do_not_fill_the_receivers_key_cache() -> None:
    """Per-node keys: datagrams naming invented nodes, signed with a wrong key, are refused and
    leave no precomputed key behind (each kept key costs two hash states; 100,000 forged ids
    would have cost ~100 MB in the engine and every receiver worker: found in review); a
    node's genuine datagram is accepted and its key kept."""
    from agentd.keys import node_key
    from agentd.protocol import Rejected
    from ctop.ingest.verifier import Verifier
    from tests.helpers.serve_helpers import Sender

    master = os.urandom(32)
    verifier = Verifier(b"", master=master)
    for i in range(300):
        refused = verifier.verify(Sender(f"forged{i}", key=os.urandom(32)).join())
        assert isinstance(refused, Rejected) and str(refused.reason) == "bad_tag"
    assert len(verifier._taggers) == 0
    accepted = verifier.verify(Sender("web-1", key=node_key(master, "web-1")).join())
    assert not isinstance(accepted, Rejected), accepted
    assert len(verifier._taggers) == 1
