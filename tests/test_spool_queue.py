"""The durable spool (gateway/spool/spool.py) through its async API: order, priority first,
group commit schedule, ack and compaction, restart replay, torn tail, corruption, overflow
policy and its counters, bounded memory when commits fail, backlog interleaving, and that
no disk I/O happens on the event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_for

from gateway.core.metrics import Metrics
from gateway.spool import MemorySpool, Spool, SpoolLockedError
from gateway.spool.segment import HEADER_SIZE


def make(d: Path, m: Metrics | None = None, **kw: Any) -> Spool:
    kw.setdefault("max_bytes", 10**8)
    kw.setdefault("block_records", 100)
    kw.setdefault("commit_interval", 0.05)
    return Spool(d, name="t", metrics=m or Metrics(), **kw)


def dropped(m: Metrics, kind: str, reason: str) -> float:
    return float(m.sink_dropped.labels("t", kind, reason)._value.get())


def rec(prefix: str, a: int, b: int, pad: int = 0) -> list[str]:
    return [f"{prefix}{i}" + "x" * pad for i in range(a, b)]


async def drain(s: Spool | MemorySpool, n: int = 100, ack: bool = True) -> list[str]:
    out: list[str] = []
    while (b := await s.next_batch(n)) is not None:
        out.extend(b.records())
        if ack:
            await s.ack(b)
        else:
            await s.release(b)
            break
    return out


def segs(d: Path) -> list[Path]:
    return sorted(d.rglob("*.seg"))


async def test_priority_first_then_readings_in_order(tmp_path: Path) -> None:
    s = make(tmp_path)
    await s.open()
    s.append("reading", rec("r", 0, 50))
    s.append("priority", rec("p", 0, 5))
    s.append("reading", rec("r", 50, 100))
    await s.flush()
    first = await s.next_batch(200)
    assert first is not None and first.n_priority == 5
    assert first.records()[:6] == ["p0", "p1", "p2", "p3", "p4", "r0"]
    # blocks are not split: a batch holds what fits whole, priority first
    s.append("priority", ["p5"])
    s.append("reading", rec("r", 100, 200))
    await s.flush()
    await s.ack(first)
    small = await s.next_batch(60)
    assert small is not None and small.records() == ["p5"]
    await s.ack(small)
    rest = await drain(s)
    assert [*first.records(), "p5", *rest] == [*rec("p", 0, 5), *rec("r", 0, 100), "p5", *rec("r", 100, 200)]
    await s.close()


async def test_group_commit_schedule(tmp_path: Path) -> None:
    s = make(tmp_path, commit_interval=0.4, block_records=100)
    await s.open()
    t0 = time.monotonic()
    s.append("reading", rec("a", 0, 10))
    assert await s.next_batch(100) is None  # not committed yet
    await async_wait_for(s.readable.is_set, timeout=3)
    waited = time.monotonic() - t0
    assert 0.3 <= waited < 1.5, waited  # at the commit interval, not per record
    assert len(await drain(s)) == 10
    # a full block commits at once
    t0 = time.monotonic()
    s.append("reading", rec("b", 0, 100))
    await async_wait_for(s.readable.is_set, timeout=3)
    assert time.monotonic() - t0 < 0.3
    assert len(await drain(s)) == 100
    # so does a priority record (an alarm)
    t0 = time.monotonic()
    s.append("priority", ["alarm"])
    await async_wait_for(s.readable.is_set, timeout=3)
    assert time.monotonic() - t0 < 0.3
    assert await drain(s) == ["alarm"]
    await s.close()


async def test_ack_deletes_segments_and_disk_use_returns_to_zero(tmp_path: Path) -> None:
    s = make(tmp_path, segment_bytes=4096)
    await s.open()
    s.append("reading", rec("r", 0, 5000, pad=20))
    s.append("priority", rec("p", 0, 10))
    await s.flush()
    assert s.bytes > 100_000 and len(segs(tmp_path)) > 20
    got = await drain(s, 500)
    assert len(got) == 5010
    assert s.bytes == 0 and segs(tmp_path) == [] and s.records == 0
    await s.close()


async def test_release_gives_the_batch_back(tmp_path: Path) -> None:
    s = make(tmp_path)
    await s.open()
    s.append("reading", rec("r", 0, 250))
    await s.flush()
    b = await s.next_batch(100)
    assert b is not None
    await s.release(b)
    again = await s.next_batch(100)
    assert again is not None and again.records() == b.records()
    await s.ack(again)
    assert await drain(s) == rec("r", 100, 250)
    await s.close()


async def test_restart_replays_exactly_what_was_not_acknowledged(tmp_path: Path) -> None:
    s = make(tmp_path)
    await s.open()
    s.append("priority", rec("p", 0, 3))
    s.append("reading", rec("r", 0, 300))
    await s.flush()
    b = await s.next_batch(200)
    assert b is not None and b.records() == rec("p", 0, 3) + rec("r", 0, 100)
    await s.ack(b)
    await s.close()
    m2 = Metrics()
    s2 = make(tmp_path, m2)
    await s2.open()
    assert s2.records == 200
    assert m2.registry.get_sample_value("hazardgw_spool_recovered_total", {"sink": "t", "kind": "reading"}) == 200
    assert await drain(s2) == rec("r", 100, 300)
    await s2.close()


async def test_crash_without_close_loses_nothing(tmp_path: Path) -> None:
    """No close(): whatever was committed comes back (acks may be lost: duplicates only)."""
    s = make(tmp_path)
    await s.open()
    s.append("reading", rec("r", 0, 300))
    await s.flush()
    b = await s.next_batch(100)
    assert b is not None
    await s.ack(b)
    s.append("reading", rec("r", 300, 350))  # never committed: lost by the "crash"
    s._state.unlock()  # what the kernel does when the process dies; everything else is abandoned as is
    s2 = make(tmp_path)
    await s2.open()
    got = await drain(s2)
    assert set(rec("r", 100, 300)) <= set(got) and got == sorted(got, key=lambda x: int(x[1:]))
    await s2.close()


async def test_a_second_spool_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    s = make(tmp_path)
    await s.open()
    with pytest.raises(SpoolLockedError):
        await make(tmp_path).open()
    await s.close()
    s2 = make(tmp_path)
    await s2.open()  # free again once closed
    await s2.close()


async def test_torn_tail_after_a_crash(tmp_path: Path) -> None:
    s = make(tmp_path)
    await s.open()
    for i in range(5):
        s.append("reading", rec("r", i * 100, i * 100 + 100))
        await s.flush()
    await s.close()
    seg = segs(tmp_path / "reading")[-1]
    os.truncate(seg, seg.stat().st_size - 150)  # in the middle of the last record of the last block
    m = Metrics()
    s2 = make(tmp_path, m)
    await s2.open()
    assert m.registry.get_sample_value("hazardgw_spool_truncated_bytes_total", {"sink": "t"}) > 0
    assert await drain(s2) == rec("r", 0, 400)
    s2.append("reading", rec("n", 0, 10))  # writing goes on after the cut
    await s2.flush()
    assert await drain(s2) == rec("n", 0, 10)
    await s2.close()


async def test_corrupt_block_is_skipped_and_counted(tmp_path: Path) -> None:
    m = Metrics()
    s = make(tmp_path, m, segment_bytes=1000)
    await s.open()
    for i in range(4):
        s.append("reading", rec("r", i * 100, i * 100 + 100))
        await s.flush()
    first = segs(tmp_path / "reading")[0]
    with first.open("r+b") as f:
        f.seek(HEADER_SIZE + 5)
        f.write(b"#")
    got = await drain(s)
    assert got == rec("r", 100, 400)
    assert dropped(m, "reading", "corrupt") == 100
    await s.close()


async def test_overflow_drops_oldest_readings_and_keeps_priority(tmp_path: Path) -> None:
    m = Metrics()
    s = make(tmp_path, m, max_bytes=256 * 1024)  # 64 KiB segments
    await s.open()
    s.append("priority", rec("alarm", 0, 10, pad=50))
    total = 30_000
    for i in range(0, total, 1000):
        s.append("reading", rec("r", i, i + 1000, pad=90))
        await s.flush()
        assert s.bytes <= 256 * 1024
    got = await drain(s, 1000)
    alarms = [x for x in got if x.startswith("alarm")]
    reads = sorted(int(x[1:].rstrip("x")) for x in got if x.startswith("r"))  # the drain interleaves
    assert alarms == rec("alarm", 0, 10, pad=50) and got[:10] == alarms  # all kept, first
    assert reads == list(range(total - len(reads), total))  # the newest, contiguous
    assert 0 < len(reads) < total
    assert dropped(m, "reading", "spool_overflow") == total - len(reads)
    assert dropped(m, "priority", "spool_overflow") == 0
    await s.close()


async def test_priority_dropped_only_when_priority_alone_exceeds_the_limit(tmp_path: Path) -> None:
    m = Metrics()
    s = make(tmp_path, m, max_bytes=128 * 1024)
    await s.open()
    s.append("reading", rec("r", 0, 100))
    for i in range(0, 3000, 100):  # ~300 KB of priority records: over the limit on their own
        s.append("priority", rec("p", i, i + 100, pad=90))
        await s.flush()
    assert s.bytes <= 128 * 1024
    assert dropped(m, "reading", "spool_overflow") == 100  # the readings went first
    lost_p = dropped(m, "priority", "spool_overflow")
    got = [x for x in await drain(s, 1000) if x.startswith("p")]
    assert lost_p > 0 and len(got) + lost_p == 3000
    await s.close()


async def test_batch_in_flight_whose_segment_overflows_is_counted_only_if_not_sent(tmp_path: Path) -> None:
    for outcome in ("release", "ack"):
        m = Metrics()
        s = make(tmp_path / outcome, m, max_bytes=256 * 1024, interleave=False)
        await s.open()
        s.append("reading", rec("r", 0, 100, pad=90))
        await s.flush()
        b = await s.next_batch(100)
        assert b is not None and b.count == 100
        for i in range(100, 5100, 1000):  # pushes the first segment out
            s.append("reading", rec("r", i, i + 1000, pad=90))
            await s.flush()
        before = dropped(m, "reading", "spool_overflow")
        if outcome == "release":
            await s.release(b)
            assert dropped(m, "reading", "spool_overflow") == before + 100
        else:
            await s.ack(b)
            assert dropped(m, "reading", "spool_overflow") == before
        got = await drain(s, 1000)
        assert dropped(m, "reading", "spool_overflow") + len(got) + (100 if outcome == "ack" else 0) == 5100
        await s.close()


async def test_pending_memory_is_bounded_when_commits_fail(tmp_path: Path) -> None:
    m = Metrics()
    s = make(tmp_path, m, max_pending=1000, commit_interval=0.05)
    await s.open()
    real = s._state.commit
    calls = 0

    def disk_full(*a: Any) -> Any:
        nonlocal calls
        calls += 1
        raise OSError(28, "No space left on device")

    s._state.commit = disk_full  # type: ignore[method-assign]
    s.append("priority", ["alarm-1"])
    for i in range(0, 3000, 500):
        s.append("reading", rec("r", i, i + 500))
    assert s.pending <= 1001
    assert dropped(m, "reading", "overflow") == 2000
    await async_wait_for(lambda: calls >= 2, timeout=5)
    assert s.health()["ok"] is False and "No space" in (s.health()["last_error"] or "")
    s._state.commit = real  # type: ignore[method-assign]
    await async_wait_for(lambda: s.pending == 0, timeout=5)
    got = await drain(s, 2000)
    assert got == ["alarm-1", *rec("r", 2000, 3000)]
    assert s.health()["ok"] is True
    await s.close()


async def test_backlog_interleaves_newest_and_oldest(tmp_path: Path) -> None:
    s = make(tmp_path)
    await s.open()
    s.append("reading", rec("r", 0, 2000))  # 20 blocks: a backlog (> 4 blocks)
    await s.flush()
    b1 = await s.next_batch(100)
    assert b1 is not None
    await s.ack(b1)
    b2 = await s.next_batch(100)
    assert b2 is not None
    await s.ack(b2)
    assert b1.records() == rec("r", 1900, 2000)  # the newest first ...
    assert b2.records() == rec("r", 0, 100)  # ... then the oldest
    s.append("reading", rec("live", 0, 100))  # live data arriving during the drain
    await s.flush()
    b3 = await s.next_batch(100)
    assert b3 is not None and b3.records() == rec("live", 0, 100)
    await s.ack(b3)
    rest = await drain(s)
    everything = b1.records() + b2.records() + b3.records() + rest
    assert sorted(everything) == sorted(rec("r", 0, 2000) + rec("live", 0, 100))
    assert len(everything) == 2100  # exactly once
    # each batch is in order, and once the backlog is small the order is strict again
    tail = [int(x[1:]) for x in rest[-300:]]
    assert tail == sorted(tail)
    await s.close()


async def test_strict_order_without_interleave(tmp_path: Path) -> None:
    s = make(tmp_path, interleave=False)
    await s.open()
    s.append("reading", rec("r", 0, 2000))
    await s.flush()
    assert await drain(s) == rec("r", 0, 2000)
    await s.close()


async def test_disk_io_happens_in_the_spool_thread_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    for name in ("writev", "fdatasync", "pread", "open", "unlink", "replace"):
        real = getattr(os, name)

        def spy(*a: Any, _real: Any = real, **kw: Any) -> Any:
            threads.add(threading.current_thread().name)
            return _real(*a, **kw)

        monkeypatch.setattr(os, name, spy)
    s = make(tmp_path)
    await s.open()
    for i in range(0, 1000, 100):
        s.append("reading", rec("r", i, i + 100))
        s.append("priority", [f"p{i}"])
        await asyncio.sleep(0.01)
    await async_wait_for(lambda: s.pending == 0, timeout=5)
    assert len(await drain(s)) == 1010
    await s.close()
    monkeypatch.undo()
    assert threads and all(t.startswith("spool-t") for t in threads), threads


async def test_record_with_a_newline_is_refused_and_counted(tmp_path: Path) -> None:
    m = Metrics()
    s = make(tmp_path, m)
    await s.open()
    s.append("reading", ["ok1", "bad\nline", "ok2"])
    await s.flush()
    assert await drain(s) == ["ok1", "ok2"]
    assert dropped(m, "reading", "invalid") == 1
    await s.close()


async def test_memory_spool_contract() -> None:
    m = Metrics()
    q = MemorySpool(name="t", metrics=m, block_records=100, commit_interval=0.05, max_records=150)
    await q.open()
    q.append("reading", rec("r", 0, 200))
    q.append("priority", ["p0"])
    assert dropped(m, "reading", "overflow") == 50
    await async_wait_for(q.readable.is_set, timeout=2)
    b = await q.next_batch(100)
    assert b is not None and b.records()[:2] == ["p0", "r50"]
    await q.release(b)
    assert await drain(q) == ["p0", *rec("r", 50, 200)]
    q.append("reading", ["left"])
    assert await q.close() == 1  # nothing is on disk: reported as lost
