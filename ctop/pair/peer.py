"""The peer director's role, from its own ctop: GET http://PEER/pair (its [prometheus] listen)
answers that ctop's PairView as JSON. One source of PairMonitor.feed_peer(); the NATS link
between the directors feeds the same method (ctop/nats/roles.py)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per ask of the peer


class PeerError(Exception):
    pass


def fetch_peer(client: httpx.Client, peer: str) -> dict[str, Any]:
    """The peer ctop's pair view (to_plain form); PeerError when it cannot answer."""
    url = peer if peer.startswith(("http://", "https://")) else f"http://{peer}"
    try:
        answer = client.get(url.rstrip("/") + "/pair")
        answer.raise_for_status()
        data = answer.json()
    except (httpx.HTTPError, ValueError) as e:
        raise PeerError(f"peer ctop {peer}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("instances"), list):
        raise PeerError(f"peer ctop {peer}: the answer is not a pair view")
    return data


def instance_roles(data: dict[str, Any]) -> dict[str, str]:
    """instance -> state of a peer's pair view."""
    return {str(i.get("name")): str(i.get("state")) for i in data["instances"]
            if isinstance(i, dict)}
