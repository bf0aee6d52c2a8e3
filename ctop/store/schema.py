"""The history database's tables: the metric columns, their integer scales, the migrations,
and how a connection is opened.

Three levels, each with its own retention: raw samples (charts up to 6 h), 1-minute rollups
(charts up to the minute retention) and hourly rollups (longer charts).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from operator import mul
from urllib.parse import quote

from agentd.metrics import STORED
from ctop import alert_history, lb_history, silences
from ctop.metricview import values_getter
from ctop.snapshot import NodeView
from ctop.store import watched

log = logging.getLogger(__name__)

# -- the stored metrics: derived from the metric registry (agentd/metrics.py) ----------------

# Stored metrics, those a NodeView shows first: readable name -> column in samples (and
# <column>_avg/_max in rollups and hourly). Every statement names its columns: a metric added
# to the registry is a column added to an existing database (migrate), at the end of its tables.
_STORED = sorted(STORED, key=lambda m: not m.view)
METRIC_COLUMNS = {m.name: m.column for m in _STORED}
# Values are stored as integers, round(value * scale), like the wire carries them: SQLite
# stores a small integer in 1-4 bytes where a REAL takes 8, which is most of a sample row.
SCALES = {m.column: m.scale for m in _STORED}

# NodeView -> the values of METRIC_COLUMNS, in readable units
sample_values: Callable[[NodeView], tuple[float, ...]] = values_getter(_STORED)


# ---------------------------------------------------------------------------------------------

COLS = tuple(METRIC_COLUMNS.values())
SCALE = tuple(SCALES[c] for c in COLS)
PAIR_COLS = tuple(f"{c}_{part}" for c in COLS for part in ("avg", "max"))
TS_SCALE = 1000  # samples.ts in milliseconds
LATENCY_SCALE = 10  # service latencies in tenths of a millisecond, as on the wire

# Default retention per level; at 10,000 nodes a day of minute rollups is ~1.8 GB and a day of
# hourly rollups ~30 MB (docs/performance.md). 48 h of minutes keep the UI's longest chart
# (24 h) at full resolution with a day to spare; beyond, hourly rows (168 points a week).
RAW_RETENTION = 24 * 3600.0
MINUTE_RETENTION = 48 * 3600.0
HOURLY_RETENTION = 90 * 86400.0
_ROLLUP_COLUMNS = ", ".join(f"{c}_avg INTEGER, {c}_max INTEGER" for c in COLS)

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema. Samples and rollups hold scaled integers (see SCALES); their svc
    # blobs are msgpack [[service id, ...], [latency in 0.1 ms, ...]] with the ids of the
    # services table, so a row does not repeat seven service names.
    f"""
    CREATE TABLE nodes (
        id INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL UNIQUE,
        hostname TEXT, grp TEXT, addresses TEXT, cores INTEGER, mem_total INTEGER,
        version TEXT, interval REAL, first_seen REAL, last_seen REAL
    );
    CREATE TABLE samples (
        node INTEGER NOT NULL, ts INTEGER NOT NULL,
        {", ".join(f"{c} INTEGER" for c in COLS)},
        svc BLOB,
        PRIMARY KEY (node, ts)
    ) WITHOUT ROWID;
    CREATE TABLE rollups (
        node INTEGER NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL,
        {_ROLLUP_COLUMNS},
        svc BLOB,
        PRIMARY KEY (node, minute)
    ) WITHOUT ROWID;
    CREATE TABLE services (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL,
        node TEXT NOT NULL, message TEXT NOT NULL
    );
    CREATE INDEX events_node_ts ON events (node, ts);
    CREATE INDEX events_ts ON events (ts);
    """,
    # 2: hourly rollups, the minute rows of one hour per node: averages weighted by sample
    # count, maxima, svc as in rollups (mean latency per service). Filled by the writer from
    # `meta.hourly_next` on, so an upgraded database rolls up its existing minutes in the
    # background, and minute rows are pruned only once their hour is rolled up.
    f"""
    CREATE TABLE hourly (
        node INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL,
        {_ROLLUP_COLUMNS},
        svc BLOB,
        PRIMARY KEY (node, hour)
    ) WITHOUT ROWID;
    """,
    # 3: each node's replay high-water mark (ctop.ingest.Mark), so a message captured before a
    # director restart is still refused after it.
    """
    CREATE TABLE marks (
        node TEXT PRIMARY KEY, boot INTEGER NOT NULL, boot_ts REAL NOT NULL,
        seq INTEGER NOT NULL, at REAL NOT NULL
    );
    """,
    # 4: the load-balancer view of each LB round with its rollups, and the alerts firing
    # after each change (ctop.lb_history, ctop.alert_history): what ctop --at shows.
    lb_history.SCHEMA + alert_history.SCHEMA,
    # 5: operators' silences, kept after they end: who added and removed them (ctop.silences)
    silences.SCHEMA,
    # 6: watched processes, one row per node, watch and change (ctop.store.watched).
    watched.SCHEMA,
)


def scaled_values(v: NodeView) -> tuple[int, ...]:
    """sample_values() as the stored integers."""
    return scaled(sample_values(v))


def scaled(values: Sequence[float]) -> tuple[int, ...]:
    return tuple(map(round, map(mul, values, SCALE)))  # C-level: runs per node per tick


def unscaled(column: str, base: str | None = None) -> str:
    """SQL for a stored column in readable units (base: the metric column of an aggregate)."""
    scale = SCALES[base or column]
    return column if scale == 1 else f"{column} / {float(scale)}"


def connect(path: str) -> sqlite3.Connection:
    """The daemon's read-write connection; creates the file and its directory."""
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, fast
    # Each tick touches one B-tree leaf per node (rows are clustered by node): a page cache
    # that holds those leaves saves re-reading them from the file every second.
    db.execute("PRAGMA cache_size=-32768")  # KiB
    return db


def connect_readonly(path: str) -> sqlite3.Connection:
    """A connection that cannot write and creates nothing: sqlite3.OperationalError when the
    file does not exist (yet)."""
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # opens the file: raises if missing
        db.execute("PRAGMA cache_size=-32768")  # KiB, as the writer's: charts re-read pages
    except sqlite3.Error:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; return it."""
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else 0
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with db:
            db.executescript(f"BEGIN; {script}; COMMIT;")
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(number),)
            )
        log.info("database schema migrated to version %d", number)
    for table, columns in (("samples", COLS), ("rollups", PAIR_COLS), ("hourly", PAIR_COLS)):
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column in (c for c in columns if c not in have):  # a metric new in the registry
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER")
            log.info("database: column %s.%s added", table, column)
    return len(MIGRATIONS)


def meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
