"""SQLite files of the gateway (alarm journal, notify outbox): one way to open them, one way
to create and migrate their schema.

:func:`connect` opens a file for writing the way every durable store wants it:
``isolation_level=None`` (the caller writes its own ``BEGIN IMMEDIATE`` / ``COMMIT``),
``check_same_thread=False`` (one dedicated thread at a time, under the caller's lock), a 30 s
busy timeout, WAL journal mode (refused if the file system cannot do it) and
``synchronous=FULL`` (a committed transaction survives a power cut).

Schema versions live in ``PRAGMA user_version``. A store passes its migrations as a list of
SQL scripts: script ``i`` takes the file from version ``i`` to ``i + 1``. :func:`migrate`
runs the missing ones in order inside ONE ``BEGIN IMMEDIATE`` transaction (all or nothing,
and two processes opening the same file cannot both migrate it), then sets
``user_version`` to the number of scripts. A file whose version is higher than that was
written by a newer gateway and is refused (:class:`SchemaError`) rather than guessed at.

Version 0 is both a new empty file and a file written before ``user_version`` was used
(those kept their version in a ``meta`` table, always ``schema = 1``). So the first script of
each store is its original schema, written with ``IF NOT EXISTS`` / ``INSERT OR IGNORE``: on
an old file it changes nothing but the version number.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from gateway.core.files import FILE_MODE, private_dir

BUSY_TIMEOUT: Final = 30.0  # s a connection waits for another one's write lock


class SchemaError(sqlite3.OperationalError):
    """The file cannot be used as it is: no WAL mode, or its schema is newer than this gateway."""


def connect(
    path: str | Path,
    migrations: Sequence[str],
    *,
    foreign_keys: bool = False,
    file_mode: int = FILE_MODE,
    timeout: float = BUSY_TIMEOUT,
) -> sqlite3.Connection:
    """Open ``path`` for writing (creating it and its directory), WAL + ``synchronous=FULL``,
    schema brought up to ``len(migrations)``. Blocking.

    A new file is created with ``file_mode`` (default 0600, gateway/core/files.py) and a new
    directory with 0700; SQLite gives the ``-wal`` and ``-shm`` files the mode of the
    database file. Raises :class:`SchemaError` or ``sqlite3.Error``; nothing stays open
    on failure.
    """
    p = Path(path)
    private_dir(p.parent)
    if not p.exists():
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, file_mode))
    con = sqlite3.connect(p, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SchemaError(f"{p}: cannot switch to WAL mode (got {mode})")
        con.execute("PRAGMA synchronous=FULL")
        if foreign_keys:
            con.execute("PRAGMA foreign_keys=ON")
        migrate(con, migrations, name=str(p))
    except BaseException:
        con.close()
        raise
    return con


def connect_readonly(path: str | Path, *, timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``; rows as :class:`sqlite3.Row`) for queries that must
    not wait for, or block, the writer. The file must exist."""
    con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=timeout)
    con.row_factory = sqlite3.Row
    return con


def user_version(con: sqlite3.Connection) -> int:
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def migrate(con: sqlite3.Connection, migrations: Sequence[str], *, name: str = "database") -> int:
    """Apply ``migrations[user_version:]`` in one transaction; returns the version found.

    ``con`` must be in autocommit mode (``isolation_level=None``) with no transaction open.
    """
    target = len(migrations)
    con.execute("BEGIN IMMEDIATE")
    try:
        found = user_version(con)
        if found > target:
            raise SchemaError(f"{name}: schema version {found} is newer than this gateway's ({target})")
        for script in migrations[found:]:
            for statement in statements(script):
                con.execute(statement)
        if found != target:
            con.execute(f"PRAGMA user_version = {target:d}")
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise
    return found


def statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script``, one at a time (``Connection.executescript`` would
    commit the open transaction first). Semicolons in strings, comments and trigger bodies
    are handled by :func:`sqlite3.complete_statement`."""
    buf: list[str] = []
    for i, part in enumerate(script.split(";")):
        if i:
            buf.append(";")
            text = "".join(buf)
            if sqlite3.complete_statement(text):
                if text.strip(" \t\r\n;"):
                    yield text.strip()
                buf = []
        buf.append(part)
    rest = "".join(buf)
    if any(line.split("--", 1)[0].strip() for line in rest.splitlines()):
        raise ValueError(f"SQL script ends with an incomplete statement: {rest.strip()[:80]!r}")
