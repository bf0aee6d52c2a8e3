"""Header bar: the cluster in two lines, straight from the snapshot's totals."""

from __future__ import annotations

from datetime import datetime

from rich.style import Style
from rich.text import Text
from textual.events import Click
from textual.widgets import Static

from ctop.pair.view import BACKUP, MASTER, UNKNOWN, PairView
from ctop.snapshot import Snapshot
from ctop.tui.colors import RICH, Palette
from ctop.tui.format import count, rate


class ClusterHeader(Static):
    # two lines, cropped with an ellipsis on narrow terminals rather than wrapped away
    DEFAULT_CSS = """
    ClusterHeader { height: 2; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, palette: Palette = RICH, id: str | None = None) -> None:
        super().__init__(id=id)
        self.palette = palette
        self._shown: Text | None = None

    def show(self, snap: Snapshot, *, view: str = "", readonly: bool = False,
             loading: float | None = None) -> None:
        self._drops = bool(snap.drops)
        live = getattr(self.app, "live_source", None) is not None  # ctop --at has no live view
        text = render_header(snap, self.palette, view=view, readonly=readonly, live=live,
                             loading=loading)
        if text != self._shown:  # an idle cluster: nothing to repaint
            self._shown = text
            # two fixed lines: new text never changes the layout (a re-layout of the whole
            # screen, every tick, was most of an idle UI's cost)
            self.update(text, layout=False)

    def on_click(self, event: Click) -> None:
        # the drop counter is at the end of the second line: it opens the rejects view
        if getattr(self, "_drops", False) and event.y == 1:
            self.app.action_drops()  # type: ignore[attr-defined]


def render_header(
    snap: Snapshot, pal: Palette, *, view: str = "", readonly: bool = False, live: bool = True,
    loading: float | None = None,
) -> Text:
    t = snap.totals
    line = Text()
    if snap.past:  # first, and loud: nothing on this screen is happening now
        from ctop.past import describe

        line.append(f" PAST {describe(snap.ts)} ", pal.warn + Style(reverse=True))
    if loading is not None and loading != snap.ts:  # a step (T, ←/→) still being read
        line.append(f" loading {datetime.fromtimestamp(loading):%H:%M:%S}… ", pal.warn)
    if snap.past:
        line.append(" ←/→ 1 min, shift 10 min" + (", esc live " if live else " "), pal.dim)
    line.append("ctop ", pal.heading)
    line.append(snap.cluster, pal.group)
    line.append(f"  {t.nodes} nodes ", pal.label)
    for n, label, style in (
        (t.alive, "alive", pal.alive),
        (t.suspect, "suspect", pal.suspect),
        (t.dead, "dead", pal.dead),
        (t.left, "left", pal.left),
    ):
        line.append(f" ● {n} {label}", style)
    if t.unknown:  # a lost collector's nodes (--nats): shown only when there are some
        line.append(f" ● {t.unknown} unknown", pal.unknown)
    if snap.alerts:
        crit = sum(1 for a in snap.alerts if a.severity == "crit")
        line.append(f"   ▲ {len(snap.alerts)} alerts", pal.fail if crit else pal.warn)
    else:
        line.append("   no alerts", pal.dim)
    if snap.pair is not None:
        _pair(line, snap.pair, pal)
    if (readonly or snap.readonly) and not snap.past:
        line.append("   READ-ONLY", pal.warn)
    if snap.history_error:
        line.append(f"   {snap.history_error}", pal.fail)
    if view:
        line.append(f"   {view}", pal.dim)
    line.append("\n")
    line.append("cpu ", pal.label)
    line.append(f"{t.cpu_avg:.0f}%", pal.level(t.cpu_avg))
    line.append(" avg ", pal.dim)
    line.append(f"{t.cpu_max:.0f}%", pal.level(t.cpu_max))
    line.append(" max", pal.dim)
    line.append("   mem ", pal.label)
    line.append(f"{t.mem_avg:.0f}%", pal.level(t.mem_avg))
    line.append(" avg ", pal.dim)
    line.append(f"{t.mem_max:.0f}%", pal.level(t.mem_max))
    line.append(" max", pal.dim)
    line.append("   net ", pal.label)
    line.append(f"↓{rate(t.net_rx_bps)}/s ↑{rate(t.net_tx_bps)}/s", pal.value)
    line.append("   conns ", pal.label)
    line.append(count(t.conns), pal.value)
    line.append("   imbalance ", pal.label)
    line.append(f"{snap.imbalance:.2f}", pal.ratio(1 + snap.imbalance * 2))
    if snap.drops:
        total = sum(snap.drops.values())
        worst = ", ".join(
            f"{k} {v}" for k, v in sorted(snap.drops.items(), key=lambda kv: -kv[1])[:3]
        )
        line.append(f"   dropped {total} ({worst})", pal.warn)
    for d in snap.pair.sync_daemons if snap.pair is not None else ():
        line.append(f"   sync {d.role} {d.mcast_interface}/{d.syncid}", pal.dim)  # IPVS sync
    return line


def _pair(line: Text, pair: PairView, pal: Palette) -> None:
    """'   VRRP MASTER · peer BACKUP': this director's role and its peer's ([pair])."""
    both = pair.role == MASTER and pair.peer_role == MASTER
    line.append("   VRRP ", pal.label)
    for n, role in enumerate((pair.role, pair.peer_role)):
        if n:
            line.append(" · peer ", pal.label)
        style = (pal.fail if both else pal.alive if role == MASTER else
                 pal.value if role == BACKUP else pal.dim if role == UNKNOWN else pal.fail)
        line.append(role, style)
