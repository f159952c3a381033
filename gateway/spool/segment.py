"""The on-disk format: an append-only log of checksummed blocks in numbered segment files.

A *block* is what one group commit writes for one stream: up to a few thousand records,
joined by ``\\n`` (records never contain a newline), behind a 32-byte header::

    offset size field
    0      4    magic   b"HZS1"
    4      4    crc32   of bytes 8..32 of the header and of the payload
    8      4    length  payload bytes
    12     4    count   records in the payload
    16     8    id      block id, +1 per block, never reused within a stream
    24     8    wall    commit time, ns since the epoch (for backlog age)
    32     ...  payload UTF-8 records joined by b"\\n"

A *segment* is a file ``{first block id:020d}.seg`` holding consecutive blocks. A stream
appends to its last segment only; when that reaches ``segment_bytes`` it is fsynced and
closed before the next one is created, so after a crash (kill -9, power loss) only the
last segment of a stream can end in a torn block. Recovery walks the block headers of
every segment, checks the CRC of every block of the last one and truncates it at the
first block that is incomplete or does not verify. Blocks of older segments are checked
when they are read (a mismatch there is media corruption: the block is skipped and
counted). A fully acknowledged segment is deleted whole, so disk use follows the backlog
with no compaction step.

:class:`SegmentLog` is synchronous and not thread-safe; :class:`gateway.spool.Spool`
confines each one to its single I/O thread.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.core.files import private_dir, private_open

MAGIC = b"HZS1"
_HEADER = struct.Struct("<4sIIIQQ")  # magic, crc32, length, count, id, wall ns
_REST = struct.Struct("<IIQQ")  # the part the CRC covers
HEADER_SIZE = _HEADER.size  # 32
SUFFIX = ".seg"
_IOV_MAX = 512
_MAX_READ_FDS = 8


class CorruptBlockError(Exception):
    """A block whose header or CRC does not verify."""


@dataclass(frozen=True, slots=True)
class BlockRef:
    """Where a block is: its segment (by first block id), offset and size."""

    id: int
    segment: int
    offset: int
    length: int  # payload bytes
    count: int  # records
    wall_ns: int

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + self.length

    @property
    def size(self) -> int:
        return HEADER_SIZE + self.length


@dataclass(slots=True)
class Segment:
    first_id: int
    path: Path
    size: int = 0
    last_id: int = -1  # first_id - 1 while empty

    @property
    def empty(self) -> bool:
        return self.last_id < self.first_id


@dataclass(frozen=True, slots=True)
class Mark:
    """The end of a :class:`SegmentLog` at one moment (see :meth:`SegmentLog.mark`)."""

    next_id: int
    segments: int
    last: tuple[Segment, int, int] | None  # the last segment, its size and last block id then


@dataclass(slots=True)
class Recovery:
    segments: int = 0
    blocks: int = 0
    records: int = 0
    bytes: int = 0
    truncated_bytes: int = 0  # torn tail removed
    problems: list[str] | None = None


def encode_header(block_id: int, payload: bytes, count: int, wall_ns: int) -> bytes:
    rest = _REST.pack(len(payload), count, block_id, wall_ns)
    crc = zlib.crc32(payload, zlib.crc32(rest))
    return MAGIC + crc.to_bytes(4, "little") + rest


def decode_header(raw: bytes, segment: int, offset: int) -> tuple[BlockRef, int]:
    """(ref, crc) from 32 header bytes; CorruptBlockError if the magic is wrong."""
    magic, crc, length, count, block_id, wall = _HEADER.unpack(raw)
    if magic != MAGIC:
        raise CorruptBlockError(f"bad magic at offset {offset}")
    return BlockRef(block_id, segment, offset, length, count, wall), crc


def check_block(raw: bytes, crc: int) -> bool:
    """``raw`` is header + payload; True when the CRC matches."""
    return zlib.crc32(raw[HEADER_SIZE:], zlib.crc32(raw[8:HEADER_SIZE])) == crc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentLog:
    """One stream of blocks in ``directory``. Synchronous; use from one thread only."""

    def __init__(self, directory: Path, *, segment_bytes: int, fsync: bool = True) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.segments: list[Segment] = []
        self.next_id = 0
        self._active_fd: int | None = None  # append fd of segments[-1]
        self._dirty = False  # written since the last sync
        self._dir_dirty = False  # files created or removed since the last sync
        self._read_fds: dict[int, int] = {}  # segment first id -> fd

    # ------------------------------------------------------------------ recovery
    def recover(self, on_block: Callable[[BlockRef], None], min_next_id: int = 0) -> Recovery:
        """Load the segments, truncating a torn tail; ``on_block`` sees every valid block."""
        private_dir(self.dir)
        rep = Recovery(problems=[])
        paths = []
        for p in self.dir.iterdir():
            if p.suffix == SUFFIX and p.stem.isdigit():
                paths.append((int(p.stem), p))
            elif p.name.endswith(SUFFIX + ".tmp"):
                p.unlink()
        paths.sort()
        expected: int | None = None
        for i, (first, path) in enumerate(paths):
            last = i == len(paths) - 1
            seg = Segment(first, path, 0, first - 1)
            if expected is not None and first < expected:
                rep.problems.append(f"{path.name}: overlaps the previous segment; removed")  # type: ignore[union-attr]
                path.unlink()
                continue
            self._scan(seg, verify=last, on_block=on_block, rep=rep)
            if seg.empty and not last:
                path.unlink()
                continue
            self.segments.append(seg)
            expected = seg.last_id + 1
            rep.segments += 1
            rep.bytes += seg.size
        self.next_id = max(min_next_id, expected or 0, self.segments[-1].first_id if self.segments else 0)
        if self.segments and self.segments[-1].empty:
            # an empty last segment (crash right after it was created) must start at next_id
            s = self.segments.pop()
            s.path.unlink()
            rep.segments -= 1
        return rep

    def _scan(self, seg: Segment, *, verify: bool, on_block: Callable[[BlockRef], None], rep: Recovery) -> None:
        with seg.path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos = 0
            want = seg.first_id
            problem = None
            while pos < size:
                if size - pos < HEADER_SIZE:
                    problem = "torn header"
                    break
                f.seek(pos)
                raw = f.read(HEADER_SIZE)
                try:
                    ref, crc = decode_header(raw, seg.first_id, pos)
                except CorruptBlockError as e:
                    problem = str(e)
                    break
                if ref.id != want:
                    problem = f"block id {ref.id} where {want} was expected"
                    break
                if ref.end > size:
                    problem = "torn block"
                    break
                if verify and not check_block(raw + f.read(ref.length), crc):
                    problem = "CRC mismatch"
                    break
                on_block(ref)
                rep.blocks += 1
                rep.records += ref.count
                pos = ref.end
                want += 1
        if problem is not None:
            # Only the last segment can be torn by a crash; elsewhere this is corruption and
            # the rest of that segment is unreadable (its blocks cannot be found any more).
            rep.truncated_bytes += size - pos
            assert rep.problems is not None
            rep.problems.append(f"{seg.path.name}: {problem} at offset {pos}: truncated {size - pos} bytes")
            os.truncate(seg.path, pos)
            self._dir_dirty = True
            size = pos
        seg.size = size
        seg.last_id = want - 1

    # ------------------------------------------------------------------ writing
    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def append(self, blocks: Sequence[tuple[builtins.bytes, int]], wall_ns: int) -> list[BlockRef]:
        """Write ``(payload, count)`` blocks (durable after :meth:`sync`). All or nothing: on
        an OSError (disk full) the files and the state are rolled back and the error raised."""
        if not blocks:
            return []
        saved = self.mark()
        try:
            return self._append(blocks, wall_ns)
        except OSError:
            self.rollback(saved)
            raise

    def mark(self) -> Mark:
        """Where the log ends now; :meth:`rollback` returns to it (a commit that wrote one
        stream but failed on the next, or whose fdatasync failed, is undone whole)."""
        last = (self.segments[-1], self.segments[-1].size, self.segments[-1].last_id) if self.segments else None
        return Mark(self.next_id, len(self.segments), last)

    def rollback(self, mark: Mark) -> None:
        """Forget (truncate, delete) every block written after ``mark``."""
        self._rollback(mark.next_id, mark.segments, mark.last)

    def _append(self, blocks: Sequence[tuple[builtins.bytes, int]], wall_ns: int) -> list[BlockRef]:
        refs: list[BlockRef] = []
        i = 0
        while i < len(blocks):
            seg = self.segments[-1] if self.segments else None
            if seg is None or self._active_fd is None or seg.size >= self.segment_bytes:
                seg = self._roll()
            iov: list[bytes] = []
            group: list[BlockRef] = []
            size = seg.size
            bid = self.next_id
            while i < len(blocks) and (not group or size < self.segment_bytes) and len(iov) < _IOV_MAX:
                payload, count = blocks[i]
                ref = BlockRef(bid, seg.first_id, size, len(payload), count, wall_ns)
                iov.append(encode_header(bid, payload, count, wall_ns))
                iov.append(payload)
                group.append(ref)
                size += ref.size
                bid += 1
                i += 1
            self._write(iov)
            seg.size = size
            seg.last_id = bid - 1
            self.next_id = bid
            refs.extend(group)
        return refs

    def _rollback(self, saved_next: int, saved_n: int, saved_last: tuple[Segment, int, int] | None) -> None:
        if self._active_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._active_fd)
            self._active_fd = None
            self._dirty = False
        for seg in self.segments[saved_n:]:
            with contextlib.suppress(OSError):
                seg.path.unlink()
        del self.segments[saved_n:]
        if saved_last is not None:
            seg, size, last = saved_last
            with contextlib.suppress(OSError):
                os.truncate(seg.path, size)
            seg.size, seg.last_id = size, last
        self.next_id = saved_next

    def _write(self, iov: list[builtins.bytes]) -> None:
        assert self._active_fd is not None
        fd = self._active_fd
        total = sum(len(b) for b in iov)
        done = os.writev(fd, iov)
        if done < total:  # a short write (rare): write the rest
            rest = memoryview(b"".join(iov))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]
        self._dirty = True

    def _roll(self) -> Segment:
        """Close the active segment (durably) and start a new one at ``next_id``."""
        if self._active_fd is not None:
            if self._dirty and self.fsync:
                os.fdatasync(self._active_fd)
            self._dirty = False
            os.close(self._active_fd)
            self._active_fd = None
        if self.segments and self.segments[-1].empty:
            seg = self.segments[-1]
        else:
            seg = Segment(self.next_id, self.dir / f"{self.next_id:020d}{SUFFIX}", 0, self.next_id - 1)
            self.segments.append(seg)
            self._dir_dirty = True
        self._active_fd = private_open(seg.path, os.O_WRONLY | os.O_APPEND)
        if seg.size:
            os.ftruncate(self._active_fd, seg.size)
        return seg

    def open_tail(self) -> None:
        """After recovery: append to the last segment, unless it is full or ``next_id`` does
        not follow its last block (newer segments were acknowledged and deleted)."""
        seg = self.segments[-1] if self.segments else None
        if seg is not None and seg.size < self.segment_bytes and seg.last_id + 1 == self.next_id:
            self._active_fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)

    def sync(self) -> None:
        """Make everything written so far durable (one fdatasync; the directory if changed)."""
        if self._dirty and self._active_fd is not None and self.fsync:
            os.fdatasync(self._active_fd)
        self._dirty = False
        if self._dir_dirty:
            if self.fsync:
                _fsync_dir(self.dir)
            self._dir_dirty = False

    # ------------------------------------------------------------------ reading
    def _fd(self, segment: int) -> int:
        fd = self._read_fds.get(segment)
        if fd is None:
            if len(self._read_fds) >= _MAX_READ_FDS:
                old = next(iter(self._read_fds))
                os.close(self._read_fds.pop(old))
            seg = self.find(segment)
            if seg is None:
                raise FileNotFoundError(f"segment {segment} is gone")
            fd = self._read_fds[segment] = os.open(seg.path, os.O_RDONLY)
        return fd

    def find(self, first_id: int) -> Segment | None:
        for s in self.segments:
            if s.first_id == first_id:
                return s
        return None

    def header_at(self, segment: int, offset: int) -> BlockRef:
        """The block starting at ``offset`` of ``segment`` (header only)."""
        raw = os.pread(self._fd(segment), HEADER_SIZE, offset)
        if len(raw) < HEADER_SIZE:
            raise CorruptBlockError(f"short header at offset {offset}")
        return decode_header(raw, segment, offset)[0]

    def read(self, ref: BlockRef) -> builtins.bytes:
        """The payload of ``ref``, CRC-checked (CorruptBlockError otherwise)."""
        raw = os.pread(self._fd(ref.segment), ref.size, ref.offset)
        if len(raw) < ref.size:
            raise CorruptBlockError(f"short block {ref.id}")
        got, crc = decode_header(raw[:HEADER_SIZE], ref.segment, ref.offset)
        if got.id != ref.id or got.length != ref.length or not check_block(raw, crc):
            raise CorruptBlockError(f"block {ref.id}: CRC mismatch")
        return raw[HEADER_SIZE:]

    def walk(self, seg: Segment, on_block: Callable[[BlockRef], None]) -> None:
        """Headers of every block of ``seg`` (stops quietly at a damaged header)."""
        pos = 0
        while pos < seg.size:
            try:
                ref = self.header_at(seg.first_id, pos)
            except (CorruptBlockError, OSError):
                return
            on_block(ref)
            pos = ref.end

    # ------------------------------------------------------------------ removal
    def delete(self, seg: Segment) -> None:
        fd = self._read_fds.pop(seg.first_id, None)
        if fd is not None:
            os.close(fd)
        if seg is self.segments[-1] and self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
            self._dirty = False
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        self.segments.remove(seg)
        # no directory fsync: an unlink lost in a power cut only replays acknowledged blocks

    def close(self) -> None:
        self.sync()
        for fd in self._read_fds.values():
            os.close(fd)
        self._read_fds.clear()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
