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
