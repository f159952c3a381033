"""Spool designs compared: SQLite in WAL mode vs the append-only segment log (the one kept).

    .venv/bin/python bench/spool_compare.py [--lines 300000] [--trials 5] [--dir /var/tmp]

Every design stores the same InfluxDB lines (~125 bytes, realistic tags) with group commit
and the same durability (an fsync per commit: SQLite ``synchronous=FULL``, the segment log
``fdatasync``). Measured, per design:

* append: lines/s committing groups of 2,000 lines (2,000 readings/s with a 1 s group
  commit: one fsync per group) and of 20,000 lines (a burst);
* drain: take a batch of 5,000 lines, acknowledge it (delete), until empty: lines/s;
* size: bytes on disk per line while full, against the raw line bytes, and what is left
  on disk after everything is acknowledged;
* recovery: time to open a full store (N lines) after kill -9, and correctness after
  kill -9 of a writer mid-stream (``--trials`` times): every line whose commit returned
  before the kill is there, in order, intact, nothing extra;
* torn tail: the last commit cut in the middle of a record (the segment file truncated
  mid-block; for SQLite the WAL truncated mid-frame) -> opens, keeps every earlier commit.

Designs: ``segment-log`` is gateway/spool (its synchronous core, ``_State``; the async
``Spool`` is measured too, as ``segment-log (Spool API)``); ``sqlite-wal blocks`` stores one
row per group (a blob of lines, the fair counterpart); ``sqlite-wal rows`` one row per line
(the obvious way). Only the segment log lives in gateway/spool; the SQLite designs exist
only here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core.metrics import Metrics  # noqa: E402
from gateway.spool import Spool  # noqa: E402
from gateway.spool.spool import _State, default_segment_bytes  # noqa: E402

BASE_TS = 1_732_300_000_000_000_000
MAX_BYTES = 4 * 1024**3  # no overflow in this bench


def make_lines(n: int, start: int = 0) -> list[str]:
    rng = random.Random(start)
    return [
        f"reading,hs=HS-001,kind=toxic_gas,site=91430900DEMO0001XX,tag=GT-{i % 500:03d},unit=ppm "
        f'value={rng.uniform(0, 10)!r},quality="good" {BASE_TS + i}'
        for i in range(start, start + n)
    ]


def seq_of(line: str) -> int:
    return int(line.rsplit(" ", 1)[1]) - BASE_TS


class Engine(Protocol):
    name: str

    def open(self) -> int: ...
    def commit(self, prio: list[str], reads: list[str]) -> None: ...
    def next_batch(self, n: int) -> tuple[list[str], Any] | None: ...
    def ack(self, token: Any) -> None: ...
    def disk_bytes(self) -> int: ...
    def close(self) -> None: ...


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- segment log


class SegmentEngine:
    name = "segment-log"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = _State(path, max_bytes=MAX_BYTES, segment_bytes=default_segment_bytes(1024**3),
                            block_bytes=1024 * 1024, fsync=True, backlog_records=None)

    def open(self) -> int:
        _, st = self.state.open()
        return int(st.unacked["priority"] + st.unacked["reading"])

    def commit(self, prio: list[str], reads: list[str]) -> None:
        self.state.commit(prio, reads, 5000, time.time_ns())

    def next_batch(self, n: int) -> tuple[list[str], Any] | None:
        got = self.state.next_batch(n, 8 * 1024 * 1024)
        if got is None:
            return None
        body, _, _, token, _ = got
        return body.decode().split("\n"), token

    def ack(self, token: Any) -> None:
        self.state.ack(token)

    def disk_bytes(self) -> int:
        return _dir_bytes(self.path)

    def close(self) -> None:
        self.state.close()


# --------------------------------------------------------------------------- SQLite WAL


class SQLiteBlocks:
    """One row per commit group and kind: (id, kind, n, body blob of lines)."""

    name = "sqlite-wal blocks"

    def __init__(self, path: Path, block_records: int = 5000) -> None:
        self.path = path
        self.file = path / "spool.db"
        self.block_records = block_records
        self.db: sqlite3.Connection | None = None
        self.after = {0: 0, 1: 0}

    def open(self) -> int:
        self.path.mkdir(parents=True, exist_ok=True)
        db = self.db = sqlite3.connect(self.file, isolation_level=None)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: freed pages can be returned
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit (power-loss safe)
        db.execute("CREATE TABLE IF NOT EXISTS blocks(id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, "
                   "n INTEGER NOT NULL, body BLOB NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS blocks_kind ON blocks(kind, id)")
        return int(db.execute("SELECT coalesce(sum(n), 0) FROM blocks").fetchone()[0])

    def _rows(self, kind: int, lines: list[str]) -> list[tuple[int, int, bytes]]:
        k = self.block_records
        return [(kind, len(lines[i:i + k]), "\n".join(lines[i:i + k]).encode()) for i in range(0, len(lines), k)]

    def commit(self, prio: list[str], reads: list[str]) -> None:
        assert self.db is not None
        rows = self._rows(0, prio) + self._rows(1, reads)
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO blocks(kind, n, body) VALUES (?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def next_batch(self, n: int) -> tuple[list[str], Any] | None:
        assert self.db is not None
        out: list[str] = []
        ids: list[int] = []
        for kind in (0, 1):
            for rid, cnt, body in self.db.execute(
                "SELECT id, n, body FROM blocks WHERE kind = ? AND id > ? ORDER BY id LIMIT 8",
                (kind, self.after[kind]),
            ):
                if out and len(out) + cnt > n:
                    break
                out.extend(body.decode().split("\n"))
                ids.append(rid)
                self.after[kind] = rid
        return (out, ids) if ids else None

    def ack(self, token: Any) -> None:
        assert self.db is not None
        self.db.execute("BEGIN")
        self.db.executemany("DELETE FROM blocks WHERE id = ?", [(i,) for i in token])
        self.db.execute("COMMIT")

    def reclaim(self) -> None:
        """What it takes to give the space back: incremental vacuum + WAL truncation."""
        assert self.db is not None
        # executescript steps it to the end (execute() stops after the first page)
        self.db.executescript("PRAGMA incremental_vacuum;")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def disk_bytes(self) -> int:
        return _dir_bytes(self.path)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


class SQLiteRows(SQLiteBlocks):
    """One row per line."""

    name = "sqlite-wal rows"

    def open(self) -> int:
        self.path.mkdir(parents=True, exist_ok=True)
        db = self.db = sqlite3.connect(self.file, isolation_level=None)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS rec(id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, line TEXT NOT NULL)")
        db.execute("CREATE INDEX IF NOT EXISTS rec_kind ON rec(kind, id)")
        return int(db.execute("SELECT count(*) FROM rec").fetchone()[0])

    def commit(self, prio: list[str], reads: list[str]) -> None:
        assert self.db is not None
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO rec(kind, line) VALUES (0, ?)", [(x,) for x in prio])
        self.db.executemany("INSERT INTO rec(kind, line) VALUES (1, ?)", [(x,) for x in reads])
        self.db.execute("COMMIT")

    def next_batch(self, n: int) -> tuple[list[str], Any] | None:
        assert self.db is not None
        out: list[str] = []
        last = dict(self.after)
        for kind in (0, 1):
            rows = self.db.execute("SELECT id, line FROM rec WHERE kind = ? AND id > ? ORDER BY id LIMIT ?",
                                   (kind, self.after[kind], n - len(out))).fetchall()
            out.extend(r[1] for r in rows)
            if rows:
                last[kind] = rows[-1][0]
        if not out:
            return None
        token = (dict(self.after), last)
        self.after = last
        return out, token

    def ack(self, token: Any) -> None:
        assert self.db is not None
        before, last = token
        self.db.execute("BEGIN")
        for kind in (0, 1):
            self.db.execute("DELETE FROM rec WHERE kind = ? AND id > ? AND id <= ?", (kind, before[kind], last[kind]))
        self.db.execute("COMMIT")


ENGINES = {"segment-log": SegmentEngine, "sqlite-wal blocks": SQLiteBlocks, "sqlite-wal rows": SQLiteRows}


# --------------------------------------------------------------------------- measurements


def measure(cls: type[SegmentEngine] | type[SQLiteBlocks], root: Path, lines: list[str]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    raw = sum(len(x) + 1 for x in lines)
    for group in (2000, 20000):
        d = root / f"{cls.__name__}-{group}"
        e = cls(d)
        e.open()
        t0 = time.perf_counter()
        for i in range(0, len(lines), group):
            e.commit([], lines[i:i + group])
        res[f"append_{group}"] = len(lines) / (time.perf_counter() - t0)
        e.close()
    # the 2000-group store is the "full" one: size, recovery, drain
    d = root / f"{cls.__name__}-2000"
    res["bytes_per_line"] = cls(d).disk_bytes() / len(lines)
    res["overhead"] = cls(d).disk_bytes() / raw - 1
    _drop_caches_hint(d)
    e = cls(d)
    t0 = time.perf_counter()
    n = e.open()
    res["recovery_s"] = time.perf_counter() - t0
    assert n == len(lines), (cls.name, n)
    t0 = time.perf_counter()
    got = 0
    while (b := e.next_batch(5000)) is not None:
        got += len(b[0])
        e.ack(b[1])
    res["drain"] = got / (time.perf_counter() - t0)
    assert got == len(lines), (cls.name, got)
    res["after_drain"] = e.disk_bytes()
    if isinstance(e, SQLiteBlocks):
        t0 = time.perf_counter()
        e.reclaim()
        res["reclaim_s"] = time.perf_counter() - t0
        res["after_reclaim"] = e.disk_bytes()
    e.close()
    return res


def _drop_caches_hint(d: Path) -> None:
    """Recovery is timed with a warm page cache (dropping caches needs root)."""


async def spool_api(root: Path, lines: list[str]) -> tuple[float, float]:
    """The real Spool: appends of 100 lines as the pipeline delivers them, 1 s group commit."""
    s = Spool(root / "spool-api", name="bench", metrics=Metrics(), max_bytes=MAX_BYTES, block_records=5000,
              commit_interval=1.0, max_pending=len(lines) + 1)
    await s.open()
    t0 = time.perf_counter()
    for i in range(0, len(lines), 100):
        s.append("reading", lines[i:i + 100])
        if i % 5000 == 0:
            await asyncio.sleep(0)
    await s.flush()
    append = len(lines) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    got = 0
    while (b := await s.next_batch(5000)) is not None:
        got += b.count
        await s.ack(b)
    drain = got / (time.perf_counter() - t0)
    assert got == len(lines)
    await s.close()
    return append, drain


# --------------------------------------------------------------------------- crash tests


def child(engine: str, path: str, group: int) -> None:
    """Commit groups of numbered lines forever; print the committed total after each."""
    e = ENGINES[engine](Path(path))
    if engine != "segment-log":
        e.open()
        e.db.execute("PRAGMA wal_autocheckpoint=0")  # keep frames in the WAL
    else:
        e.open()
    n = 0
    out = sys.stdout
    while True:
        e.commit([], make_lines(group, n))
        n += group
        out.write(f"{n}\n")
        out.flush()


def kill_trial(engine: str, root: Path, rng: random.Random) -> tuple[bool, str, float]:
    d = root / f"kill-{engine.replace(' ', '_')}-{rng.randrange(10**9)}"
    p = subprocess.Popen([sys.executable, __file__, "--child", engine, str(d), "20000"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    committed = 0
    for _ in range(3):
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("child died")
        committed = int(line)
    time.sleep(rng.uniform(0.0, 0.3))
    os.kill(p.pid, signal.SIGKILL)
    rest = p.stdout.read().split()
    p.wait()
    if rest:
        committed = int(rest[-1])  # the last commit that returned before the kill
    e = ENGINES[engine](d)
    t0 = time.perf_counter()
    n = e.open()
    rec = time.perf_counter() - t0
    seqs: list[int] = []
    while (b := e.next_batch(20000)) is not None:
        seqs.extend(seq_of(x) for x in b[0])
        e.ack(b[1])
    e.close()
    ok = seqs == list(range(len(seqs))) and len(seqs) >= committed and n == len(seqs)
    return ok, f"committed {committed}, recovered {len(seqs)}", rec


def torn_tail(engine: str, root: Path) -> tuple[bool, str]:
    """Ten commits of 2,000 lines, then the last one cut in the middle of a record."""
    d = root / f"torn-{engine.replace(' ', '_')}"
    if engine == "segment-log":
        e = SegmentEngine(d)
        e.open()
        for i in range(10):
            e.commit([], make_lines(2000, i * 2000))
        e.close()
        seg = max((d / "reading").glob("*.seg"))
        size = seg.stat().st_size
        os.truncate(seg, size - 2000 * 60)  # the middle of the last block
    else:
        p = subprocess.Popen([sys.executable, __file__, "--child", engine, str(d), "2000"],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        for _ in range(10):
            p.stdout.readline()
        os.kill(p.pid, signal.SIGSTOP)
        wal = d / "spool.db-wal"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        # committed groups so far: what the child printed; cut the WAL in the middle of its last frame
        size = wal.stat().st_size
        os.truncate(wal, size - 2000)
    e = ENGINES[engine](d)
    e.open()
    seqs: list[int] = []
    while (b := e.next_batch(20000)) is not None:
        seqs.extend(seq_of(x) for x in b[0])
        e.ack(b[1])
    e.close()
    ok = seqs == list(range(len(seqs))) and len(seqs) % 2000 == 0 and len(seqs) >= 9 * 2000
    return ok, f"{len(seqs) // 2000} whole commits kept"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=300_000)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--dir", default=None, help="where to put the stores (default: a temp dir on /tmp's disk)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    lines = make_lines(args.lines)
    raw = sum(len(x) + 1 for x in lines)
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="spool-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        results = {}
        for name, cls in ENGINES.items():
            print(f"measuring {name} ...", flush=True)
            r = measure(cls, root, lines)
            trials = [kill_trial(name, root, rng) for _ in range(args.trials)]
            r["kill_ok"] = sum(1 for ok, _, _ in trials if ok)
            r["kill_detail"] = "; ".join(d for _, d, _ in trials)
            r["kill_recovery_s"] = statistics.median(t for _, _, t in trials)
            r["torn_ok"], r["torn_detail"] = torn_tail(name, root)
            results[name] = r
        api_append, api_drain = asyncio.run(spool_api(root, lines))

    print(f"\n{args.lines:,} lines, {raw / args.lines:.0f} bytes each ({raw / 1e6:.1f} MB raw), fsync per commit, "
          f"{os.cpu_count()} CPUs")
    hdr = (f"{'design':22} {'append/s g=2k':>14} {'append/s g=20k':>15} {'read+ack/s':>11} {'bytes/line':>10} "
           f"{'overhead':>9} {'disk after ack':>15} {'open full':>10} {'open killed':>11} {'kill -9 ok':>11} "
           f"{'torn tail':>10}")
    print(hdr)
    print("-" * len(hdr))
    for name, r in results.items():
        after = f"{r['after_drain'] / 1e6:.1f} MB"
        if "after_reclaim" in r:
            after += f" ({r['after_reclaim'] / 1e6:.1f}*)"
        print(f"{name:22} {r['append_2000']:14,.0f} {r['append_20000']:15,.0f} {r['drain']:11,.0f} "
              f"{r['bytes_per_line']:10.1f} {r['overhead']:9.1%} {after:>15} {r['recovery_s']:9.3f}s "
              f"{r['kill_recovery_s']:10.3f}s {r['kill_ok']:>5}/{args.trials:<5} "
              f"{'ok' if r['torn_ok'] else 'FAIL':>10}")
    print(f"{'segment-log (Spool API)':22} {api_append:14,.0f} {'':15} {api_drain:11,.0f}   "
          "(appends of 100 lines on the event loop, 1 s group commit in the I/O thread)")
    print("\n* after PRAGMA incremental_vacuum + wal_checkpoint(TRUNCATE), which SQLite needs to give space back")
    print("open full: open a full store of all the lines (closed cleanly); open killed: open after kill -9 of a "
          "writer (median of the trials; for SQLite this includes replaying the WAL)")
    for name, r in results.items():
        print(f"{name}: kill -9 trials: {r['kill_detail']}; recovery after kill {r['kill_recovery_s']:.3f}s "
              f"(median); torn tail: {r['torn_detail']}")
        if "reclaim_s" in r:
            print(f"{name}: reclaim took {r['reclaim_s']:.3f}s")


if __name__ == "__main__":
    main()
