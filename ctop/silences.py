"""Silences: an operator's "I know, stop paging" for a node, a group or an alert rule.

A silence matches alerts by node, group and/or rule (each given one must match), lasts until it
expires or is removed, and always has an author (the unix user: the daemon takes it from the
caller's socket credentials, like load-balancer actions) and a reason. Silenced alerts still
fire and show (dimmed, with who silenced them and until when); only the hooks are not run
(ctop.mute). Every silence stays in the `silences` table of the history database after it
ends: who added it, who removed it and when is the audit (`ctop silence ls --all`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ctop.lb.journal import Actor, claimed_sudo_user, current_user
from ctop.parse import parse_duration

SCHEMA = """
CREATE TABLE silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL DEFAULT '',     -- '' = any node
    grp TEXT NOT NULL DEFAULT '',      -- '' = any group
    rule TEXT NOT NULL DEFAULT '',     -- '' = any rule
    author TEXT NOT NULL,              -- the unix user who added it
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    removed_by TEXT,                   -- who removed it before it expired
    removed_at REAL
);
CREATE INDEX silences_expires ON silences (expires);
"""

MAX_DURATION = 30 * 86400.0  # a silence longer than a month is a forgotten one
_COLUMNS = "id, node, grp, rule, author, reason, created, expires, removed_by, removed_at"


class SilenceError(ValueError):
    """A silence request that cannot be kept: the text says why."""


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    node: str
    group: str
    rule: str
    author: str
    reason: str
    created: float
    expires: float
    removed_by: str | None = None
    removed_at: float | None = None

    def active(self, now: float) -> bool:
        return self.removed_at is None and self.created <= now < self.expires

    def matches(self, rule: str, node: str, group: str) -> bool:
        return ((not self.node or self.node == node) and (not self.group or self.group == group)
                and (not self.rule or self.rule == rule))

    @property
    def target(self) -> str:
        parts = [f"{k}={v}" for k, v in (("node", self.node), ("group", self.group),
                                         ("rule", self.rule)) if v]
        return " ".join(parts)

    def to_plain(self) -> dict[str, object]:
        return {"id": self.id, "node": self.node, "group": self.group, "rule": self.rule,
                "author": self.author, "reason": self.reason, "created": self.created,
                "expires": self.expires, "removed_by": self.removed_by,
                "removed_at": self.removed_at}

    @classmethod
    def from_plain(cls, d: dict[str, object]) -> Silence:
        return cls(**{k: d[k] for k in cls.__slots__ if k in d})  # type: ignore[arg-type]


def checked(node: str, group: str, rule: str, duration: str | float, reason: str
            ) -> tuple[str, str, str, float, str]:
    """The fields of a new silence, checked; SilenceError says what is wrong."""
    node, group, rule, reason = (str(v or "").strip() for v in (node, group, rule, reason))
    if not (node or group or rule):
        raise SilenceError("a silence needs --node, --group and/or --rule (what it silences)")
    if not reason:
        raise SilenceError("a silence needs a reason (--reason \"…\")")
    if len(reason) > 500 or any(len(v) > 200 for v in (node, group, rule)):
        raise SilenceError("reason up to 500 characters, node, group and rule up to 200")
    try:
        seconds = parse_duration(duration)
    except ValueError as e:
        raise SilenceError(f"--for: {e}") from None
    if not 0 < seconds <= MAX_DURATION:
        raise SilenceError(f"--for: expected more than 0 and at most 30d, got {duration!r}")
    return node, group, rule, seconds, reason


class SilenceBook:
    """The silences of one history database; one connection, safe to share between threads.
    The table comes from the history schema (ctop.store.schema, migration 5): open one with
    ctop.store.silencedb.open_book."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._lock = threading.Lock()
        self._db = db
        self._active: tuple[Silence, ...] = ()
        self._loaded = 0.0
        self.refresh()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, *, node: str = "", group: str = "", rule: str = "", duration: str | float,
            reason: str, author: str, now: float | None = None) -> Silence:
        node, group, rule, seconds, reason = checked(node, group, rule, duration, reason)
        now = time.time() if now is None else now
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO silences (node, grp, rule, author, reason, created, expires)"
                " VALUES (?,?,?,?,?,?,?)", (node, group, rule, author, reason, now, now + seconds))
            sid = int(cur.lastrowid or 0)
        self.refresh()
        return self.get(sid)

    def remove(self, sid: int, *, author: str, now: float | None = None) -> Silence:
        now = time.time() if now is None else now
        found = self.get(sid)
        if found.removed_at is not None:
            raise SilenceError(f"silence {sid} was already removed by {found.removed_by}")
        if found.expires <= now:
            raise SilenceError(f"silence {sid} has already expired")
        with self._lock, self._db:
            self._db.execute("UPDATE silences SET removed_by = ?, removed_at = ? WHERE id = ?",
                             (author, now, sid))
        self.refresh()
        return self.get(sid)

    def get(self, sid: int) -> Silence:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM silences WHERE id = ?",
                                   (sid,)).fetchone()
        if row is None:
            raise SilenceError(f"no silence {sid} (ctop silence ls --all)")
        return Silence(*row)

    def listing(self, *, everything: bool = False, now: float | None = None,
                limit: int = 200) -> list[Silence]:
        """The active silences, or (everything) the newest ones of any state."""
        now = time.time() if now is None else now
        where = "" if everything else "WHERE removed_at IS NULL AND expires > ?"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM silences {where} ORDER BY id DESC LIMIT ?",
                (limit,) if everything else (now, limit)).fetchall()
        return [Silence(*r) for r in rows]

    def refresh(self) -> None:
        """Reload the active set (after a change, and now and then: another process may
        have written, e.g. `ctop silence add` without a daemon)."""
        try:
            self._active = tuple(self.listing())
        except sqlite3.Error:
            return  # keep the last set: the history's own health reports a bad file
        self._loaded = time.monotonic()

    def active(self, now: float, reload_every: float = 5.0) -> tuple[Silence, ...]:
        if time.monotonic() - self._loaded >= reload_every:
            self.refresh()
        return tuple(s for s in self._active if s.active(now))


def local_author() -> str:
    """The unix user of this process (a `ctop silence` without a daemon), with the SUDO_USER
    it claims beside it, as the load-balancer journal writes it."""
    return Actor(current_user(), claimed_sudo_user()).text


class SilenceOwner(Protocol):
    """What answers silence requests: the engine (ctop.engine.Engine)."""

    def silence_add(self, *, node: str = "", group: str = "", rule: str = "",
                    duration: str | float, reason: str, author: str) -> Silence: ...

    def silence_rm(self, sid: int, *, author: str) -> Silence: ...

    def silences(self, *, everything: bool = False) -> list[Silence]: ...


def silence_request(owner: SilenceOwner, arg: str, user: str) -> dict[str, Any]:
    """One control request ({"op": "add" | "rm" | "ls", …} as JSON) for the caller `user`
    (from the socket's credentials); the answer, or {"error": text}."""
    try:
        message = json.loads(arg)
        op = message["op"]
        sudo = message.get("sudo_user")
        author = Actor(user, str(sudo) if sudo else None).text
        if op == "add":
            s = owner.silence_add(node=str(message.get("node") or ""),
                                  group=str(message.get("group") or ""),
                                  rule=str(message.get("rule") or ""),
                                  duration=message["for"], reason=str(message["reason"]),
                                  author=author)
            return {"silence": s.to_plain()}
        if op == "rm":
            return {"silence": owner.silence_rm(int(message["id"]), author=author).to_plain()}
        if op == "ls":
            return {"silences": [s.to_plain() for s in
                                 owner.silences(everything=bool(message.get("all")))]}
        return {"error": f"bad silence request: unknown op {op!r} (add, rm, ls)"}
    except SilenceError as e:
        return {"error": str(e)}
    except (ValueError, KeyError, TypeError) as e:
        return {"error": f"bad silence request: {e!r}"}
    except Exception as e:  # the database: the caller reads why, the daemon goes on
        return {"error": f"silences: {e}"}
