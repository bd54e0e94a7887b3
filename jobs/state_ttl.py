"""Flink state TTL configs that work in thread mode on a TaskManager.

PyFlink's StateTtlConfig, when cleanup in background is on (the default), builds a
default RocksDB compaction-filter strategy whose periodic compaction time is a Java
``Duration`` made through the Py4J gateway, even when a strategy was named. A
TaskManager's embedded Python has no gateway, so ``open()`` fails there (it passes on a
MiniCluster, where the client's gateway exists). We therefore switch the background
default off and name the compaction-filter strategy ourselves: Java keeps a named
strategy either way. PyFlink hands only its query interval to Java (Java keeps its own
periodic compaction default), so the periodic time we pass is a plain Python value that
is stored and never converted.

Incremental cleanup (10 entries per state access) is for the heap backend used on a
MiniCluster, where the compaction filter does not exist; RocksDB ignores it.
"""
from __future__ import annotations

import datetime

# Re-read the current time from Java every this many entries during compaction (Flink's default).
QUERY_TIME_AFTER_NUM_ENTRIES = 1000


def ttl_config(ttl_ms: int):
    """TTL refreshed on create and write; expired values are never returned."""
    from pyflink.common.time import Time
    from pyflink.datastream.state import StateTtlConfig

    return (StateTtlConfig.new_builder(Time.milliseconds(ttl_ms))
            .set_update_type(StateTtlConfig.UpdateType.OnCreateAndWrite)
            .set_state_visibility(StateTtlConfig.StateVisibility.NeverReturnExpired)
            .disable_cleanup_in_background()
            .cleanup_incrementally(10, False)
            .cleanup_in_rocksdb_compact_filter(QUERY_TIME_AFTER_NUM_ENTRIES,
                                               datetime.timedelta(days=30))
            .build())
