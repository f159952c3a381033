"""Store-and-forward between the pipeline and a remote sink (InfluxDB now, the uplink later).

* :class:`Spool` — durable: an append-only segment log per kind, group commit in a
  dedicated I/O thread, bounded by ``max_bytes`` (see :mod:`gateway.spool.spool` for the
  policy and :mod:`gateway.spool.segment` for the file format).
* :class:`MemorySpool` — the same interface in memory only (tests, benchmarks).

Both implement :class:`SinkQueue`; records are opaque lines of text with a kind
(``priority`` first and never dropped for readings, or ``reading``).
"""

from gateway.spool.base import KINDS, Batch, Kind, SinkQueue
from gateway.spool.memory import MemorySpool
from gateway.spool.metrics import SpoolMetrics
from gateway.spool.ranges import RangeSet
from gateway.spool.segment import BlockRef, CorruptBlockError, SegmentLog
from gateway.spool.spool import Spool, SpoolLockedError, default_segment_bytes

__all__ = [
    "KINDS",
    "Batch",
    "BlockRef",
    "CorruptBlockError",
    "Kind",
    "MemorySpool",
    "RangeSet",
    "SegmentLog",
    "SinkQueue",
    "Spool",
    "SpoolLockedError",
    "SpoolMetrics",
    "default_segment_bytes",
]
