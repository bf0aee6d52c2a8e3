"""`ctop groups`: the groups the director knows, their pushed configuration (version, probes,
watch list) and their nodes with the version each runs (ctop/grouppush.py)."""

from __future__ import annotations

import json
import sys
from typing import Any

from ctop.config import DirectorConfig


def groups_text(data: dict[str, Any]) -> str:
    if not data["groups"]:
        return "no groups: no [groups.NAME] in ctop.toml and no node announced a group"
    out = [] if data["push"] else ["configuration push is off (no push_master_key_file)"]
    nodes = data["nodes"]
    for g in data["groups"]:
        head = (f"group {g['name']}: version {g['version']}, {g['current']}/{len(g['nodes'])} "
                f"nodes current" if g["configured"] else
                f"group {g['name']}: no configuration in ctop.toml, {len(g['nodes'])} nodes")
        out.append(head)
        if g["configured"]:
            out.append(f"  probes: {', '.join(g['probes']) or '-'}")
            out.append(f"  watch:  {', '.join(g['watch']) or '-'}")
        for n in g["nodes"]:
            c = nodes[n]
            running = "old agent" if c["running"] == "-" else c["running"] or "none"
            state = "current" if c["current"] else "NOT CURRENT"
            refused = f", refused {c['refused']} push(es)" if c["refused"] else ""
            out.append(f"  {n:<24} runs {running:<12} {state}{refused}")
    return "\n".join(out)


def groups_command(cfg: DirectorConfig, *, as_json: bool) -> int:
    from ctop.control.client import ControlError, ask

    try:
        data = ask(cfg.control_socket, "groups")
    except ControlError as e:
        print(f"ctop: {e}", file=sys.stderr)
        return 3
    if "error" in data:
        print(f"ctop: {data['error']}", file=sys.stderr)
        return 3
    if as_json:
        json.dump(data, sys.stdout, indent=1)
        print()
    else:
        print(groups_text(data))
    return 0
