"""ctop's one connection to NATS: nats-py's asyncio client in a supervised thread of its own.

ctop's engine is threaded (and the UI owns its own loop), so the NATS client runs on a private
event loop in the thread "ctop-nats", and every other thread talks to it with plain blocking
calls (`publish`, `kv_get`, `kv_put`, `kv_update`, ...) or registers callbacks (`subscribe`,
`watch`) that run on the NATS thread. The thread keeps the connection: the first connect is
retried until it succeeds, nats-py reconnects after a loss (to any server of the list), and
after each reconnect the KV watches are set up again and deliver every key's newest value once
more, so a watcher must be idempotent. A callback that raises is logged, never fatal.

A call made while the link is not connected fails at once with `NatsDown` (whose message says
since when), rather than waiting out a timeout: callers (pair-consistent actions) turn it into
a clear refusal. So does a call still waiting for its server when the connection is lost: nats-py
forgets the PONG a pending flush waits for when it reconnects (and a request's reply went to the
old connection), so it would wait out its whole timeout; a collector's heartbeat stuck that
long made its nodes unknown in every view although it had reconnected at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ctop.nats.config import NatsConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
CALL_TIMEOUT = 5.0  # seconds a blocking call waits for the server at most
INITIAL_TIMEOUT = 3.0  # seconds a new KV watch may take to deliver the newest values


class NatsError(Exception):
    """A NATS call failed (the message says why, for the operator)."""


class NatsDown(NatsError):
    """Not connected to any NATS server right now."""


class KeyNotFound(NatsError):
    pass


class WrongRevision(NatsError):
    """kv_update / kv_create lost a race: the key changed (or exists) meanwhile."""


@dataclass(frozen=True, slots=True)
class KVEntry:
    key: str
    value: bytes
    revision: int
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class LinkStatus:
    state: str  # connecting | connected | reconnecting | stopped
    since: float  # when it got into this state (time.time())
    server: str = ""  # the server connected to
    error: str = ""  # the last connection error

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def text(self, now: float | None = None) -> str:
        """'connected to nats://…' / 'reconnecting for 12 s (…)' for status and header."""
        if self.connected:
            return f"connected to {self.server}"
        age = max(0.0, (now or time.time()) - self.since)
        why = f" ({self.error})" if self.error else ""
        return f"{self.state} for {age:.0f} s{why}"

    def plain(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "server": self.server,
                "error": self.error, "text": self.text()}


Callback = Callable[[bytes, str], None]  # (data, subject)
WatchCallback = Callable[[KVEntry], None]


@dataclass
class _Watch:
    bucket: str
    keys: str
    callback: WatchCallback
    task: asyncio.Task[None] | None = None


@dataclass
class _Bucket:
    history: int = 1
    ttl: float | None = None


@dataclass
class _State:
    status: LinkStatus = field(default_factory=lambda: LinkStatus("connecting", time.time()))


class NatsLink:
    """One NATS connection for the whole process (see the module doc)."""

    def __init__(self, cfg: NatsConfig, *, name: str = "ctop") -> None:
        self.cfg = cfg
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ctop-nats", daemon=True)
        self._state = _State()
        self._lock = threading.Lock()
        self._nc: Any = None  # nats.aio.client.Client once connected
        self._js: Any = None
        self._kv: dict[str, Any] = {}  # bucket -> KeyValue of the current connection
        self._buckets: dict[str, _Bucket] = {}
        self._watches: list[_Watch] = []
        self._subs: list[tuple[str, Callback, list[Any]]] = []
        self._stop: asyncio.Event | None = None
        self._on_change: list[Callable[[LinkStatus], None]] = []
        # calls waiting for the server (touched on the NATS thread only): failed when it is lost
        self._inflight: set[asyncio.Task[Any]] = set()

    # -- life -------------------------------------------------------------------------------

    def start(self) -> NatsLink:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status.connected:
                return True
            time.sleep(0.02)
        return self.status.connected

    @property
    def status(self) -> LinkStatus:
        with self._lock:
            return self._state.status

    def on_change(self, callback: Callable[[LinkStatus], None]) -> None:
        """`callback(status)` on the NATS thread whenever the connection's state changes."""
        self._on_change.append(callback)

    def _set(self, state: str, server: str = "", error: str = "") -> None:
        with self._lock:
            old = self._state.status
            if old.state == state and old.server == server and (error or old.error) == old.error:
                return
            self._state.status = LinkStatus(state, time.time(), server, error or old.error)
            status = self._state.status
        for cb in self._on_change:
            _guarded(cb, status)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        import nats

        self._stop = asyncio.Event()
        delay = self.cfg.reconnect_wait
        while not self._stop.is_set():
            try:
                nc = await nats.connect(**self._connect_options())
            except Exception as e:  # no server reachable yet: keep trying
                self._set("connecting", error=_why(e))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 5.0)
                continue
            self._nc, self._js = nc, nc.jetstream(timeout=CALL_TIMEOUT)
            await self._connected()
            await self._stop.wait()
        tasks = [w.task for w in self._watches if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 2)
        # nats-py's own tasks (a consumer's heartbeat check) would be destroyed pending
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        self._set("stopped")

    def _connect_options(self) -> dict[str, Any]:
        cfg = self.cfg

        async def disconnected() -> None:
            self._set("reconnecting", error="connection lost")
            for task in list(self._inflight):  # see the module doc: they would wait it out
                task.cancel()

        async def reconnected() -> None:
            await self._connected()

        async def error(e: Exception) -> None:
            with self._lock:
                self._state.status = replace_error(self._state.status, _why(e))

        opts: dict[str, Any] = dict(
            servers=list(cfg.servers), name=self.name, connect_timeout=cfg.connect_timeout,
            reconnect_time_wait=cfg.reconnect_wait, max_reconnect_attempts=-1,
            allow_reconnect=True, ping_interval=2, max_outstanding_pings=2,
            disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
        )  # fmt: skip
        if cfg.user:
            opts.update(user=cfg.user, password=cfg.read_password())
        if cfg.creds:
            opts["user_credentials"] = cfg.creds
        if cfg.nkey_seed:
            opts["nkeys_seed"] = cfg.nkey_seed
        if cfg.tls_ca or cfg.tls_cert or any(s.startswith("tls://") for s in cfg.servers):
            ctx = ssl.create_default_context(cafile=cfg.tls_ca or None)
            if cfg.tls_cert:
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            opts["tls"] = ctx
        return opts

    async def _connected(self) -> None:
        """After a connect or reconnect: buckets looked up again, watches set up again."""
        self._kv.clear()
        server = ""
        with contextlib.suppress(Exception):
            url = self._nc.connected_url
            server = f"nats://{url.hostname}:{url.port}"
        self._set("connected", server=server, error="")
        for w in self._watches:
            self._start_watch(w)

    # -- calls from other threads -----------------------------------------------------------

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = CALL_TIMEOUT) -> T:
        """Run `make()` on the NATS loop and wait for it (from any other thread)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("NatsLink.call from the NATS thread would wait for itself")
        status = self.status
        if not status.connected:
            raise NatsDown(f"NATS is not connected: {status.text()}")
        fut = asyncio.run_coroutine_threadsafe(self._tracked(make), self._loop)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise NatsError(f"NATS did not answer within {timeout:g} s") from None
        except FutureCancelled:  # the connection was lost while the call waited for it
            raise NatsDown(f"NATS connection lost during the call: {self.status.text()}") \
                from None
        except NatsError:
            raise
        except Exception as e:
            raise _translated(e) from None

    async def _tracked(self, make: Callable[[], Awaitable[T]]) -> T:
        """`make()` on the NATS loop, failed (cancelled) if the connection is lost meanwhile."""
        if not self.status.connected:  # lost between the caller's look and now
            raise NatsDown(f"NATS is not connected: {self.status.text()}")
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            return await make()
        finally:
            self._inflight.discard(task)

    def publish(self, subject: str, data: bytes) -> None:
        self.call(lambda: self._publish(subject, data))

    async def _publish(self, subject: str, data: bytes) -> None:
        await self._nc.publish(subject, data)
        await self._nc.flush(timeout=CALL_TIMEOUT)

    def publish_soon(self, subject: str, data: bytes) -> None:
        """Publish without waiting for it, from any thread (a subscription's callback on the
        NATS thread too); dropped when NATS is down: for requests that are asked again."""
        if not self.status.connected:
            return

        async def send() -> None:
            try:
                await self._nc.publish(subject, data)
            except Exception as e:  # a lost request is asked again; never an unhandled task
                log.debug("publish %s: %s", subject, e)

        asyncio.run_coroutine_threadsafe(send(), self._loop)

    def subscribe(self, subject: str, callback: Callback) -> None:
        """`callback(data, subject)` on the NATS thread for each message (kept across
        reconnects by nats-py). Works before the first connect too."""
        holder: list[Any] = []
        self._subs.append((subject, callback, holder))

        async def handler(msg: Any) -> None:
            _guarded(callback, msg.data, msg.subject)

        async def sub() -> None:
            while self._nc is None:
                await asyncio.sleep(0.05)
            holder.append(await self._nc.subscribe(subject, cb=handler))

        asyncio.run_coroutine_threadsafe(sub(), self._loop)

    def bucket(self, name: str, *, history: int = 1, ttl: float | None = None) -> None:
        """Declare a KV bucket ctop uses; it is created (with [nats] replicas) on first use."""
        self._buckets[name] = _Bucket(history, ttl)

    async def _kv_of(self, bucket: str) -> Any:
        kv = self._kv.get(bucket)
        if kv is not None:
            return kv
        spec = self._buckets.get(bucket, _Bucket())
        try:
            kv = await self._js.create_key_value(
                bucket=bucket, history=spec.history, ttl=spec.ttl, replicas=self.cfg.replicas)
        except Exception:  # it exists with other settings (an older ctop): use it as it is
            kv = await self._js.key_value(bucket)
        self._kv[bucket] = kv
        return kv

    def kv_get(self, bucket: str, key: str) -> KVEntry:
        async def run() -> KVEntry:
            entry = await (await self._kv_of(bucket)).get(key)
            return KVEntry(entry.key, entry.value or b"", entry.revision or 0)

        return self.call(run)

    def kv_put(self, bucket: str, key: str, value: bytes) -> int:
        async def run() -> int:
            return int(await (await self._kv_of(bucket)).put(key, value))

        return self.call(run)

    def kv_update(self, bucket: str, key: str, value: bytes, last: int) -> int:
        """Optimistic concurrency: write only if the key is still at revision `last`."""
        async def run() -> int:
            return int(await (await self._kv_of(bucket)).update(key, value, last=last))

        return self.call(run)

    def kv_create(self, bucket: str, key: str, value: bytes) -> int:
        async def run() -> int:
            return int(await (await self._kv_of(bucket)).create(key, value))

        return self.call(run)

    def kv_keys(self, bucket: str) -> list[str]:
        async def run() -> list[str]:
            try:
                return list(await (await self._kv_of(bucket)).keys())
            except Exception as e:
                if type(e).__name__ == "NoKeysError":
                    return []
                raise

        return self.call(run)

    def watch(self, bucket: str, keys: str, callback: WatchCallback) -> None:
        """`callback(entry)` on the NATS thread for every key matching `keys` (">" = all):
        first each key's newest value, then every change; again from the newest values after
        each reconnect."""
        w = _Watch(bucket, keys, callback)
        self._watches.append(w)
        if self.status.connected:
            self._loop.call_soon_threadsafe(self._start_watch, w)

    def _start_watch(self, w: _Watch) -> None:
        if w.task is not None:
            w.task.cancel()
        w.task = self._loop.create_task(self._watching(w))

    @staticmethod
    def _deliver(w: _Watch, entry: Any) -> None:
        deleted = entry.operation in ("DEL", "PURGE")
        _guarded(w.callback, KVEntry(entry.key, entry.value or b"", entry.revision or 0, deleted))

    async def _watching(self, w: _Watch) -> None:
        while True:
            try:
                watcher = await (await self._kv_of(w.bucket)).watch(w.keys)
                # A consumer made while the cluster re-elects may never deliver (nats-py resets
                # it only after 10 s without heartbeats): the newest values must arrive at once,
                # else it is made again.
                while (entry := await watcher.updates(timeout=INITIAL_TIMEOUT)) is not None:
                    self._deliver(w, entry)
                async for entry in watcher:
                    if entry is not None:
                        self._deliver(w, entry)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # JetStream not ready yet (cluster electing): try again
                log.debug("NATS watch %s %s: %s", w.bucket, w.keys, _why(e))
                await asyncio.sleep(self.cfg.reconnect_wait)


def replace_error(status: LinkStatus, error: str) -> LinkStatus:
    return LinkStatus(status.state, status.since, status.server, error)


def _guarded(callback: Callable[..., Any], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:  # a consumer's bug must not stop the NATS thread
        log.exception("NATS callback %r failed", callback)


def _why(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _translated(e: Exception) -> NatsError:
    name = type(e).__name__
    if name in ("KeyNotFoundError", "KeyDeletedError"):
        return KeyNotFound(str(e) or name)
    if name == "KeyWrongLastSequenceError" or "wrong last sequence" in str(e):
        return WrongRevision(str(e) or name)
    if name in ("ConnectionClosedError", "NoServersError", "OutboundBufferLimitError"):
        return NatsDown(f"NATS is not connected: {_why(e)}")
    return NatsError(_why(e))
