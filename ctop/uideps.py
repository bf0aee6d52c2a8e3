"""The terminal UI's libraries (Textual, Rich) are the `director` extra: a node's install
(agentd and probes) leaves them out. Say what to install instead of failing with a traceback."""

from __future__ import annotations

import importlib.util

UI_LIBRARIES = ("textual", "rich")
INSTALL_HINT = (
    "install the director extra from ctop's source tree: pip install '.[director]' "
    "(pipx: pipx install --force '.[director]'); README, \"Installing\""
)


def missing_ui_libraries() -> list[str]:
    """The UI libraries this Python cannot import (found, not imported: importing Textual is
    slow and reads the colour settings once)."""
    return [name for name in UI_LIBRARIES if importlib.util.find_spec(name) is None]


def require_ui() -> None:
    """Exit with a clear message (status 1) when the UI cannot run in this install."""
    missing = missing_ui_libraries()
    if missing:
        raise SystemExit(
            f"ctop: the terminal UI needs {' and '.join(missing)}, which a node install "
            f"leaves out; {INSTALL_HINT}. agentd, `ctop probe`, `ctop serve`, `ctop status`, "
            "`ctop lb` and `ctop keys` run without them."
        )
