"""A balancer's name is `balancer` in Python but "backend" in plain maps (the control socket,
`ctop lb --json`): attached UIs, scripts and older peers read and send that key."""

from __future__ import annotations

from typing import Any

PLAIN_KEY = "backend"
FIELD = "balancer"


def to_plain_keys(fields: dict[str, Any]) -> dict[str, Any]:
    """The dataclass's fields with `balancer` under its plain key, in the same order."""
    return {PLAIN_KEY if k == FIELD else k: v for k, v in fields.items()}


def from_plain_keys(plain: dict[str, Any]) -> dict[str, Any]:
    """A plain map with its "backend" key back under the field's name."""
    return {FIELD if k == PLAIN_KEY else k: v for k, v in plain.items()}
