"""Node detail (enter on a node): history charts from the store over 15 min / 1 h / 24 h,
services, process counts, the node's events and its real-server entries with their actions."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from agentd.metrics import CHARTED
from ctop.lb_history import metric_name
from ctop.snapshot import EventView, NodeView, Snapshot
from ctop.tui.colors import Palette
from ctop.tui.format import age, count, rate, size
from ctop.tui.screens.lb_keys import LBKeys
from ctop.tui.widgets.chart import Chart
from ctop.tui.widgets.key_bar import KeyBar
from ctop.tui.widgets.lb_pane import LBPane, Target
from ctop.tui.widgets.node_detail_reads import Reads
from ctop.tui.widgets.watched import watched_table

# key -> (seconds, label). "1", the default, is live: a chart column is about a second, so a
# freshly started cluster fills it within a minute; the longer spans read the rollups.
RANGES = {
    "1": (120.0, "2 min"),
    "2": (900.0, "15 min"),
    "3": (3600.0, "1 h"),
    "4": (86400.0, "24 h"),
    "5": (7 * 86400.0, "7 days"),
    "6": (30 * 86400.0, "30 days"),
}
# seconds between chart refreshes per range
RELOAD_EVERY = {"1": 1.0, "2": 2.0, "3": 10.0, "4": 60.0, "5": 300.0, "6": 600.0}
# The history charts: the registry's charted metrics (agentd/metrics.py), in its order, each
# titled and its y axis labelled in the registry's unit; percentages run to 100.
BASE_METRICS = tuple(m.name for m in CHARTED)
MAX_LATENCY_CHARTS = 3
MIN_CHART_H = 6  # title, 3 rows of plot, x axis, and a blank line between charts
MAX_SHARE_CHARTS = 2  # the node's real servers: their share of the service's load over time


class NodeDetail(LBKeys, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", tooltip="back to the main screen"),
        # One footer entry for the six spans; the title line names the one shown.
        Binding("1", "range('1')", "History span", key_display="1-6",
                tooltip="chart span: " + ", ".join(label for _, label in RANGES.values())),
        *(Binding(k, f"range('{k}')", RANGES[k][1], show=False) for k in "23456"),
        *LBKeys.LB_BINDINGS,
    ]

    def __init__(self, node_id: str = "") -> None:
        super().__init__()
        self.node_id = node_id
        self.range = "1"
        self.services: tuple[str, ...] = ()
        self.servers: tuple[tuple[str, str, str], ...] = ()  # its real servers (balancer, ...)
        # the node's events as last read, and the cluster's events they were read at
        self._events: list[EventView] = []
        self._events_of: tuple[EventView, ...] | None = None
        # The app keeps one node detail (composed once) and opens it for a node at a time:
        # the next resume is an open (reset, watch, load) rather than a return from a dialog.
        self._opening = True
        self._watching = False
        self._loaded_at = 0.0
        self._reload: Timer | None = None
        self._reads = Reads(self._read_failed)
        self._by_key = False  # reading because of a key (open, span), not the clock
        self._history_seq = self._events_seq = 0  # only the latest read of each is shown
        self._shown: dict[str, object] = {}  # side panel -> (what, lines) shown; title, events

    def show_node(self, node_id: str) -> NodeDetail:
        """Open for `node_id` when next shown, as a new screen would: the 2-minute span."""
        self.node_id, self._opening = node_id, True
        return self

    def compose(self) -> ComposeResult:
        pal = self.app.palette  # type: ignore[attr-defined]
        yield Static(id="node-title")
        with Horizontal(id="detail-body"):
            with VerticalScroll(id="charts"):
                for k, m in enumerate(CHARTED):
                    yield Chart(m.chart, m.unit, top=100.0 if m.unit == "%" else None,
                                style=pal.series[k % len(pal.series)], id=f"c-{m.column}")
                for k in range(MAX_LATENCY_CHARTS):
                    yield Chart("", "ms", style=pal.series[k % len(pal.series)], id=f"c-svc{k}")
                for k in range(MAX_SHARE_CHARTS):
                    yield Chart("", "%", style=pal.series[(k + 1) % len(pal.series)],
                                id=f"c-share{k}")
            with Vertical(id="side"):
                yield Static(id="services")
                yield Static(id="facts")
                yield Static(id="top-procs")
                yield Static(id="watched")
                yield Static(id="node-events")
        yield LBPane(node_id=self.node_id, palette=pal, id="node-lb")
        yield KeyBar()

    def on_mount(self) -> None:
        note = getattr(self.app.source, "history_note", "")  # type: ignore[attr-defined]
        for chart in self.query(Chart) if note else ():  # no history in this source
            chart.empty = note
        for k in range(MAX_LATENCY_CHARTS):
            self.query_one(f"#c-svc{k}").display = False
        for k in range(MAX_SHARE_CHARTS):
            self.query_one(f"#c-share{k}").display = False
        # charts keep moving while shown; paused while the screen is off the stack
        self._reload = self.set_interval(1.0, self._reload_if_due, pause=True)

    def on_screen_resume(self) -> None:
        if not self._opening:  # back from a dialog over it: only the latest tick
            self.update_snapshot(self.app.snapshot)  # type: ignore[attr-defined]
            return
        self._opening, self._by_key = False, True
        self.range, self.services, self.servers = "1", (), ()
        self._events, self._events_of = [], None
        for chart in self.query(Chart):  # the last node's history is not this one's
            chart.set_points((), None)
        lb = self.query_one(LBPane)
        lb.for_node(self.node_id)
        lb.focus()
        self.app.source.watch(self.node_id)  # type: ignore[attr-defined]
        self._watching = True
        try:
            self.update_snapshot(self.app.snapshot)  # type: ignore[attr-defined]
            self.load_history()
        finally:
            self._by_key = False
        if self._reload is not None:
            self._reload.resume()

    def on_screen_suspend(self) -> None:
        if self in self.app.screen_stack:  # a dialog over it: it stays open underneath
            return
        self._close()

    def _close(self) -> None:
        """Off the stack (kept for the next node): stop watching and reloading."""
        self._opening = True
        if self._reload is not None:
            self._reload.pause()
        if self._watching:
            self._watching = False
            self.app.source.watch(None)  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        self._fit_charts()

    def _fit_charts(self) -> None:
        """Share the column's height among the charts shown; they scroll only when even the
        smallest chart would not fit (a scrollbar nobody could explain otherwise)."""
        box = self.query_one("#charts")
        charts = [c for c in box.query(Chart) if c.display]
        room = box.scrollable_content_region.height or box.size.height
        if not charts or room <= 0:
            return
        each = max(MIN_CHART_H, room // len(charts))
        for chart in charts:
            chart.styles.height = each - 1  # its margin is the blank line

    def on_unmount(self) -> None:
        self._close()
        self._reads.close()

    # -- data ----------------------------------------------------------------------------------

    def update_snapshot(self, snap: Snapshot) -> None:
        node = snap.node(self.node_id) or next(
            (n for n in snap.nodes if n.node_id == self.node_id), None
        )
        if node is None:
            self._put_text("#node-title", Text(f"{self.node_id}: no longer in the cluster"))
            return
        pal = self.app.palette  # type: ignore[attr-defined]
        # (one line, fixed: a new title needs no layout pass; the same one, no repaint: of an
        # idle node only its "seen" age moves, and only when it shows another second)
        self._put_text("#node-title", _title(node, snap, pal, RANGES[self.range][1]))
        # Each side panel is redrawn only when what it shows changed, and laid out again only
        # when its number of lines did: a layout pass of the screen each tick dropped the old
        # layout map into cyclic garbage (~80 objects a tick, tests/test_tui_garbage.py).
        services = tuple((s.name, s.status, s.latency_ms, s.detail) for s in node.services)
        self._put("#services", services, lambda: _services(node, pal), 2 + max(1, len(services)))
        rows = _fact_rows(node)
        self._put("#facts", rows, lambda: _facts(rows), len(rows) // 2)
        procs = tuple(map(tuple, node.metrics.get("top_procs") or ()))
        self._put("#top-procs", procs, lambda: _top_procs(node), 2 + max(1, len(procs)))
        watched = tuple(map(tuple, node.metrics.get("watched") or ()))
        box = self.query_one("#watched", Static)
        if box.display != bool(watched):
            box.display = bool(watched)
        if watched:  # the agent's watched processes (agentd.toml watch): title, header, rows
            self._put("#watched", watched, lambda: watched_table(node), 2 + len(watched))
        self.query_one(LBPane).show(snap)
        self.services = tuple(s.name for s in node.services)
        self.servers = tuple((svc.balancer, svc.key, rs.key) for svc in snap.lb
                             for rs in svc.servers if rs.node_id == self.node_id)
        if snap.events == self._events_of:  # no new event anywhere: only the ages move
            self._events_ready(self._events, snap.ts)
        else:  # a thread worker per tick was also cyclic garbage per tick
            self._events_of = snap.events
            self._show_events(snap.ts)

    def _put(self, where: str, shown: object, make: Callable[[], Table], lines: int) -> None:
        """Show `make()` in the static `where` unless `shown` is what it shows already."""
        if self._shown.get(where) == (shown, lines):
            return
        before = self._shown.get(where)
        self._shown[where] = (shown, lines)
        self.query_one(where, Static).update(make(), layout=before is None or before[1] != lines)

    def _show_events(self, now: float) -> None:
        node, source = self.node_id, self.app.source  # type: ignore[attr-defined]
        self._events_seq += 1
        seq = self._events_seq

        def read() -> list[EventView]:
            return source.node_events(node, 20)

        def done(events: list[EventView]) -> None:
            if seq == self._events_seq:  # (a newer read is on its way otherwise)
                with suppress(NoMatches):  # (landed while the app tears the screen down)
                    self._events_ready(events, now, node)

        self._read("events", read, done)

    def _events_ready(self, events: list[EventView], now: float, node: str | None = None) -> None:
        if node is not None and node != self.node_id:
            return  # read for the node shown before: this one's read is on its way
        self._events = events
        pal = self.app.palette  # type: ignore[attr-defined]
        text = Text("Events\n", pal.heading)
        if not events:
            text.append("none", pal.dim)
        for e in reversed(events):
            text.append(f"{age(e.ts, now):>5} ", pal.dim)
            text.append(f"{e.kind:<8}", pal.label)
            text.append(f"{e.message}\n", pal.value)
        self._put_text("#node-events", text)  # (its height: 1fr); the ages moved, or not

    def _put_text(self, where: str, text: Text) -> None:
        """`text` in the static `where` unless it shows that already (no layout pass)."""
        if self._shown.get(where) != text:
            self._shown[where] = text
            self.query_one(where, Static).update(text, layout=False)

    def action_range(self, key: str) -> None:
        self.range = key
        self._by_key = True
        try:
            self.update_snapshot(self.app.snapshot)  # type: ignore[attr-defined]
            self.load_history()
        finally:
            self._by_key = False

    def _reload_if_due(self) -> None:
        if time.monotonic() - self._loaded_at >= RELOAD_EVERY[self.range]:
            self.load_history()

    def load_history(self) -> None:
        """Read the charts' history off the event loop (the store query blocks for ms)."""
        self._loaded_at = time.monotonic()
        seconds = RANGES[self.range][0]
        end = self.app.source.snapshot().ts  # type: ignore[attr-defined]
        window = (end - seconds, end)
        svcs = self.services[:MAX_LATENCY_CHARTS]
        servers = self.servers[:MAX_SHARE_CHARTS]
        shares = [metric_name(*rs, what) for rs in servers for what in ("share", "weight")]
        metrics = (*BASE_METRICS, *(f"svc:{s}" for s in svcs), *shares)
        node, source = self.node_id, self.app.source  # type: ignore[attr-defined]
        self._history_seq += 1
        seq = self._history_seq

        def read() -> dict[str, list[tuple[float, float]]]:
            return source.history(node, metrics, seconds)

        def done(data: dict[str, list[tuple[float, float]]]) -> None:
            if seq == self._history_seq:  # (a newer read is on its way otherwise)
                with suppress(NoMatches):  # (landed while the app tears the screen down)
                    self._history_ready(data, svcs, window, servers, node)

        self._read("history", read, done)

    def _read(self, kind: str, read: Callable[[], Any], done: Callable[[Any], None]) -> None:
        if self._by_key:  # opened, or a span key: a worker, which tests and scripts await
            self._read_once(read, done)
        else:  # the clock's reloads and new events: the kept thread, no worker's garbage
            self._reads.submit(kind, read, done)

    @work(thread=True, group="node-detail-read")
    def _read_once(self, read: Callable[[], Any], done: Callable[[Any], None]) -> None:
        # (functions, not data: Textual names each worker after repr() of its arguments)
        self.app.call_from_thread(done, read())

    def _read_failed(self, exc: BaseException) -> None:
        self.notify(f"{self.node_id}: {exc}", severity="error")

    def _history_ready(
        self,
        data: dict[str, list[tuple[float, float]]],
        svcs: tuple[str, ...],
        window: tuple[float, float],
        servers: tuple[tuple[str, str, str], ...] = (),
        node: str | None = None,
    ) -> None:
        if node is not None and node != self.node_id:
            return  # the node shown before (a thread cannot be cancelled mid-read)
        for m in CHARTED:
            self.query_one(f"#c-{m.column}", Chart).set_points(data.get(m.name, []), window)
        shown = 0
        for k in range(MAX_LATENCY_CHARTS):
            chart = self.query_one(f"#c-svc{k}", Chart)
            shown += chart.display
            chart.display = k < len(svcs)
            if k < len(svcs):
                chart.title = f"{svcs[k]} latency"
                chart.set_points(data.get(f"svc:{svcs[k]}", []), window)
        for k in range(MAX_SHARE_CHARTS):
            chart = self.query_one(f"#c-share{k}", Chart)
            shown += chart.display
            chart.display = k < len(servers)
            if k < len(servers):
                _, service, server = servers[k]
                weight = data.get(metric_name(*servers[k], "weight"), [])
                asked = f", its weight asks {weight[-1][1]:.0f}%" if weight else ""
                chart.title = f"{service}/{server} share of load{asked}"
                chart.set_points(data.get(metric_name(*servers[k], "share"), []), window)
        if shown != (min(len(svcs), MAX_LATENCY_CHARTS) + min(len(servers), MAX_SHARE_CHARTS)):
            self._fit_charts()

    def lb_target(self) -> Target | None:
        return self.query_one(LBPane).target


def _title(node: NodeView, snap: Snapshot, pal: Palette, span: str) -> Text:
    t = Text()
    t.append(f" {node.node_id} ", pal.heading)
    t.append(f"● {node.liveness}", pal.liveness(node.liveness))
    host = f"   host {node.hostname}" if node.hostname != node.node_id else ""
    t.append(
        f"{host}   group {node.group}   {', '.join(node.addresses)}   {node.cores} cores "
        f"{size(node.mem_total)}   agent {node.version}"
        f"{f'   config {node.config}' if node.config else ''}"
        f"   seen {age(node.last_seen, snap.ts)} ago   history: {span} (1-6)",
        pal.label,
    )
    return t


def _services(node: NodeView, pal: Palette) -> Table:
    table = Table(
        title="Services", title_justify="left", expand=True, box=None, header_style="bold"
    )
    table.add_column("service")
    table.add_column("status")
    table.add_column("latency", justify="right")
    table.add_column("detail", overflow="ellipsis", no_wrap=True)
    for s in node.services:
        table.add_row(
            s.name,
            Text(s.status, pal.service(s.status)),
            "—" if s.latency_ms is None else f"{s.latency_ms:.1f} ms",
            s.detail,
        )
    if not node.services:
        table.add_row("none", "", "", "")
    return table


def _top_procs(node: NodeView) -> Table:
    """The node's busiest processes as its agent last measured them (metric top_procs)."""
    table = Table(
        title="Top processes", title_justify="left", expand=True, box=None, header_style="bold"
    )
    table.add_column("pid", justify="right")
    table.add_column("command", overflow="ellipsis", no_wrap=True)
    table.add_column("cpu", justify="right")
    table.add_column("rss", justify="right")
    procs = node.metrics.get("top_procs") or ()
    for name, pid, cpu, rss in procs:
        table.add_row(str(pid), name, f"{cpu:.1f}%", size(rss))
    if not procs:
        table.add_row("", Text("not reported by this agent", "dim"), "", "")
    return table


def _facts(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    table.add_column(style="dim")
    table.add_column()
    for k in range(0, len(rows), 2):
        table.add_row(*rows[k], *rows[k + 1])
    return table


def _fact_rows(node: NodeView) -> list[tuple[str, str]]:
    return [
        ("processes", count(node.procs)),
        ("threads", count(node.threads)),
        ("sessions", str(node.users)),
        ("load 1m", f"{node.load1:.2f}"),
        ("cpu", f"{node.cpu:.0f}%"),
        ("memory", f"{node.mem:.0f}%"),
        ("swap", f"{node.swap:.0f}%"),
        ("disk /", f"{node.disk_root:.0f}%"),
        ("net in", f"{rate(node.net_rx_bps)}/s"),
        ("net out", f"{rate(node.net_tx_bps)}/s"),
        ("tcp conns", count(node.conns)),
        ("restarts", str(node.restarts)),
        ("report loss", f"{node.loss:.0%}"),
        ("interval", f"{node.interval:g} s"),
    ]
