"""The control socket's framing, shared by `ctop serve` (ctop.control.server) and its clients
(ctop.control.client): one request line each way in, one length-prefixed msgpack answer out.

Requests: `hello`; `status` or `snapshot` -> the plain snapshot (`ctop.codec.to_plain`, every
node's metrics); `ui [NODE]` -> the compact one an attached UI polls (`ctop.codec.pack_compact`:
nodes as rows, raw metrics only for NODE, the node detail on screen); `ui2 JSON` -> only what
changed since the snapshot the UI holds (`ctop.control.delta`, wire 2); `plan JSON` -> what a
load-balancer action would do; `action JSON` -> the daemon runs the change
(`ctop.lb.request.ActionRequest`) and answers its result; `conns JSON` -> one real server's
connections; `silence JSON` -> add, remove or list silences ({"op": "add" | "rm" | "ls", …},
ctop.silences.silence_request; the author is the caller). An error is answered as
{"error": text}.
"""

from __future__ import annotations

import asyncio
import struct

LENGTH = struct.Struct("!I")  # the answer's length, before its msgpack bytes
MAX_REQUEST = 4096  # bytes of one request line; longer ones are refused, not read on
ACTION_TIMEOUT = 60.0  # an action may wait for another one on the same balancer


class ControlError(Exception):
    pass


async def read_request(reader: asyncio.StreamReader, timeout: float = 5) -> str | None:
    """One request line (the last may lack its newline), or None if it is longer than
    MAX_REQUEST, not UTF-8, or empty."""
    try:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout)
        except asyncio.IncompleteReadError as e:  # the client closed after its request
            line = e.partial
        return line.decode().strip() or None
    except (asyncio.LimitOverrunError, ValueError):
        return None  # ValueError: UnicodeDecodeError, or a line past the reader's limit
