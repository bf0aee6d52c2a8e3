"""The node detail's table of watched processes (agentd.toml `watch`, metric "watched")."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ctop.snapshot import NodeView
from ctop.tui.format import size


def watched_table(node: NodeView) -> Table | None:
    """None when the node's agent watches nothing."""
    rows = node.metrics.get("watched") or ()
    if not rows:
        return None
    table = Table(title="Watched processes", title_justify="left", expand=True, box=None,
                  header_style="bold")
    table.add_column("process", overflow="ellipsis", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("restarts", justify="right", no_wrap=True)
    table.add_column("cpu", justify="right")
    table.add_column("rss", justify="right")
    table.add_column("thr", justify="right")
    table.add_column("files", justify="right")
    for label, n, low, high, restarts, cpu, rss, threads, fds in rows:
        wrong = n < low or (high is not None and n > high)
        want = f"{low}+" if high is None else str(low) if low == high else f"{low}-{high}"
        shown = Text(f"{n}/{want}", "bold red" if wrong else "")
        table.add_row(label, shown, Text(str(restarts), "yellow" if restarts else ""),
                      f"{cpu:.1f}%", size(rss), str(threads), "—" if fds is None else str(fds))
    return table
