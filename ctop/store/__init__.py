"""History in SQLite: nodes, raw samples, 1-minute and hourly rollups, events, replay marks.

    schema    the tables, metric columns and scales, migrations, connections
    services  the service-latency blob of a row and the services table's ids
    rollups   the minute rollups (event loop) and the hourly ones (writer thread)
    writer    the writer thread: one transaction per batch, row-by-row retry, its health
    history   Store: the daemon's history, recorded on the event loop
    reader    StoreReader: charts, events and marks, read-only (the attached UI, tests)
"""

from ctop.store.history import PRUNE_EVERY, Store, auto_raw_every
from ctop.store.reader import RAW_SPAN, StoreReader
from ctop.store.schema import (
    HOURLY_RETENTION,
    METRIC_COLUMNS,
    MIGRATIONS,
    MINUTE_RETENTION,
    RAW_RETENTION,
    SCALES,
    connect,
    migrate,
    sample_values,
    scaled_values,
)
from ctop.store.writer import WriteHealth

__all__ = [
    "HOURLY_RETENTION", "METRIC_COLUMNS", "MIGRATIONS", "MINUTE_RETENTION", "PRUNE_EVERY",
    "RAW_RETENTION", "RAW_SPAN", "SCALES", "Store", "StoreReader", "WriteHealth",
    "auto_raw_every", "connect", "migrate", "sample_values", "scaled_values",
]
