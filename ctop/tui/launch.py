"""Starting the UI: on a source (a daemon's, fixed snapshots), or with the engine inside it.

`ctop`, `ctop --demo` and the screenshots start the app the same way: the colour option is
applied before Textual is imported (it reads the colour system once, at import).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from ctop.config import DirectorConfig
from ctop.demo import DemoCluster
from ctop.engine import Engine
from ctop.eventlog import log_to_events
from ctop.tui.colors import apply_color_option

if TYPE_CHECKING:
    from ctop.tui.app import CtopApp
    from ctop.tui.source import EngineLike


# How long a lone ESC is held in case an escape sequence follows (Textual's ESCDELAY, 100 ms
# by default): a sequence comes in one write; 50 ms covers a scheduling gap or a slow link
# (Textual waits that long between the bytes of a sequence too: ctop.tui.driver)
ESC_DELAY_MS = "50"


def make_app(source: EngineLike, readonly: bool, color: str) -> CtopApp:
    apply_color_option(color)  # before Textual is imported: it reads the colour system once
    os.environ.setdefault("ESCDELAY", ESC_DELAY_MS)  # (also read once; the operator's wins)
    from ctop.tui.app import CtopApp  # imported here, after the colour option (see above)

    return CtopApp(source, readonly=readonly, color=None if color == "auto" else color)


async def run_embedded(cfg: DirectorConfig, color: str) -> int:
    """The engine inside the UI: its warnings become events rather than text on the screen."""
    engine = Engine(cfg)
    log_to_events(engine.note)
    await engine.start()
    try:
        await make_app(engine, engine.readonly, color).run_async()
    finally:
        await engine.stop()
    return 0


def run_demo(nodes: int = 6, color: str = "auto", readonly: bool = False) -> int:
    """`ctop --demo`: a real small cluster on this machine, shown in the UI."""
    demo = DemoCluster(nodes=nodes)
    if not shutil.which("haproxy"):
        print("ctop demo: haproxy is not installed: load-balancer actions are off "
              "(./dev demo installs it)", file=sys.stderr)
    # A closed terminal (SIGHUP) must still stop the demo cleanly.
    signal.signal(signal.SIGHUP, _hang_up)
    try:
        demo.start()
        asyncio.run(run_embedded(replace(demo.config(), readonly=readonly), color))
    finally:
        demo.stop()
    return 0


def _hang_up(signum: int, frame: object) -> None:
    raise SystemExit(0)
