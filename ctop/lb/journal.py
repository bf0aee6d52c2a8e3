"""Audit trail of load-balancer actions and the operator's intent, in SQLite (WAL).

Shares the ctop database file with the engine; our tables are lb_actions and lb_intent.
Intent is what makes restore exact across restarts (the weight before a drain) and what keeps
automation from undoing a human: it records who drained a server and who set its weight.

Who acted: the unix user (for the daemon, the caller's uid from SO_PEERCRED) in `user`, and the
SUDO_USER the caller claims beside it in `sudo_user` (claimed: any caller can set it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from ctop.filemodes import private_database

ORIGINS = ("operator", "auto", "cli")
HUMAN = ("operator", "cli")

# column `backend` holds the balancer's name (`balancer` in Python): existing databases
_SCHEMA = """
CREATE TABLE IF NOT EXISTS lb_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    origin TEXT NOT NULL,
    backend TEXT NOT NULL,
    service TEXT NOT NULL,
    server TEXT NOT NULL,
    action TEXT NOT NULL,
    weight_before INTEGER,
    weight_after INTEGER,
    result TEXT NOT NULL,
    sudo_user TEXT,            -- SUDO_USER as the caller claimed it (not verified)
    saved_weight INTEGER,      -- drain/maint: the weight a restore goes back to
    why TEXT                   -- the operator's reason, when given (--why, the dialog)
);
CREATE INDEX IF NOT EXISTS lb_actions_target ON lb_actions (backend, service, server, ts);
CREATE TABLE IF NOT EXISTS lb_intent (
    backend TEXT NOT NULL,
    service TEXT NOT NULL,
    server TEXT NOT NULL,
    saved_weight INTEGER,      -- weight before the drain; NULL when not drained by ctop
    drained_by TEXT,           -- origin of the drain: operator | auto | cli
    drained_user TEXT,
    drained_at REAL,
    weight_by TEXT,            -- origin of the last explicit weight
    weight_set INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (backend, service, server)
);
"""


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def current_user() -> str:
    """The unix user acting here: the effective uid's name."""
    return user_name(os.geteuid())


def claimed_sudo_user() -> str | None:
    """SUDO_USER of this process (a claim: anyone can set the variable)."""
    return os.environ.get("SUDO_USER") or None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change: the unix user (from the socket's peer credentials in the daemon)
    and the SUDO_USER the caller claims."""

    user: str
    sudo_user: str | None = None
    uid: int | None = None
    pid: int | None = None

    @property
    def text(self) -> str:
        if self.sudo_user and self.sudo_user != self.user:
            return f"{self.user} (sudo {self.sudo_user})"
        return self.user


def local_actor() -> Actor:
    return Actor(current_user(), claimed_sudo_user(), os.geteuid(), os.getpid())


# The caller of the action running in this thread / task (set by ctop.lb.request.perform).
_actor: ContextVar[Actor | None] = ContextVar("ctop_lb_actor", default=None)
# ... and the reason they gave (every journal row the action writes carries it).
_why: ContextVar[str | None] = ContextVar("ctop_lb_why", default=None)


@contextlib.contextmanager
def acting_as(actor: Actor | None, *, why: str | None = None) -> Iterator[None]:
    token = _actor.set(actor) if actor is not None else None
    why_token = _why.set(why)
    try:
        yield
    finally:
        _why.reset(why_token)
        if token is not None:
            _actor.reset(token)


@dataclass(frozen=True, slots=True)
class ActionRecord:
    id: int
    ts: float
    user: str
    origin: str
    balancer: str
    service: str
    server: str
    action: str
    weight_before: int | None
    weight_after: int | None
    result: str  # "ok" or the error text
    sudo_user: str | None = None  # claimed by the caller
    saved_weight: int | None = None  # drain/maint: the weight a restore goes back to
    why: str | None = None  # the operator's reason, when given

    @property
    def who(self) -> str:
        if self.sudo_user and self.sudo_user != self.user:
            return f"{self.user} (sudo {self.sudo_user})"
        return self.user


@dataclass(frozen=True, slots=True)
class Intent:
    balancer: str
    service: str
    server: str
    saved_weight: int | None
    drained_by: str | None
    drained_user: str | None
    drained_at: float | None
    weight_by: str | None
    weight_set: int | None

    @property
    def drained(self) -> bool:
        return self.drained_by is not None

    @property
    def human_drain(self) -> bool:
        return self.drained_by in HUMAN

    @property
    def human_weight(self) -> bool:
        return self.weight_by in HUMAN


class Journal:
    """One connection per instance, safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str], *, user: str | None = None) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            private_database(str(path))  # 0640, like the history it shares a file with
        self.user = user or current_user()
        self.sudo_user = None if user else claimed_sudo_user()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=10, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        with self._db:
            self._db.executescript(_SCHEMA)
            _migrate(self._db)

    def _who(self) -> tuple[str, str | None]:
        actor = _actor.get()
        return (actor.user, actor.sudo_user) if actor is not None else (self.user, self.sudo_user)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- actions -----------------------------------------------------------------------------

    def record(
        self,
        *,
        origin: str,
        balancer: str,
        service: str,
        server: str,
        action: str,
        weight_before: int | None,
        weight_after: int | None,
        result: str,
        ts: float | None = None,
        saved_weight: int | None = None,
    ) -> int:
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {origin!r}")
        user, sudo_user = self._who()
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT INTO lb_actions (ts, user, origin, backend, service, server, action,"
                " weight_before, weight_after, result, sudo_user, saved_weight, why)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    time.time() if ts is None else ts,
                    user,
                    origin,
                    balancer,
                    service,
                    server,
                    action,
                    weight_before,
                    weight_after,
                    result,
                    sudo_user,
                    saved_weight,
                    _why.get(),
                ),
            )
            return int(cur.lastrowid or 0)

    def actions(
        self,
        *,
        balancer: str | None = None,
        service: str | None = None,
        server: str | None = None,
        user: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[ActionRecord]:
        """Newest first. `user` matches the unix user or the sudo caller beside it; `since` is
        an epoch time."""
        # the column keeps its old name "backend" (old databases)
        where, args = _filters(backend=balancer, service=service, server=server)
        extra: list[str] = []
        params: list[object] = list(args)
        if user is not None:  # the unix user or the sudo caller beside it
            extra.append("(user = ? OR sudo_user = ?)")
            params += [user, user]
        if since is not None:
            extra.append("ts >= ?")
            params.append(since)
        if extra:
            where = (where + " AND " if where else "WHERE ") + " AND ".join(extra)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ts, user, origin, backend, service, server, action, weight_before,"
                f" weight_after, result, sudo_user, saved_weight, why FROM lb_actions {where}"
                " ORDER BY id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [ActionRecord(*row) for row in rows]

    # -- intent ------------------------------------------------------------------------------

    def intent(self, balancer: str, service: str, server: str) -> Intent | None:
        with self._lock:
            row = self._db.execute(
                "SELECT backend, service, server, saved_weight, drained_by, drained_user,"
                " drained_at, weight_by, weight_set FROM lb_intent"
                " WHERE backend=? AND service=? AND server=?",
                (balancer, service, server),
            ).fetchone()
        return Intent(*row) if row else None

    def intents(self, balancer: str | None = None) -> list[Intent]:
        where, args = _filters(backend=balancer)  # the column keeps its old name
        with self._lock:
            rows = self._db.execute(
                "SELECT backend, service, server, saved_weight, drained_by, drained_user,"
                f" drained_at, weight_by, weight_set FROM lb_intent {where}",
                args,
            ).fetchall()
        return [Intent(*row) for row in rows]

    def mark_drained(
        self, balancer: str, service: str, server: str, *, saved_weight: int, origin: str
    ) -> None:
        """Remember the weight to restore and who drained it."""
        now = time.time()
        user = self._who()[0]
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO lb_intent (backend, service, server, saved_weight, drained_by,"
                " drained_user, drained_at, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (backend, service, server) DO UPDATE SET"
                " saved_weight=excluded.saved_weight, drained_by=excluded.drained_by,"
                " drained_user=excluded.drained_user, drained_at=excluded.drained_at,"
                " updated_at=excluded.updated_at",
                (balancer, service, server, saved_weight, origin, user, now, now),
            )

    def clear_drain(self, balancer: str, service: str, server: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE lb_intent SET saved_weight=NULL, drained_by=NULL, drained_user=NULL,"
                " drained_at=NULL, updated_at=? WHERE backend=? AND service=? AND server=?",
                (time.time(), balancer, service, server),
            )

    def mark_weight(
        self, balancer: str, service: str, server: str, *, weight: int, origin: str
    ) -> None:
        """Remember who set the weight last (automation leaves a human's weight alone)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO lb_intent (backend, service, server, weight_by, weight_set,"
                " updated_at) VALUES (?,?,?,?,?,?)"
                " ON CONFLICT (backend, service, server) DO UPDATE SET"
                " weight_by=excluded.weight_by, weight_set=excluded.weight_set,"
                " updated_at=excluded.updated_at",
                (balancer, service, server, origin, weight, now),
            )

    def release_weight(self, balancer: str, service: str, server: str) -> None:
        """Hand a server's weight back to automation (weight advice may change it again)."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE lb_intent SET weight_by=NULL, weight_set=NULL, updated_at=?"
                " WHERE backend=? AND service=? AND server=?",
                (time.time(), balancer, service, server),
            )


def _migrate(db: sqlite3.Connection) -> None:
    """Databases from before a column existed get it (older rows keep NULL)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(lb_actions)")}
    for name, kind in (("sudo_user", "TEXT"), ("saved_weight", "INTEGER"), ("why", "TEXT")):
        if name not in have:
            db.execute(f"ALTER TABLE lb_actions ADD COLUMN {name} {kind}")


def _filters(**kw: str | None) -> tuple[str, tuple[str, ...]]:
    parts = [(f"{k}=?", v) for k, v in kw.items() if v is not None]
    if not parts:
        return "", ()
    return "WHERE " + " AND ".join(p for p, _ in parts), tuple(v for _, v in parts if v is not None)
