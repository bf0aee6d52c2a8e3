"""Hooks: what tells the outside world about alerts. Each [[hook]] table of ctop.toml runs a
command (the alert in CTOP_ALERT_* environment variables) or POSTs the alert as JSON to a
webhook, for the notification states it is `on`:

    [[hook]]
    command = "/usr/local/bin/page-oncall"
    on = ["firing", "repeat"]      # default: firing, repeat and resolved
    timeout = "10s"

    [[hook]]
    webhook = "https://chat.example/hooks/ctop"
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ctop.alerts import Notification
from ctop.parse import TableError, parse_duration

log = logging.getLogger(__name__)

STATES = ("firing", "repeat", "resolved")


class HookError(TableError):
    """A [[hook]] table is wrong; `key` names the key."""


@dataclass(frozen=True)
class Hook:
    command: str = ""  # run with the alert in CTOP_ALERT_* environment variables
    webhook: str = ""  # POST the alert as JSON
    timeout: float = 10.0
    states: frozenset[str] = frozenset(STATES)


def parse_hook(t: Mapping[str, Any]) -> Hook:
    """One [[hook]] table -> Hook. Raises HookError naming the offending key."""
    unknown = sorted(set(t) - {"command", "webhook", "timeout", "on"})
    if unknown:
        raise HookError(f"key '{unknown[0]}': unknown key", unknown[0])
    if bool(t.get("command")) == bool(t.get("webhook")):
        raise HookError("give exactly one of 'command' or 'webhook'")
    try:
        timeout = parse_duration(t.get("timeout", 10))
    except ValueError as e:
        raise HookError(f"key 'timeout': {e}", "timeout") from None
    states = t.get("on", list(STATES))
    if not isinstance(states, list) or not set(states) <= set(STATES):
        raise HookError(f"key 'on': expected a list of {', '.join(STATES)}", "on")
    return Hook(str(t.get("command", "")), str(t.get("webhook", "")), timeout,
                frozenset(states))


def parse_hooks(tables: Sequence[Mapping[str, Any]]) -> list[Hook]:
    hooks = []
    for i, t in enumerate(tables):
        try:
            hooks.append(parse_hook(t))
        except HookError as e:
            raise HookError(f"[[hook]] #{i + 1}: {e}", e.key) from None
    return hooks


def payload(note: Notification) -> dict[str, Any]:
    a = note.alert
    return {
        "state": note.state, "cluster": note.cluster, "time": note.ts, "rule": a.rule,
        "node": a.node_id, "severity": str(a.severity), "message": a.message,
        "since": a.since, "value": a.value, "key": a.key,
    }


class HookRunner:
    """Runs hooks as background tasks with timeouts; failures are logged, never raised."""

    def __init__(self, hooks: Sequence[Hook], max_concurrent: int = 8) -> None:
        self.hooks = list(hooks)
        self._sem = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.delivered = 0

    def notify(self, notes: Iterable[Notification]) -> None:
        for note in notes:
            for hook in self.hooks:
                if note.state in hook.states:
                    task = asyncio.get_running_loop().create_task(self._run(hook, note))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _run(self, hook: Hook, note: Notification) -> None:
        async with self._sem:
            try:
                if hook.command:
                    await self._command(hook, note)
                else:
                    await self._webhook(hook, note)
                self.delivered += 1
            except Exception as e:
                self.failures += 1
                what = hook.command or hook.webhook
                log.warning("alert hook %r failed: %s", what, e or type(e).__name__)

    async def _command(self, hook: Hook, note: Notification) -> None:
        env = dict(os.environ)
        for k, v in payload(note).items():
            env[f"CTOP_ALERT_{k.upper()}"] = "" if v is None else str(v)
        proc = await asyncio.create_subprocess_shell(
            hook.command, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), hook.timeout)
        except TimeoutError:
            os.killpg(proc.pid, 9)
            await proc.wait()
            raise RuntimeError(f"timed out after {hook.timeout:g} s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"exit {proc.returncode}: {err.decode(errors='replace')[:200]}")

    async def _webhook(self, hook: Hook, note: Notification) -> None:
        import httpx  # imported here: only directors with webhooks pay for it

        async with httpx.AsyncClient(timeout=hook.timeout) as client:
            r = await client.post(hook.webhook, content=json.dumps(payload(note)),
                                  headers={"content-type": "application/json"})
            r.raise_for_status()

    async def drain(self, timeout: float = 15.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
