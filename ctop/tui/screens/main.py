"""Main screen: header, nodes (grid or table), load-balancer pane and alerts pane."""

from __future__ import annotations

import time
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input

from ctop.snapshot import Snapshot
from ctop.tui.arrange import SORTS, Arrangement, Arranger
from ctop.tui.screens.lb_keys import LBKeys
from ctop.tui.widgets.alerts_pane import AlertsPane
from ctop.tui.widgets.filter_box import FilterBox
from ctop.tui.widgets.header import ClusterHeader
from ctop.tui.widgets.key_bar import KeyBar
from ctop.tui.widgets.lb_pane import WIDTH as lb_columns_width
from ctop.tui.widgets.lb_pane import LBPane, Target
from ctop.tui.widgets.node_grid import fits
from ctop.tui.widgets.node_list import NodeList

NARROW = 120  # columns
ALERTS_MIN_W = 50  # the alerts pane's narrowest; a wider screen gives it what the LB can spare
LB_SHARE = 0.6  # of a wide screen for the load-balancer pane (its columns grow into it)
# Filtering re-arranges every node; when the last re-arrangement took longer than this it
# waits for a pause in typing, so keys never queue up behind re-arrangements nobody will see.
# (At 10,000 nodes one takes a few ms, so each key shows its result at once.)
DEBOUNCE_ABOVE_S = 0.03
DEBOUNCE_S = 0.15


def lb_width() -> int:
    """The LB pane's columns at their narrowest, with its scrollbar."""
    return lb_columns_width + 1


class MainScreen(LBKeys, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "toggle_view", "Grid/table", tooltip="nodes as cards (grid) or rows (table)"),
        Binding("s", "cycle_sort", "Sort",
                tooltip="sort by name, cpu, memory, connections, ratio, state"),
        Binding("g", "toggle_group", "Group", tooltip="group by node group on / off"),
        Binding("slash", "filter", "Filter", key_display="/",
                tooltip="filter by name, id, group, state or address (enter keeps, esc clears)"),
        Binding("a", "app.alerts", "Alerts", tooltip="alerts and events screen"),
        Binding("x", "app.drops", "Rejects", show=False,
                tooltip="rejected datagrams by reason and sender (or click the header)"),
        # the whole screen as it was (from the history database): ←/→ scrub, esc back to live.
        # Out of the footer (it would push Help off at 160 columns); listed in `?`.
        Binding("T", "app.time_travel", "Look back in time", show=False,
                tooltip="look back in time: the whole screen as it was (←/→ scrub, esc live)"),
        # out of the footer (it would push Help off at 160 columns); listed in `?`
        Binding("S", "silence", "Silence", show=False,
                tooltip="silence: the selected node, or the selected alert's rule on its node"),
        *LBKeys.LB_BINDINGS,
    ]

    def __init__(self, view: str | None = None) -> None:
        super().__init__()
        self.view = view  # "grid" | "table"; None = decide on the first snapshot
        self.sort = "name"
        self.grouped = True
        self.filter_text = ""
        self.arr: Arrangement | None = None
        self.snap: Snapshot | None = None
        self.arranger = Arranger()
        self._filter_timer: Timer | None = None
        self._arrange_s = 0.0  # wall time of the last re-arrangement

    def compose(self) -> ComposeResult:
        pal = self.app.palette  # type: ignore[attr-defined]
        yield ClusterHeader(palette=pal, id="header")
        yield NodeList(mode=self.view or "table", palette=pal, id="nodes")
        with Horizontal(id="bottom"):
            yield LBPane(palette=pal, id="lb")
            yield AlertsPane(palette=pal, id="alerts")
        yield FilterBox(
            placeholder="filter: name, group, state or address (enter keeps, esc clears)",
            id="filter",
        )
        yield KeyBar()

    def on_resize(self) -> None:
        self._fit_bottom(self.size.width)

    def _fit_bottom(self, width: int) -> None:
        """Below 120 columns the alerts pane would squeeze the load balancer to its names:
        hide it (the header counts firing alerts and `a` opens the alerts screen). Wider, the
        load balancer takes what its columns need (up to 60 %), the alerts pane the rest."""
        alerts = self.query_one("#alerts")
        alerts.display = width >= NARROW
        lb = max(lb_width(), round(width * LB_SHARE))
        alerts.styles.width = max(ALERTS_MIN_W, width - lb)

    def on_mount(self) -> None:
        self._fit_bottom(self.app.size.width)
        self.query_one("#filter").display = False
        self.nodes.focus()

    @property
    def nodes(self) -> NodeList:
        return self.query_one("#nodes", NodeList)

    # -- data ----------------------------------------------------------------------------------

    def update_snapshot(self, snap: Snapshot) -> None:
        self.snap = snap
        if self.view is None:
            size = self.nodes.size
            self.view = (
                "grid"
                if fits(len(snap.nodes), len(snap.groups), size.width, size.height) and size.height
                else "table"
            )
            self.nodes.mode = self.view  # no arrangement yet: nothing to lay out again
        self.rearrange()
        self.query_one(LBPane).show(snap)
        self.query_one(AlertsPane).show(snap, self.app.local_events)  # type: ignore[attr-defined]

    def rearrange(self) -> None:
        """Filter/sort/group once; only the visible node widget gets the result."""
        if self.snap is None:
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        started = time.perf_counter()
        self.arr = self.arranger.arrange(
            self.snap, filter_text=self.filter_text, sort=self.sort, grouped=self.grouped
        )
        nodes = self.nodes
        nodes.sort = self.sort
        nodes.show(self.snap, self.arr)
        self._arrange_s = time.perf_counter() - started
        self.show_header()

    def show_header(self) -> None:
        if self.snap is None or self.arr is None:
            return
        shown = len(self.arr.nodes)
        parts = [f"{self.view}", f"sort {self.sort}", "grouped" if self.grouped else "ungrouped"]
        if self.filter_text:
            parts.append(f"filter “{self.filter_text}” {shown}/{len(self.snap.nodes)}")
        self.query_one(ClusterHeader).show(
            self.snap, view=" · ".join(parts), readonly=self.app.readonly,  # type: ignore[attr-defined]
            loading=getattr(self.app, "loading", None))

    # -- keys ----------------------------------------------------------------------------------

    def action_toggle_view(self) -> None:
        # Same widget, same arrangement: only the lines change (no focus move, no re-sort).
        self.view = "table" if self.view == "grid" else "grid"
        self.nodes.set_mode(self.view)
        self.show_header()

    def action_cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.rearrange()  # the header and the column's ▼ say what the order is
        self.nodes.select(0)

    def action_toggle_group(self) -> None:
        self.grouped = not self.grouped
        self.rearrange()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter" or event.value == self.filter_text:
            return  # (esc already cleared it)
        self.filter_text = event.value
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        if self.snap is not None and self._arrange_s > DEBOUNCE_ABOVE_S:
            self._filter_timer = self.set_timer(DEBOUNCE_S, self.rearrange)
        else:
            self.rearrange()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if self._filter_timer is not None:  # enter: show the result now
                self.rearrange()
            event.input.display = bool(event.value)
            self.nodes.focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus or self.filter_text:
            box.value = ""
            box.display = False
            self.filter_text = ""
            self.rearrange()
            self.nodes.focus()

    @on(NodeList.Open)
    @on(LBPane.Open)
    def _open(self, event: NodeList.Open | LBPane.Open) -> None:
        self.app.open_node(event.node_id)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        if self.snap is not None:  # back from another screen: show the latest tick at once
            self.update_snapshot(self.app.snapshot)  # type: ignore[attr-defined]

    def action_silence(self) -> None:
        """`S`: in the alerts pane the selected alert's rule on its node, else the node."""
        pane = self.query_one(AlertsPane)
        alert = pane.selected if pane.has_focus else None
        if alert is not None and alert.node_id:
            self.app.silence_request(alert.node_id, alert.rule)  # type: ignore[attr-defined]
            return
        if alert is not None:
            self.app.notify("a cluster-wide alert: silence its rule with ctop silence add "
                            f"--rule {alert.rule}", severity="warning")
            return
        node = self.nodes.selected
        if node is None:
            self.app.notify("select a node or an alert to silence", severity="warning")
            return
        self.app.silence_request(node.node_id)  # type: ignore[attr-defined]

    def lb_target(self) -> Target | None:
        lb = self.query_one(LBPane)
        if lb.has_focus or self.arr is None:
            return lb.target
        node = self.nodes.selected
        if node is None:
            return None
        entries = self.arr.servers.get(node.node_id, ())
        if not entries:
            return None
        balancer, service, rs = entries[0]
        return Target(balancer, service, rs)
