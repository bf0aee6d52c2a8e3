"""Groups of nodes and the monitoring items the director holds for each (`[groups.NAME]` in
ctop.toml): probes in agentd.toml's syntax and a watch list. Their version is a hash of the
content (agentd/push.py), pushed to the group's nodes by ctop/grouppush.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentd.push import MAX_PUSH_ITEMS, Push, digest, encode_push
from agentd.watch import WatchSpecError, parse_watches


@dataclass(frozen=True)
class GroupConfig:
    name: str
    probes: tuple[Any, ...] = ()  # as written: URL strings or tables (agentd.toml syntax)
    watch: tuple[str, ...] = ()
    version: str = ""  # the content hash

    @property
    def probe_names(self) -> tuple[str, ...]:
        from probes.spec import parse

        return tuple(parse(p).name for p in self.probes)


GROUP_KEYS = ("probes", "watch")


def parse_groups(table: Mapping[str, Any]) -> tuple[GroupConfig, ...]:
    """`[groups.NAME]` tables -> GroupConfigs; raises ValueError("NAME.key: problem")."""
    from probes.spec import ProbeSpecError, parse

    out = []
    for name, body in table.items():
        if not isinstance(body, dict):
            raise ValueError(f"{name}: expected a table [groups.{name}], got {body!r}")
        unknown = sorted(set(body) - set(GROUP_KEYS))
        if unknown:
            raise ValueError(f"{name}.{unknown[0]}: unknown key (known: {', '.join(GROUP_KEYS)})")
        probes = body.get("probes", [])
        if not isinstance(probes, list) or len(probes) > MAX_PUSH_ITEMS:
            raise ValueError(f"{name}.probes: expected a list of at most {MAX_PUSH_ITEMS} "
                             f"probe URLs or tables")
        names: list[str] = []
        for i, item in enumerate(probes):
            try:
                names.append(parse(item).name)
            except ProbeSpecError as e:
                raise ValueError(f"{name}.probes: probe {i + 1}: {e}") from None
        if len(set(names)) != len(names):
            raise ValueError(f"{name}.probes: probe names must be unique")
        watch = body.get("watch", [])
        if (not isinstance(watch, list) or len(watch) > MAX_PUSH_ITEMS
                or not all(isinstance(w, str) and w for w in watch)):
            raise ValueError(f"{name}.watch: expected a list of at most {MAX_PUSH_ITEMS} "
                             f"process names")
        try:  # as the agents parse it: a bad entry would be refused by every node (bad_watch)
            parse_watches(watch)
        except WatchSpecError as e:
            raise ValueError(f"{name}.watch: {e}") from None
        version = digest(probes, watch)
        try:  # the longest node id: it must fit one datagram for every node
            encode_push(b"k" * 32, Push("n" * 128, name, 2**63 - 1, version, 0.0,
                                        tuple(probes), tuple(watch)))
        except ValueError as e:
            raise ValueError(f"{name}.probes: {e}") from None
        out.append(GroupConfig(name, tuple(probes), tuple(watch), version))
    return tuple(out)
