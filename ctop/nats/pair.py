"""Pair-consistent load-balancer actions: operators' intents in a JetStream KV bucket.

A drain, maint, weight, step, restore or advice made on one director is applied on its own
balancer (the usual journaled path, ctop.lb.request.perform), then put in the bucket
`<prefix>_intents_<cluster>` under `intent.<target>` (one key per balancer/service/server: the
newest intent per server is what counts). Every other director watches the bucket, applies
the intent to its own balancer (read back and journaled as `user@director`), and writes its
confirmation under `ack.<director>.<target>`. The acting director waits up to
`[nats] confirm_timeout` for each peer's confirmation and reports it.

Before changing anything, the acting director checks that NATS is connected and that each
peer was seen lately (`view.<director>`, written every LB round): if not, the action is refused
unless the request is `local` (`ctop lb ... --local`): then it acts here and the intent is
still recorded (queued until NATS is back), so the peer applies it when it comes back. A
director that starts (or reconnects) gets every key's newest intent from the watch and applies
those it has not confirmed yet: after a failover the new MASTER's table has every drain.

Each director also publishes its LB view per round (`view.<director>`); a difference between
this director's table and a peer's (servers, weights, states) that outlasts two rounds, with
no intent in flight, is an alert naming the difference.

Why JetStream KV: nats-server is in Debian (one binary), JetStream KV has watch, history and
per-key revisions (optimistic concurrency through update(key, value, last=revision)), and the
same connection serves the group collectors of issue 15.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ctop.alerts import Notification
from ctop.lb.actions import ActionResult
from ctop.lb.journal import Actor
from ctop.lb.request import ActionRequest
from ctop.nats.config import NatsConfig, safe_name
from ctop.nats.link import KeyNotFound, KVEntry, NatsError, NatsLink, WrongRevision
from ctop.snapshot import AlertView, EventView, LBServiceView, Severity

log = logging.getLogger(__name__)

SHARED_VERBS = ("drain", "maint", "weight", "step", "restore", "advice")
SEEN_ROUNDS = 3  # a peer whose view is older than this many LB rounds is not there
MIN_SEEN_S = 5.0
ACK_POLL = 0.05

Target = tuple[str, str, str]  # (balancer, service, server)
Table = dict[str, tuple[int, str]]  # "balancer|service|server" -> (weight, state)


def target_key(t: Target) -> str:
    """A KV key part for any service/server name (IPVS keys have spaces and colons)."""
    return base64.urlsafe_b64encode("\0".join(t).encode()).decode()


def bucket_name(cfg: NatsConfig, cluster: str) -> str:
    return f"{cfg.subject_prefix}_intents_{safe_name(cluster)}"


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    director: str  # where the operator acted
    user: str
    ts: float
    request: dict[str, Any]  # ActionRequest.to_plain(): what to do
    before: int | None  # the acting director's prior state (weight, state), for the record
    state_before: str
    # The operator's reason, beside `request` rather than in it: an older peer, whose
    # ActionRequest has no `why`, still applies the intent (without the reason).
    why: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "director": self.director, "user": self.user,
                           "ts": self.ts, "request": self.request, "before": self.before,
                           "state_before": self.state_before, "why": self.why}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Intent:
        d = json.loads(data)
        return cls(str(d["id"]), str(d["director"]), str(d["user"]), float(d["ts"]),
                   dict(d["request"]), d.get("before"), str(d.get("state_before") or ""),
                   d.get("why") or None)


class Conflict(NatsError):
    """A peer's intent for the same server was recorded first and is not applied here yet."""

    def __init__(self, other: Intent) -> None:
        super().__init__(f"concurrent change by {other.director}")
        self.other = other


class PairSync:
    """This director's side of the pair (see the module doc)."""

    def __init__(self, link: NatsLink, cfg: NatsConfig, cluster: str, *,
                 apply: Callable[[ActionRequest, Actor], ActionResult],
                 on_events: Callable[[Sequence[EventView]], None],
                 lb_every: float = 2.0) -> None:
        self.link, self.cfg = link, cfg
        self.me = cfg.director_name
        self.peers = cfg.peers
        self.bucket = bucket_name(cfg, cluster)
        self.apply, self.on_events = apply, on_events
        self.seen_s = max(MIN_SEEN_S, SEEN_ROUNDS * lb_every)
        self._views: dict[str, dict[str, Any]] = {}  # peer -> its last published view
        self._acks: dict[tuple[str, str], dict[str, Any]] = {}  # (peer, target key) -> ack
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._work: queue.Queue[Intent | None] = queue.Queue()
        self._outbox: dict[str, Intent] = {}  # intents recorded while NATS was down
        self._revs: dict[str, int] = {}  # target key -> the newest intent revision seen
        self._newest: dict[str, Intent] = {}  # target key -> that intent
        self._last_intent = 0.0  # monotonic time of the last intent seen (divergence waits)
        self._diverged: dict[str, str] = {}  # peer -> the difference seen last round
        self._alerts: dict[str, AlertView] = {}
        self._notes: list[Notification] = []  # for [[hook]]s: firing / resolved divergences
        self.cluster = cluster
        link.bucket(self.bucket, history=10)
        link.watch(self.bucket, ">", self._on_entry)
        self._applier = threading.Thread(target=self._apply_loop, name="ctop-pair", daemon=True)
        self._applier.start()
        self._table: Table = {}
        self._closed = False
        self._publish = threading.Event()
        self._publisher = threading.Thread(target=self._publish_loop, name="ctop-pair-view",
                                           daemon=True)
        self._publisher.start()

    def close(self) -> None:
        """Tell the peers we are gone (so they refuse at once instead of after seen_s)."""
        self._work.put(None)
        self._closed = True
        self._publish.set()
        self._publisher.join(2)  # its last table must not land after "stopped"
        with contextlib.suppress(NatsError):
            self.link.kv_put(self.bucket, f"view.{self.me}",
                             json.dumps({"ts": time.time(), "stopped": True}).encode())

    # -- the acting director -------------------------------------------------------------------

    @staticmethod
    def shares(request: ActionRequest) -> bool:
        """Human changes are shared; automation runs on each director on its own, dry runs and
        drift verbs change nothing elsewhere."""
        return (request.verb in SHARED_VERBS and not request.dry_run
                and request.origin != "auto")

    def problem(self) -> str:
        """Why the peers cannot confirm now ("" = they can)."""
        status = self.link.status
        if not status.connected:
            return f"NATS is down ({status.text()}): the peer director cannot confirm"
        now = time.time()
        for peer in self.peers:
            view = self._views.get(peer)
            if view is None:
                return f"peer director {peer} has not been seen on NATS"
            if view.get("stopped"):
                return f"peer director {peer} stopped {now - view['ts']:.0f} s ago"
            if now - view["ts"] > self.seen_s:
                return f"peer director {peer} not seen for {now - view['ts']:.0f} s (down?)"
        return ""

    def act(self, request: ActionRequest, actor: Actor | None,
            run: Callable[[ActionRequest], ActionResult]) -> ActionResult:
        """Worker thread: refuse, or run here, record the intent and wait for the peers."""
        problem = self.problem()
        if problem and not request.local:
            return ActionResult(
                False, f"refused: {problem}; nothing was changed. Use --local (or act on this "
                "director only in the dialog) to change this director alone: the peer applies "
                "it when it is back", request.action, request.balancer, request.service,
                request.server, None, None, origin=request.origin)
        result = run(request)
        if not result.ok:
            return result
        shared = request
        if request.verb in ("step", "advice"):  # what the peer applies: the weight it became
            shared = replace(request, verb="weight", value=result.after)
        shared = replace(shared, balancer=result.balancer, service=result.service,
                         server=result.server, expect=None, local=False)
        intent = Intent(uuid.uuid4().hex, self.me, actor.text if actor else "?", time.time(),
                        replace(shared, why=None).to_plain(), result.before,
                        str(result.state_before or ""), shared.why)
        key = target_key((result.balancer, result.service, result.server))
        try:
            self._record(key, intent)
        except Conflict as c:
            return replace(result, ok=False, message=(
                f"{result.message}\nCONFLICT: {c.other.user}@{c.other.director} changed "
                f"{result.server} at the same moment and that change was recorded first: this "
                "director follows it (it is applied here next); this change was not shared"))
        except NatsError as e:
            with self._lock:
                self._outbox[key] = intent
            return replace(result, message=f"{result.message}\nthis director only: {e}; the "
                           "intent is kept and recorded when NATS is back")
        if problem:  # --local knowingly: the peer applies it when it is back
            return replace(result, message=f"{result.message}\nthis director only ({problem}): "
                           "the intent is recorded, the peer applies it when it is back")
        return self._confirmed(result, key, intent.id)

    def _record(self, key: str, intent: Intent) -> None:
        """Put the intent on top of the newest one this director knows (optimistic
        concurrency: update(last=revision)); Conflict when a peer's intent for the same server
        that we have not applied yet got there first."""
        name = f"intent.{key}"
        with self._lock:
            newest, done = self._newest.get(key), self._acks.get((self.me, key))
        if (newest is not None and newest.director != self.me
                and (done is None or done["id"] != newest.id)):
            raise Conflict(newest)  # seen, not applied here yet: it would undo ours after
        for _ in range(3):
            with self._lock:
                rev = self._revs.get(key)
            try:
                new = (self.link.kv_create(self.bucket, name, intent.to_json()) if rev is None
                       else self.link.kv_update(self.bucket, name, intent.to_json(), last=rev))
            except WrongRevision:
                current = self.link.kv_get(self.bucket, name)
                other = Intent.from_json(current.value)
                with self._lock:
                    done = self._acks.get((self.me, key))
                if other.director != self.me and (done is None or done["id"] != other.id):
                    raise Conflict(other) from None
                with self._lock:  # one we know (applied, or ours): write on top of it
                    self._revs[key] = current.revision
                continue
            with self._lock:
                self._revs[key] = max(self._revs.get(key, 0), new)
            self._remember(self.me, key, intent.id, True, "applied here")
            return
        raise NatsError("the intent keeps changing under this director; try again")

    def _confirmed(self, result: ActionResult, key: str, intent_id: str) -> ActionResult:
        deadline = time.monotonic() + self.cfg.confirm_timeout
        lines, ok = [result.message], True
        with self._cond:
            for peer in self.peers:
                while (ack := self._acks.get((peer, key))) is None or ack["id"] != intent_id:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(min(left, ACK_POLL))
                if ack is None or ack["id"] != intent_id:
                    ok = False
                    lines.append(f"peer {peer}: NOT confirmed within "
                                 f"{self.cfg.confirm_timeout:g} s (changed on this director "
                                 "only; the peer applies the intent when it can)")
                elif not ack["ok"]:
                    ok = False
                    lines.append(f"peer {peer}: FAILED: {ack['message']}")
                else:
                    lines.append(f"peer {peer}: confirmed ({ack['message']})")
        return replace(result, ok=ok, message="\n".join(lines))

    # -- the watch (NATS thread: quick, hand work to the applier) ---------------------------

    def _on_entry(self, entry: KVEntry) -> None:
        if entry.deleted:
            return
        kind, _, rest = entry.key.partition(".")
        if kind == "view":
            if rest != self.me:
                with self._lock:
                    self._views[rest] = json.loads(entry.value)
        elif kind == "ack":
            director, _, key = rest.partition(".")
            with self._cond:
                self._acks[(director, key)] = json.loads(entry.value)
                self._cond.notify_all()
        elif kind == "intent":
            intent = Intent.from_json(entry.value)
            self._last_intent = time.monotonic()
            with self._lock:
                if entry.revision >= self._revs.get(rest, 0):
                    self._revs[rest] = entry.revision
                    self._newest[rest] = intent
            if intent.director != self.me:
                self._work.put(intent)

    def _remember(self, director: str, key: str, intent_id: str, ok: bool, message: str) -> None:
        with self._cond:
            self._acks[(director, key)] = {"id": intent_id, "ok": ok, "message": message}
            self._cond.notify_all()

    # -- the peer: apply, confirm ------------------------------------------------------------

    def _apply_loop(self) -> None:
        while (intent := self._work.get()) is not None:
            try:
                self._apply(intent)
            except Exception:  # one bad intent must not stop the pair
                log.exception("applying the intent %s failed", intent.id)

    def _apply(self, intent: Intent) -> None:
        request = ActionRequest.from_plain(intent.request)
        if request.why is None and intent.why:  # beside the request: an older peer ignores it
            request = replace(request, why=intent.why)
        key = target_key((request.balancer, request.service, request.server))
        with self._lock:
            done = self._acks.get((self.me, key))
        if done is None:
            try:
                done = json.loads(self.link.kv_get(self.bucket, f"ack.{self.me}.{key}").value)
            except KeyNotFound:
                done = None
        if done is not None and done.get("id") == intent.id:
            return  # confirmed before (a restart or reconnect delivers it again)
        actor = Actor(f"{intent.user}@{intent.director}")
        result = self.apply(request, actor)
        message = (f"{result.state_after or ''} weight {result.after}".strip()
                   if result.ok else result.message)
        ack = {"id": intent.id, "ok": result.ok, "message": message, "ts": time.time(),
               "before": result.before, "after": result.after}
        self._remember(self.me, key, intent.id, result.ok, message)
        self.link.kv_put(self.bucket, f"ack.{self.me}.{key}", json.dumps(ack).encode())
        self.on_events([EventView(time.time(), "action", "",
                                  f"pair: {intent.user}@{intent.director} {request.verb} "
                                  f"{request.balancer} {request.service} {request.server} "
                                  f"applied here: {'ok' if result.ok else 'FAILED'} {message}")])

    # -- each LB round: publish our table, compare with the peers' --------------------------

    def round(self, views: Sequence[LBServiceView]) -> None:
        """LB worker thread, after each round: compare now, publish in the background (a slow
        NATS server must not hold the LB rounds up)."""
        table = table_of(views)
        with self._lock:
            self._table = table
        self._publish.set()
        self._compare(table)

    def _publish_loop(self) -> None:
        """Thread ctop-pair-view: the newest table to NATS, and intents kept while it was
        down."""
        while not self._closed:
            self._publish.wait()
            self._publish.clear()
            if self._closed:
                return
            with self._lock:
                table = self._table
            try:
                self.link.kv_put(self.bucket, f"view.{self.me}",
                                 json.dumps({"ts": time.time(), "table": table}).encode())
                self._flush_outbox()
            except NatsError:
                pass  # NATS down: status and refusals say so
            except Exception:  # never stop publishing
                log.exception("publishing the pair view failed")

    def _flush_outbox(self) -> None:
        with self._lock:
            pending, self._outbox = self._outbox, {}
        for key, intent in pending.items():
            self.link.kv_put(self.bucket, f"intent.{key}", intent.to_json())
            self._remember(self.me, key, intent.id, True, "applied here")

    def _compare(self, table: Table) -> None:
        now = time.time()
        quiet = time.monotonic() - self._last_intent > self.cfg.confirm_timeout
        events: list[EventView] = []
        for peer in self.peers:
            with self._lock:
                view = self._views.get(peer)
            fresh = (view is not None and not view.get("stopped")
                     and now - view["ts"] <= self.seen_s)
            diff = differences(table, view.get("table", {}), self.me, peer) if fresh else ""
            before = self._diverged.get(peer, "")
            self._diverged[peer] = diff
            alert = self._alerts.get(peer)
            if diff and diff == before and quiet and alert is None:
                self._alerts[peer] = AlertView(f"pair_divergence:{peer}", "pair_divergence", "",
                                               Severity.WARN, f"tables differ from {peer}: "
                                               f"{diff}", now)
                events.append(EventView(now, "alert", "", f"pair: tables differ from {peer}: "
                                        f"{diff}"))
                self._notes.append(Notification("firing", self._alerts[peer], self.cluster, now))
            elif alert is not None and not diff and fresh:
                self._notes.append(Notification("resolved", self._alerts.pop(peer),
                                                self.cluster, now))
                events.append(EventView(now, "resolved", "", f"pair: tables agree with {peer}"))
            elif alert is not None and diff and diff != alert.message:
                self._alerts[peer] = replace(alert, message=f"tables differ from {peer}: {diff}")
        if events:
            self.on_events(events)

    def alerts(self) -> tuple[AlertView, ...]:
        return tuple(self._alerts.values())

    def take_notes(self) -> list[Notification]:
        """The divergences that fired or resolved since the last call, for the [[hook]]s
        (the engine's tick)."""
        notes, self._notes = self._notes, []
        return notes

    def plain(self) -> dict[str, Any]:
        """`ctop status --json`'s "pair": this director, each peer, NATS, the divergences."""
        now = time.time()
        peers = {}
        for peer in self.peers:
            view = self._views.get(peer)
            peers[peer] = ({"seen": False} if view is None else
                           {"seen": True, "ago_s": round(now - view["ts"], 1),
                            "stopped": bool(view.get("stopped")),
                            "differs": self._diverged.get(peer, "")})
        return {"director": self.me, "peers": peers, "bucket": self.bucket,
                "nats": self.link.status.plain(), "problem": self.problem(),
                "text": self.note()}

    def note(self) -> str:
        """One line for `ctop status` and the header: NATS and the peers."""
        status = self.link.status
        peers = []
        now = time.time()
        for peer in self.peers:
            view = self._views.get(peer)
            if view is None:
                peers.append(f"{peer} not seen")
            elif view.get("stopped"):
                peers.append(f"{peer} stopped")
            else:
                peers.append(f"{peer} seen {now - view['ts']:.0f} s ago")
        return (f"pair: {self.me}" + (f" with {', '.join(peers)}" if peers else "")
                + f"; NATS {status.text(now)}")


def table_of(views: Sequence[LBServiceView]) -> Table:
    return {f"{v.balancer}|{v.key}|{s.key}": (s.weight, s.state)
            for v in views for s in v.servers}


def differences(mine: Table, theirs: dict[str, Any], me: str, peer: str, most: int = 3) -> str:
    """'haproxy web1 s2: dir-a drained weight 0, dir-b serving weight 1; ...' ("" = none)."""
    out = []
    for k in sorted(set(mine) | set(theirs)):
        a, b = mine.get(k), theirs.get(k)
        b = tuple(b) if b is not None else None
        if a == b:
            continue
        name = k.replace("|", " ")

        def show(x: tuple[Any, ...] | None) -> str:
            return "absent" if x is None else f"{x[1]} weight {x[0]}"

        out.append(f"{name}: {me} {show(a)}, {peer} {show(b)}")
    more = f" (and {len(out) - most} more)" if len(out) > most else ""
    return "; ".join(out[:most]) + more
