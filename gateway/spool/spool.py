"""The durable spool: records go to disk in group commits; the sink drains and acknowledges.

Layout under ``directory``: one :class:`~gateway.spool.segment.SegmentLog` per kind
(``priority/``, ``reading/``), each with its ``acked.json`` (acknowledged block ids above
the oldest segment, as ranges). All disk work runs in one dedicated I/O thread per spool
(a single-worker executor), so commits, reads, acks and deletions never race and the event
loop never touches the disk; the loop only keeps the pending lists.

Bounds and overflow policy:

* **Memory**: at most ``max_pending`` readings and ``max_pending_priority`` priority
  records wait for the next group commit, plus those of the one commit in progress (same
  bound) and the one batch being sent (``block_records`` lines, at most
  ``max_batch_bytes``). They only pile up when commits fail (disk error): then the oldest
  pending readings are dropped and counted (``sink_dropped{reason="overflow"}``), and the
  oldest pending priority records beyond their bound likewise (``kind="priority"``).
* **Disk**: segments of both kinds together stay within ``max_bytes``. Before a commit
  would exceed it, the oldest *reading* segments are deleted and their unsent records
  counted (``sink_dropped{kind="reading", reason="spool_overflow"}``). Priority records
  are never dropped for readings; only if priority records alone exceed ``max_bytes``
  (with the 1 GiB default: weeks of self-metrics with InfluxDB down) do the oldest of
  those go, counted as ``kind="priority"`` (alarm events stay in the alarm journal).

Draining: priority blocks first, then readings in order. When more than four blocks of
readings are unsent (a backlog after an outage) and ``interleave`` is on (the default),
batches alternate between the *oldest* unsent blocks and the *newest* committed ones, so
current data reaches the sink within a batch or two while the backlog drains at full
batch size; each batch is in order, and ``interleave=False`` keeps strict order.
Acknowledged blocks are recorded in ranges; a segment whose blocks are all acknowledged is
deleted at once.

Crash safety: a commit is one ``writev`` and one ``fdatasync`` per kind. After kill -9 or
power loss, recovery drops a torn last block and replays every block not recorded as
acknowledged. ``acked.json`` is replaced without fsync: losing it only re-sends
acknowledged blocks, which InfluxDB deduplicates (same series and timestamp).

Disk full (ENOSPC) or another write error: a commit is all or nothing. When a write or an
``fdatasync`` of either kind fails, both kinds are rolled back to where they were before
the commit (truncated, new segments deleted) and the records go back to the front of the
pending lists, retried every ``commit_interval`` (1 s) until the disk takes them again;
health shows ``last_error`` meanwhile. An ``acked.json`` that cannot be written is kept
dirty in memory and retried with backoff (gateway/core/backoff.py, at most every 5 s) and
at every commit and acknowledgement; it never fails a commit or an acknowledgement.
Nothing needs a restart: health is ok again with the first commit and acknowledgement
state written after space returns. All files are created 0600 and directories 0700
(gateway/core/files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.backoff import Backoff
from gateway.core.files import private_dir, private_open, write_private
from gateway.core.metrics import Metrics
from gateway.core.ratelog import RateLimitedLog
from gateway.spool.base import KINDS, Batch, GroupCommit, Kind
from gateway.spool.metrics import SpoolMetrics
from gateway.spool.ranges import RangeSet
from gateway.spool.segment import HEADER_SIZE, BlockRef, CorruptBlockError, Mark, Recovery, SegmentLog

log = logging.getLogger(__name__)

RECENT_BLOCKS = 4096  # newest blocks remembered for the "newest first" half of a backlog drain
MiB = 1024 * 1024
ACKS_RETRY_INITIAL = 0.5  # s, first retry of an acked.json that could not be written
ACKS_RETRY_MAX = 5.0


def default_segment_bytes(max_bytes: int) -> int:
    """1/32 of the limit (the granularity of overflow drops), between 64 KiB and 64 MiB."""
    return max(64 * 1024, min(64 * MiB, max_bytes // 32))


@dataclass(slots=True)
class Stats:
    bytes: int = 0
    unacked: dict[str, int] = field(default_factory=lambda: {"priority": 0, "reading": 0})
    unsent: int = 0  # committed, not acknowledged, not in the batch being sent
    oldest_wall_ns: int | None = None  # commit time of the oldest unacknowledged reading block seen
    corrupt: dict[str, int] = field(default_factory=lambda: {"priority": 0, "reading": 0})
    acks_error: str | None = None  # an acked.json that could not be written (kept in memory, retried)


@dataclass(slots=True)
class CommitResult:
    blocks: int
    dropped: dict[str, int]
    invalid: int
    seconds: float
    stats: Stats


@dataclass(slots=True)
class _Token:
    refs: dict[str, list[BlockRef]]
    cursors: dict[str, tuple[int, int]]


class _Stream:
    """One kind: its segment log and acknowledgement state. I/O thread only."""

    def __init__(self, kind: Kind, directory: Path, segment_bytes: int, fsync: bool) -> None:
        self.kind = kind
        self.dir = directory
        self.log = SegmentLog(directory, segment_bytes=segment_bytes, fsync=fsync)
        self.acked = RangeSet()
        self.acks_dirty = False
        self.unacked = 0  # committed records not acknowledged (in flight included, orphans not)
        self.inflight_records = 0
        self.cursor: tuple[int, int] = (0, 0)  # (segment first id, offset): where the oldest-first scan goes on
        self.recent: deque[BlockRef] = deque(maxlen=RECENT_BLOCKS)
        self.inflight: dict[int, BlockRef] = {}
        self.orphans: set[int] = set()  # in flight when their segment was dropped
        self.head_wall: int | None = None
        self.corrupt = 0

    # ------------------------------------------------------------------ state file
    @property
    def _acks_path(self) -> Path:
        return self.dir / "acked.json"

    def _load_acks(self) -> RangeSet:
        try:
            data = json.loads(self._acks_path.read_text())
            return RangeSet((int(lo), int(hi)) for lo, hi in data["acked"])
        except FileNotFoundError:
            return RangeSet()
        except (OSError, ValueError, TypeError, KeyError) as e:
            log.warning("spool %s: unreadable %s (%s): every block on disk will be re-sent", self.kind,
                        self._acks_path, e)
            return RangeSet()

    def save_acks(self) -> None:
        """Write ``acked.json`` if it changed; raises OSError (disk full) and stays dirty."""
        if not self.acks_dirty:
            return
        write_private(self._acks_path, json.dumps({"acked": self.acked.to_list()}).encode(), fsync=False)
        self.acks_dirty = False

    # ------------------------------------------------------------------ lifecycle
    def recover(self) -> Recovery:
        private_dir(self.dir)
        with contextlib.suppress(OSError):  # left by a version that wrote acked.tmp
            (self.dir / "acked.tmp").unlink()
        self.acked = self._load_acks()
        top = self.acked.max()

        def on_block(ref: BlockRef) -> None:
            if ref.id not in self.acked:
                self.unacked += ref.count

        rep = self.log.recover(on_block, 0 if top is None else top + 1)
        self.log.open_tail()
        self._prune()
        self.cursor = (self.log.segments[0].first_id, 0) if self.log.segments else (self.log.next_id, 0)
        return rep

    def _prune(self) -> None:
        low = self.log.segments[0].first_id if self.log.segments else self.log.next_id
        n = len(self.acked)
        self.acked.prune_below(low)
        if len(self.acked) != n:
            self.acks_dirty = True

    # ------------------------------------------------------------------ writing
    def append(self, blocks: Sequence[tuple[bytes, int]], wall_ns: int) -> int:
        refs = self.log.append(blocks, wall_ns)
        self.recent.extend(refs)
        n = sum(r.count for r in refs)
        self.unacked += n
        return len(refs)

    def mark(self) -> tuple[Mark, int, int]:
        return self.log.mark(), self.unacked, self.log.next_id

    def rollback(self, mark: tuple[Mark, int, int]) -> None:
        """Undo the appends since ``mark`` (a commit that failed half way)."""
        log_mark, unacked, next_id = mark
        self.log.rollback(log_mark)
        self.unacked = unacked
        while self.recent and self.recent[-1].id >= next_id:
            self.recent.pop()

    def drop_oldest(self) -> tuple[int, int]:
        """Delete the oldest segment; (unsent records lost, bytes freed)."""
        seg = self.log.segments[0]
        lost = 0

        def on_block(ref: BlockRef) -> None:
            nonlocal lost
            if ref.id in self.acked or ref.id in self.orphans:
                return
            self.unacked -= ref.count
            if ref.id in self.inflight:  # counted if the send fails (release), not if it succeeds
                self.orphans.add(ref.id)
                self.inflight_records -= ref.count
            else:
                lost += ref.count

        self.log.walk(seg, on_block)
        freed = seg.size
        first, last = seg.first_id, seg.last_id
        self.log.delete(seg)
        if last >= first:
            self.acked.add(first, last)
        if any(r.segment == first for r in self.recent):
            self.recent = deque((r for r in self.recent if r.segment != first), maxlen=RECENT_BLOCKS)
        self._prune()
        self.acks_dirty = True
        return lost, freed

    # ------------------------------------------------------------------ reading
    def unsent(self) -> int:
        return self.unacked - self.inflight_records

    def _next_ref(self) -> BlockRef | None:
        segs = self.log.segments
        while True:
            first, off = self.cursor
            seg = self.log.find(first)
            if seg is None:
                nxt = next((s for s in segs if s.first_id > first), None)
                if nxt is None:
                    return None
                self.cursor = (nxt.first_id, 0)
                continue
            if off >= seg.size:
                i = segs.index(seg)
                if i + 1 >= len(segs):
                    return None
                self.cursor = (segs[i + 1].first_id, 0)
                continue
            try:
                return self.log.header_at(first, off)
            except (CorruptBlockError, OSError) as e:
                log.error("spool %s: %s in %s: skipping the rest of that segment", self.kind, e, seg.path)
                self.cursor = (first, seg.size)

    def _take(self, ref: BlockRef) -> bytes | None:
        try:
            payload = self.log.read(ref)
        except (CorruptBlockError, OSError) as e:
            log.error("spool %s: block %d unreadable (%s): its %d records are dropped", self.kind, ref.id, e,
                      ref.count)
            self.acked.add(ref.id)
            self.acks_dirty = True
            self.unacked -= ref.count
            self.corrupt += ref.count
            return None
        self.inflight[ref.id] = ref
        self.inflight_records += ref.count
        return payload

    def take_head(self, room: int, room_bytes: int, first_ok: bool) -> list[tuple[BlockRef, bytes]]:
        """Oldest unsent blocks, up to ``room`` records (one bigger block if ``first_ok``)."""
        out: list[tuple[BlockRef, bytes]] = []
        n = size = 0
        while True:
            ref = self._next_ref()
            if ref is None:
                break
            if ref.id in self.acked or ref.id in self.inflight:
                self.cursor = (ref.segment, ref.end)
                continue
            if (out or not first_ok) and (n + ref.count > room or size + ref.length > room_bytes):
                break
            self.cursor = (ref.segment, ref.end)
            payload = self._take(ref)
            if payload is None:
                continue
            if not out:
                self.head_wall = ref.wall_ns
            out.append((ref, payload))
            n += ref.count
            size += ref.length
        return out

    def take_tail(self, room: int, room_bytes: int, first_ok: bool) -> list[tuple[BlockRef, bytes]]:
        """Newest unsent blocks, up to ``room`` records, in order."""
        picked: list[BlockRef] = []
        n = size = 0
        for ref in reversed(self.recent):
            if ref.id in self.acked or ref.id in self.inflight:
                continue
            if (picked or not first_ok) and (n + ref.count > room or size + ref.length > room_bytes):
                break
            picked.append(ref)
            n += ref.count
            size += ref.length
        out = []
        for ref in reversed(picked):
            payload = self._take(ref)
            if payload is not None:
                out.append((ref, payload))
        return out

    def ack(self, refs: Sequence[BlockRef]) -> None:
        for ref in refs:
            self.inflight.pop(ref.id, None)
            if ref.id in self.orphans:
                self.orphans.discard(ref.id)
            else:
                self.unacked -= ref.count
                self.inflight_records -= ref.count
            self.acked.add(ref.id)
        if refs:
            self.acks_dirty = True
            self._compact()
        recent = self.recent
        while recent and recent[-1].id in self.acked:
            recent.pop()
        while recent and recent[0].id in self.acked:
            recent.popleft()

    def release(self, refs: Sequence[BlockRef]) -> int:
        """Back to unsent; returns records lost meanwhile (their segment was dropped)."""
        lost = 0
        for ref in refs:
            self.inflight.pop(ref.id, None)
            if ref.id in self.orphans:
                self.orphans.discard(ref.id)
                lost += ref.count
            else:
                self.inflight_records -= ref.count
        return lost

    def _compact(self) -> None:
        for seg in list(self.log.segments):
            if not seg.empty and self.acked.covers(seg.first_id, seg.last_id):
                self.log.delete(seg)
        self._prune()


class SpoolLockedError(RuntimeError):
    """Another spool (another gateway process, or a sink not yet stopped) has the directory."""


class _State:
    """Both streams, the overflow policy and batch assembly. I/O thread only."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int, block_bytes: int,
                 fsync: bool, backlog_records: int | None) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.block_bytes = block_bytes
        self.backlog_records = backlog_records  # None: strict order, never newest-first
        self.streams: dict[str, _Stream] = {k: _Stream(k, directory / k, segment_bytes, fsync) for k in KINDS}
        self.tail_turn = False
        self._lock_fd: int | None = None
        self.acks_error: str | None = None
        self.dropped_unreported = {"priority": 0, "reading": 0}  # by commits that then failed

    def open(self) -> tuple[dict[str, Recovery], Stats]:
        private_dir(self.dir)
        fd = private_open(self.dir / "lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if the process dies
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(f"spool {self.dir} is in use (another gateway, or a sink not stopped)") from None
        self._lock_fd = fd
        try:
            return {k: s.recover() for k, s in self.streams.items()}, self.stats()
        except BaseException:
            self.unlock()
            raise

    def unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def stats(self) -> Stats:
        p, r = self.streams["priority"], self.streams["reading"]
        st = Stats(
            bytes=p.log.bytes + r.log.bytes,
            unacked={"priority": p.unacked, "reading": r.unacked},
            unsent=p.unsent() + r.unsent(),
            oldest_wall_ns=r.head_wall if r.unacked > 0 else None,
            corrupt={"priority": p.corrupt, "reading": r.corrupt},
            acks_error=self.acks_error,
        )
        p.corrupt = r.corrupt = 0
        return st

    def _blocks(self, records: list[str], block_records: int) -> tuple[list[tuple[bytes, int]], int]:
        out: list[tuple[bytes, int]] = []
        invalid = 0
        for i in range(0, len(records), block_records):
            chunk = records[i : i + block_records]
            payload = "\n".join(chunk).encode("utf-8", "replace")
            if payload.count(b"\n") != len(chunk) - 1:  # a record holding a newline cannot be framed
                good = [r for r in chunk if "\n" not in r and "\r" not in r]
                invalid += len(chunk) - len(good)
                if not good:
                    continue
                chunk = good
                payload = "\n".join(chunk).encode("utf-8", "replace")
            self._split(chunk, payload, out)
        return out, invalid

    def _split(self, chunk: list[str], payload: bytes, out: list[tuple[bytes, int]]) -> None:
        if len(payload) > self.block_bytes and len(chunk) > 1:
            mid = len(chunk) // 2
            for part in (chunk[:mid], chunk[mid:]):
                self._split(part, "\n".join(part).encode("utf-8", "replace"), out)
        else:
            out.append((payload, len(chunk)))

    def commit(self, prio: list[str], reads: list[str], block_records: int, wall_ns: int) -> CommitResult:
        t0 = time.perf_counter()
        P, R = self.streams["priority"], self.streams["reading"]
        bp, inv_p = self._blocks(prio, block_records)
        br, inv_r = self._blocks(reads, block_records)
        need_p = sum(HEADER_SIZE + len(b) for b, _ in bp)
        need_r = sum(HEADER_SIZE + len(b) for b, _ in br)
        dropped = {"priority": 0, "reading": 0}
        if P.log.bytes + need_p > self.max_bytes:
            # Priority records alone are over the limit: readings get no room at all (all of
            # them go first); then, as the last resort, the oldest priority segments.
            dropped["reading"] += sum(c for _, c in br)
            br, need_r = [], 0
            while R.log.segments:
                dropped["reading"] += R.drop_oldest()[0]
            while P.log.segments and P.log.bytes + need_p > self.max_bytes:
                dropped["priority"] += P.drop_oldest()[0]
        room_r = max(0, self.max_bytes - P.log.bytes - need_p)
        # new readings larger than all the room there is: the oldest of them go
        k = 0
        while k < len(br) and need_r > room_r:
            need_r -= HEADER_SIZE + len(br[k][0])
            dropped["reading"] += br[k][1]
            k += 1
        br = br[k:]
        # the oldest reading segments go until the new blocks fit
        while R.log.segments and R.log.bytes + need_r > room_r:
            dropped["reading"] += R.drop_oldest()[0]
        marks = (P.mark(), R.mark())
        try:
            blocks = P.append(bp, wall_ns) + R.append(br, wall_ns)
            P.log.sync()
            R.log.sync()
        except OSError:
            # all or nothing: the records go back to the pending list and are committed again,
            # so nothing of this commit may stay on disk (it would be sent twice)
            P.rollback(marks[0])
            R.rollback(marks[1])
            for kind, n in dropped.items():  # the drops did happen: reported with the next commit
                self.dropped_unreported[kind] += n
            raise
        for kind, n in self.dropped_unreported.items():
            dropped[kind] += n
        self.dropped_unreported = {"priority": 0, "reading": 0}
        self.save_acks()
        return CommitResult(blocks, dropped, inv_p + inv_r, time.perf_counter() - t0, self.stats())

    def save_acks(self) -> Stats:
        """Write the acknowledgement state of both kinds; a failure (disk full) is kept in
        ``acks_error`` and the state stays dirty in memory (retried by the next call)."""
        errors = []
        for s in self.streams.values():
            try:
                s.save_acks()
            except OSError as e:
                errors.append(f"{s.kind}/acked.json: {type(e).__name__}: {e}")
        self.acks_error = "; ".join(errors) or None
        return self.stats()

    def next_batch(self, max_records: int, max_bytes: int) -> tuple[bytes, int, int, _Token, Stats] | None:
        P, R = self.streams["priority"], self.streams["reading"]
        cursors = {k: s.cursor for k, s in self.streams.items()}
        prio = P.take_head(max_records, max_bytes, True)
        n_p = sum(r.count for r, _ in prio)
        size = sum(r.length for r, _ in prio)
        reads: list[tuple[BlockRef, bytes]] = []
        room = max_records - n_p
        if room > 0 or not prio:
            backlog = self.backlog_records is not None and R.unsent() > self.backlog_records
            self.tail_turn = backlog and not self.tail_turn
            if self.tail_turn:
                reads = R.take_tail(room, max_bytes - size, not prio)
            if not reads:
                reads = R.take_head(room, max_bytes - size, not prio)
        if not prio and not reads:
            return None
        body = b"\n".join([p for _, p in prio] + [p for _, p in reads])
        n = n_p + sum(r.count for r, _ in reads)
        token = _Token({"priority": [r for r, _ in prio], "reading": [r for r, _ in reads]}, cursors)
        return body, n, n_p, token, self.stats()

    def ack(self, token: _Token) -> Stats:
        for k, refs in token.refs.items():
            self.streams[k].ack(refs)
        # a small rename, no fsync: after a crash fewer blocks are sent twice
        return self.save_acks()

    def release(self, token: _Token) -> tuple[dict[str, int], Stats]:
        lost = {}
        for k, refs in token.refs.items():
            s = self.streams[k]
            lost[k] = s.release(refs)
            if refs:
                s.cursor = token.cursors[k]
        return lost, self.stats()

    def close(self) -> str | None:
        """Save the acknowledgement state and close; returns the acks error, if any (the
        blocks acknowledged since the last save are then sent again after the restart)."""
        try:
            self.save_acks()
            for s in self.streams.values():
                s.log.close()
        finally:
            self.unlock()
        return self.acks_error


class Spool(GroupCommit):
    """Durable spool for one sink (see the module docstring). Create, ``await open()``,
    ``append``/``next_batch``/``ack``/``release``, ``await close()``."""

    durable = True

    def __init__(
        self,
        directory: Path,
        *,
        name: str,
        metrics: Metrics,
        max_bytes: int,
        block_records: int = 5000,
        commit_interval: float = 1.0,
        max_pending: int = 200_000,
        max_pending_priority: int = 100_000,
        max_batch_bytes: int = 8 * MiB,
        segment_bytes: int | None = None,
        fsync: bool = True,
        interleave: bool = True,
        spool_metrics: SpoolMetrics | None = None,
    ) -> None:
        super().__init__(block_records, commit_interval)
        self.dir = Path(directory)
        self.name = name
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.max_pending_priority = max_pending_priority
        self.max_batch_bytes = max_batch_bytes
        seg = segment_bytes or default_segment_bytes(max_bytes)
        self._state = _State(self.dir, max_bytes=max_bytes, segment_bytes=seg,
                             block_bytes=max(4096, min(MiB, seg // 2)), fsync=fsync,
                             backlog_records=4 * block_records if interleave else None)
        self._io: ThreadPoolExecutor | None = None
        self._pend_p: list[str] = []
        self._pend_r: list[str] = []
        self._committing = 0
        self._stats = Stats()
        self._opened = False
        self.last_error: str | None = None
        self.acks_error: str | None = None  # acked.json not written (disk full): in memory, retried
        self._acks_retry: asyncio.Task[None] | None = None
        self.recovery: dict[str, Recovery] = {}
        self._rlog = RateLimitedLog(log, 30.0)
        # one set of collectors per registry, shared by every spool and kept across reloads
        self._bind_metrics(spool_metrics or metrics.group(SpoolMetrics))
        self._dropped = metrics.sink_dropped

    def _bind_metrics(self, sm: SpoolMetrics) -> None:
        name = self.name
        self._sm = sm
        self._g_bytes = sm.bytes.labels(name)
        self._g_records = {k: sm.records.labels(name, k) for k in KINDS}
        self._g_pending = sm.pending.labels(name)
        self._g_backlog = sm.backlog_seconds.labels(name)
        self._c_commits = sm.commits.labels(name)
        self._h_commit = sm.commit_seconds.labels(name)

    # ------------------------------------------------------------------ plumbing
    async def _io_call(self, fn: Any, *args: Any) -> Any:
        assert self._io is not None, "spool not open"
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def _drop(self, kind: str, reason: str, n: int) -> None:
        if n > 0:
            self._dropped.labels(self.name, kind, reason).inc(n)

    def _apply(self, st: Stats) -> None:
        self._stats = st
        self._acks_state(st.acks_error)
        self._g_bytes.set(st.bytes)
        for k in KINDS:
            self._g_records[k].set(st.unacked[k])
            self._drop(k, "corrupt", st.corrupt[k])
        self._g_pending.set(len(self._pend_p) + len(self._pend_r) + self._committing)
        # whole seconds: the gateway measurement then always gets an integer field
        self._g_backlog.set(0 if st.oldest_wall_ns is None else max(0, int(time.time() - st.oldest_wall_ns / 1e9)))
        if st.unsent > 0:
            self.readable.set()

    def _acks_state(self, error: str | None) -> None:
        if error is not None and self.acks_error is None:
            self._sm.errors.labels(self.name, "acks").inc()
            self._rlog.log(logging.ERROR, "acks", "spool %s: acknowledgement state not saved (%s); kept in memory, "
                           "retrying", self.name, error)
        elif error is None and self.acks_error is not None:
            log.info("spool %s: acknowledgement state saved again", self.name)
        self.acks_error = error
        idle = self._acks_retry is None or self._acks_retry.done()
        if error is not None and self._opened and not self._closing and idle:
            self._acks_retry = asyncio.create_task(self._retry_acks(), name=f"spool-acks-{self.name}")

    async def _retry_acks(self) -> None:
        """Write the acknowledgement state again until it works (the next commit or ack also
        tries): without this an idle spool would stay degraded after the disk recovered."""
        backoff = Backoff(ACKS_RETRY_INITIAL, ACKS_RETRY_MAX)
        while self.acks_error is not None and self._opened and not self._closing and self._io is not None:
            await asyncio.sleep(backoff.next_delay())
            if self._io is None:
                return
            self._apply(await self._io_call(self._state.save_acks))

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._opened:
            return
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spool-{self.name}")
        t0 = time.perf_counter()
        try:
            self.recovery, st = await self._io_call(self._state.open)
        except BaseException:
            self._io.shutdown(wait=False)
            self._io = None
            raise
        self._opened = True
        for k, rep in self.recovery.items():
            if st.unacked[k]:
                self._sm.recovered.labels(self.name, k).inc(st.unacked[k])
            if rep.truncated_bytes:
                self._sm.truncated_bytes.labels(self.name).inc(rep.truncated_bytes)
            for p in rep.problems or []:
                log.warning("spool %s/%s: %s", self.name, k, p)
        if st.unacked["priority"] or st.unacked["reading"]:
            log.info(
                "spool %s: replaying %d readings and %d priority records (%d bytes) left from the last run "
                "(recovered in %.2f s)", self.name, st.unacked["reading"], st.unacked["priority"], st.bytes,
                time.perf_counter() - t0,
            )
        self._apply(st)
        self._reopened()
        self._start_committer(f"spool-commit-{self.name}")

    async def close(self) -> int:
        """Commit what is pending and close; returns records lost (pending that failed to commit)."""
        if not self._opened:
            return 0
        await self._stop_committer()
        if self._acks_retry is not None:
            self._acks_retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._acks_retry
            self._acks_retry = None
        await self.flush()
        lost = len(self._pend_p) + len(self._pend_r)
        if lost:
            log.error("spool %s: %d records could not be committed at shutdown: %s", self.name, lost,
                      self.last_error)
        acks_error = await self._io_call(self._state.close)
        if acks_error is not None:
            log.error("spool %s: acknowledgement state not saved at shutdown (%s): blocks acknowledged since the "
                      "last save are sent again after the restart", self.name, acks_error)
        io, self._io = self._io, None
        assert io is not None
        await asyncio.to_thread(io.shutdown, True)
        self._opened = False
        self._pend_p, self._pend_r = [], []
        self._closed_for_good()
        return lost

    # ------------------------------------------------------------------ producers (event loop, no I/O)
    def append(self, kind: Kind, records: Sequence[str]) -> None:
        if not records:
            return
        if kind == "priority":
            self._pend_p.extend(records)
        else:
            self._pend_r.extend(records)
            self._appended += len(records)
        self._trim()
        self._note_append(kind)

    def _trim(self) -> None:
        over = len(self._pend_r) - self.max_pending
        if over > 0:
            del self._pend_r[:over]
            self._drop("reading", "overflow", over)
            self._rlog.warning("pending", "spool %s: %d readings waiting for a commit (disk stalled?): oldest "
                               "dropped", self.name, self.max_pending)
        over = len(self._pend_p) - self.max_pending_priority
        if over > 0:
            del self._pend_p[:over]
            self._drop("priority", "overflow", over)

    def _pending_readings(self) -> int:
        return len(self._pend_r)

    def _has_pending(self) -> bool:
        return bool(self._pend_p or self._pend_r)

    def _failing(self) -> bool:
        return self.last_error is not None

    async def _commit(self, full_only: bool) -> bool:
        prio, self._pend_p = self._pend_p, []
        if full_only:
            k = len(self._pend_r) // self.block_records * self.block_records
            reads = self._pend_r[:k]
            del self._pend_r[:k]
        else:
            reads, self._pend_r = self._pend_r, []
        if not prio and not reads:
            return True
        self._committing = len(prio) + len(reads)
        try:
            res: CommitResult = await self._io_call(
                self._state.commit, prio, reads, self.block_records, time.time_ns()
            )
        except Exception as e:  # disk full, I/O error: keep the records and try again later
            self._committing = 0
            self._pend_p[:0] = prio
            self._pend_r[:0] = reads
            self._trim()
            self.last_error = f"commit: {type(e).__name__}: {e}"
            self._sm.errors.labels(self.name, "commit").inc()
            self._rlog.log(logging.ERROR, "commit", "spool %s: commit failed, will retry: %s", self.name, e)
            return False
        self._committing = 0
        self.last_error = None
        self._c_commits.inc()
        self._h_commit.observe(res.seconds)
        for kind, n in res.dropped.items():
            if n:
                self._drop(kind, "spool_overflow", n)
                self._rlog.warning(f"overflow-{kind}", "spool %s full (%d bytes): oldest %s records dropped",
                                   self.name, self.max_bytes, kind)
        if res.invalid:
            self._drop("reading", "invalid", res.invalid)
        self._apply(res.stats)
        return True

    # ------------------------------------------------------------------ consumer
    async def next_batch(self, max_records: int) -> Batch | None:
        if self._stats.unsent <= 0 or not self._opened:
            self.readable.clear()
            return None
        got = await self._io_call(self._state.next_batch, max_records, self.max_batch_bytes)
        if got is None:
            self._stats.unsent = 0
            self.readable.clear()
            return None
        body, n, n_p, token, st = got
        self._apply(st)
        return Batch(body, n, n_p, token)

    async def ack(self, batch: Batch) -> None:
        self._apply(await self._io_call(self._state.ack, batch.token))

    async def release(self, batch: Batch) -> None:
        lost, st = await self._io_call(self._state.release, batch.token)
        for k, n in lost.items():
            self._drop(k, "spool_overflow", n)
        self._apply(st)

    # ------------------------------------------------------------------ state
    @property
    def records(self) -> int:
        """Everything not yet acknowledged: pending, being committed, and on disk."""
        st = self._stats
        return len(self._pend_p) + len(self._pend_r) + self._committing + st.unacked["priority"] + st.unacked[
            "reading"]

    @property
    def pending(self) -> int:
        return len(self._pend_p) + len(self._pend_r) + self._committing

    @property
    def bytes(self) -> int:
        return self._stats.bytes

    def health(self) -> dict[str, Any]:
        st = self._stats
        return {
            "ok": self._opened and self.last_error is None and self.acks_error is None,
            "durable": True,
            "path": str(self.dir),
            "bytes": st.bytes,
            "max_bytes": self.max_bytes,
            "records": {"priority": st.unacked["priority"], "reading": st.unacked["reading"]},
            "pending": self.pending,
            "backlog_s": None if st.oldest_wall_ns is None else max(0.0, time.time() - st.oldest_wall_ns / 1e9),
            "last_error": self.last_error,
            "acks_error": self.acks_error,
        }
