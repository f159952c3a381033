"""The segment log format (gateway/spool/segment.py) and the ack range set: recovery after
torn writes and corruption, id continuity, atomic appends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.spool import BlockRef, CorruptBlockError, RangeSet, SegmentLog
from gateway.spool.segment import HEADER_SIZE, Recovery


def payload(i: int, n: int = 10) -> tuple[bytes, int]:
    return "\n".join(f"b{i}-r{j}" for j in range(n)).encode(), n


def fill(log: SegmentLog, blocks: int, start: int = 0) -> list[BlockRef]:
    refs = log.append([payload(i) for i in range(start, start + blocks)], 123)
    log.sync()
    return refs


def reopen(d: Path, segment_bytes: int = 1000) -> tuple[SegmentLog, list[BlockRef], Recovery]:
    log = SegmentLog(d, segment_bytes=segment_bytes)
    seen: list[BlockRef] = []
    rep = log.recover(seen.append)
    log.open_tail()
    return log, seen, rep


def test_rangeset_merges_and_prunes() -> None:
    r = RangeSet()
    r.add(5)
    r.add(7)
    assert list(r) == [(5, 5), (7, 7)]
    r.add(6)
    assert list(r) == [(5, 7)]
    r.add(1, 3)
    r.add(4)
    assert list(r) == [(1, 7)] and r.covers(2, 7) and not r.covers(0, 3)
    r.add(10, 12)
    assert 11 in r and 9 not in r and r.max() == 12
    r.prune_below(6)
    assert list(r) == [(6, 7), (10, 12)]
    r.prune_below(11)
    assert list(r) == [(11, 12)]
    assert RangeSet(r.to_list()).to_list() == [[11, 12]]


def test_append_read_and_segment_roll(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, segment_bytes=300)
    log.recover(lambda r: None)
    refs = fill(log, 12)
    assert [r.id for r in refs] == list(range(12))
    assert len(log.segments) > 2  # rolled at ~300 bytes
    for r in refs:
        assert log.read(r) == payload(r.id)[0]
    assert log.bytes == sum(r.size for r in refs)
    log.close()
    log2, seen, _ = reopen(tmp_path, 300)
    assert [r.id for r in seen] == list(range(12)) and log2.next_id == 12


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE + 3, -1])
def test_torn_tail_is_cut_and_earlier_blocks_kept(tmp_path: Path, cut: int) -> None:
    log = SegmentLog(tmp_path, segment_bytes=10**6)
    log.recover(lambda r: None)
    refs = fill(log, 5)
    log.close()
    seg = next(tmp_path.glob("*.seg"))
    last = refs[-1]
    # a crash in the middle of writing the last block: keep `cut` bytes of it
    os.truncate(seg, last.offset + (cut if cut > 0 else last.size - 1))
    log2, seen, rep = reopen(tmp_path, 10**6)
    assert [r.id for r in seen] == [0, 1, 2, 3]
    assert rep.truncated_bytes > 0 and seg.stat().st_size == last.offset
    # appending goes on from the right id, and the file stays readable
    more = fill(log2, 2, start=4)
    assert [r.id for r in more] == [4, 5]
    log2.close()
    _, seen3, rep3 = reopen(tmp_path, 10**6)
    assert [r.id for r in seen3] == [0, 1, 2, 3, 4, 5] and rep3.truncated_bytes == 0


def test_garbage_tail_from_power_loss_is_cut(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, segment_bytes=10**6)
    log.recover(lambda r: None)
    fill(log, 3)
    log.close()
    seg = next(tmp_path.glob("*.seg"))
    with seg.open("ab") as f:  # the file grew but the data never made it: zeros
        f.write(b"\0" * 500)
    _, seen, rep = reopen(tmp_path, 10**6)
    assert [r.id for r in seen] == [0, 1, 2] and rep.truncated_bytes == 500


def test_crc_mismatch_in_last_segment_truncates_there(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, segment_bytes=10**6)
    log.recover(lambda r: None)
    refs = fill(log, 4)
    log.close()
    seg = next(tmp_path.glob("*.seg"))
    with seg.open("r+b") as f:
        f.seek(refs[2].offset + HEADER_SIZE + 2)
        f.write(b"X")
    _, seen, _ = reopen(tmp_path, 10**6)
    assert [r.id for r in seen] == [0, 1]


def test_read_checks_the_crc(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, segment_bytes=100)
    log.recover(lambda r: None)
    refs = fill(log, 4)
    first = log.segments[0]
    with first.path.open("r+b") as f:
        f.seek(refs[0].offset + HEADER_SIZE)
        f.write(b"Z")
    with pytest.raises(CorruptBlockError):
        log.read(refs[0])
    assert log.read(refs[1]) == payload(1)[0]


def test_ids_never_restart_below_acknowledged_ones(tmp_path: Path) -> None:
    """The newest segments were acknowledged and deleted while older ones remain: the next
    block must not reuse ids, and must not be appended to the older segment."""
    log = SegmentLog(tmp_path, segment_bytes=100)
    log.recover(lambda r: None)
    fill(log, 6)
    newest = log.segments[-1]
    log.delete(newest)
    log.close()
    log2 = SegmentLog(tmp_path, segment_bytes=100)
    log2.recover(lambda r: None, min_next_id=newest.last_id + 1)
    log2.open_tail()
    refs = fill(log2, 1, start=99)
    assert refs[0].id == newest.last_id + 1 and refs[0].segment == refs[0].id  # a new segment
    log2.close()
    _, seen, rep = reopen(tmp_path, 100)
    assert rep.truncated_bytes == 0
    assert seen[-1].id == newest.last_id + 1


def test_failed_append_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = SegmentLog(tmp_path, segment_bytes=10**6)
    log.recover(lambda r: None)
    fill(log, 2)
    size = log.bytes

    def disk_full(fd: int, bufs: list[bytes]) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    with pytest.raises(OSError):
        log.append([payload(7)], 1)
    monkeypatch.undo()
    assert log.bytes == size and log.next_id == 2
    assert [r.id for r in fill(log, 1, start=2)] == [2]
    log.close()
    _, seen, rep = reopen(tmp_path, 10**6)
    assert [r.id for r in seen] == [0, 1, 2] and rep.truncated_bytes == 0
