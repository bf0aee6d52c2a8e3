"""How many examples each property test (hypothesis) tries.

CI tries a share sized so that each fuzzer takes a few seconds on a loaded 2-core machine
(fresh random examples every run); the depth the tests were written with is one variable
away, for a change to the decoder or before a release:

    HYPOTHESIS_PROFILE=deep ./dev test tests/test_wire.py
"""

from __future__ import annotations

import os

DEEP = os.environ.get("HYPOTHESIS_PROFILE", "") == "deep"


def examples(ci: int, deep: int) -> int:
    """`deep` under HYPOTHESIS_PROFILE=deep, else `ci`."""
    return deep if DEEP else ci
