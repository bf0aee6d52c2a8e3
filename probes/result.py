"""The outcome of one check: what the UI, agentd and the CLI all consume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")
# Details end up in a single table cell; longer text is cut so one bad banner cannot wreck a layout.
MAX_DETAIL = 120


def clip(text: str, limit: int = MAX_DETAIL) -> str:
    """Single-line, printable, at most `limit` chars: banners and error texts arrive raw."""
    flat = " ".join(text.split())
    flat = "".join(ch if ch.isprintable() else "?" for ch in flat)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """status ok|warn|fail; latency_ms is None when no complete conversation took place."""

    status: Status
    latency_ms: float | None
    detail: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")
        object.__setattr__(self, "detail", clip(self.detail))
        if self.latency_ms is not None:
            object.__setattr__(self, "latency_ms", round(float(self.latency_ms), 3))

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def ok(detail: str, latency_ms: float | None) -> ProbeResult:
    return ProbeResult("ok", latency_ms, detail)


def warn(detail: str, latency_ms: float | None) -> ProbeResult:
    return ProbeResult("warn", latency_ms, detail)


def fail(detail: str, latency_ms: float | None = None) -> ProbeResult:
    return ProbeResult("fail", latency_ms, detail)


def worst(results: list[ProbeResult]) -> Status:
    """fail beats warn beats ok; an empty list is ok."""
    ranks = [STATUSES.index(r.status) for r in results]
    return STATUSES[max(ranks, default=0)]
