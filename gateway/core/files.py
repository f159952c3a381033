"""Private files and directories under ``store.path``: the one way to create them.

Everything the gateway keeps under ``store.path`` (alarm journal, push outbox with its ack
links, ack link key, spools, online rate history, and anything a component adds later) is
readable and writable by the gateway's user only: files ``0600``, directories ``0700``.
Every component creates its files and directories through these helpers instead of
relying on the process umask; :func:`tighten` fixes files left wider by older versions
(or by hand) once at start, and ``hazardgw run`` also sets the umask to ``077`` as a
second line of defence (gateway/cli.py).

* :func:`private_dir` creates a directory (and missing parents) with mode 0700 and
  tightens an existing one that is wider.
* :func:`private_open` opens (creating with mode 0600) a file; :func:`write_private`
  replaces a file atomically (temporary file in the same directory, fsync, rename) and
  removes the temporary file when the write fails (a full disk must not leave debris).
* :func:`tighten` walks a tree and removes group/other permissions (files to 0600,
  directories to 0700), never following symlinks.

No import of the project (gateway/core is the bottom layer).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
_OPEN: Final = 0o077  # group and other permission bits


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing directory wider
    than 0700 is tightened. Returns the path."""
    p = Path(path)
    missing: list[Path] = []
    q = p
    while not q.exists():
        missing.append(q)
        if q.parent == q:
            break
        q = q.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # created meanwhile by another thread
            d.mkdir(mode=DIR_MODE)
        _chmod_if_open(d, DIR_MODE)  # mkdir's mode is masked by the umask: only ever narrower
    if not missing and p.is_dir():  # (a file in the way is left alone: the caller's open fails)
        _chmod_if_open(p, DIR_MODE)
    return p


def private_open(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT, 0o600)``: a file created here is private.
    (An existing file keeps its mode: :func:`tighten` handles old files at start.)"""
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def write_private(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600. The temporary file
    (``.{name}.tmp`` beside it) is removed when anything fails (ENOSPC: no debris)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class Tightened:
    """What :func:`tighten` changed (or could not change)."""

    changed: list[tuple[str, int]] = field(default_factory=list)  # (path, old mode)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)

    def summary(self, limit: int = 5) -> str:
        shown = ", ".join(f"{p} ({m:o})" for p, m in self.changed[:limit])
        more = f" and {len(self.changed) - limit} more" if len(self.changed) > limit else ""
        return shown + more


def tighten(root: str | os.PathLike[str]) -> Tightened:
    """Remove group/other permissions under ``root`` (``root`` included): files become
    0600, directories 0700 (a file or directory already private keeps its mode, e.g. 0400).
    Symlinks are neither followed nor changed. Blocking; errors are collected, not raised."""
    out = Tightened()
    top = Path(root)
    if not top.is_dir() or top.is_symlink():
        return out
    _tighten_one(top, DIR_MODE, out)
    for dirpath, dirnames, filenames in os.walk(top, onerror=lambda e: out.failed.append((str(e.filename), str(e)))):
        for name in dirnames:
            _tighten_one(Path(dirpath) / name, DIR_MODE, out)
        for name in filenames:
            _tighten_one(Path(dirpath) / name, FILE_MODE, out)
    return out


def _tighten_one(p: Path, mode: int, out: Tightened) -> None:
    try:
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            return
        old = stat.S_IMODE(st.st_mode)
        if old & _OPEN:
            os.chmod(p, mode)
            out.changed.append((str(p), old))
    except FileNotFoundError:
        return  # removed meanwhile (a spool segment acknowledged)
    except OSError as e:
        out.failed.append((str(p), str(e)))


def _chmod_if_open(p: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        if stat.S_IMODE(os.stat(p).st_mode) & _OPEN:
            os.chmod(p, mode)
