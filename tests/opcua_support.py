"""Shared pieces of the OPC UA tests (import as ``from opcua_support import ...``).

The servers are real: :class:`devkit.simulator.opcua.OpcuaPlantServer` (asyncua) in the
test's event loop, ``python -m devkit.simulator.opcua`` in a child process, and node-opcua
(tests/test_opcua_interop.py).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.opcua.adapter import OpcuaAdapter
from adapters.opcua.config import OpcuaSource
from gateway.core.config import Tag
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.core.sources import SourceContext

ROOT = Path(__file__).resolve().parent.parent


def source(port: int, points: Sequence[Mapping[str, Any]], **kw: Any) -> OpcuaSource:
    data: dict[str, Any] = {
        "id": "dcs", "type": "opcua", "url": f"opc.tcp://127.0.0.1:{port}", "security": {"policy": "None"},
        "interval": 0.2, "timeout": 1.0, "points": list(points), **kw,
    }
    return OpcuaSource.model_validate(data)


def tag_table(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, Tag]:
    return {t: Tag.model_validate({"id": t, **spec}) for t, spec in specs.items()}


@dataclass
class Collector:
    """The pipeline stand-in: every reading, with the wall time (ns) its batch arrived."""

    readings: list[Reading] = field(default_factory=list)
    arrived: list[int] = field(default_factory=list)

    async def emit(self, batch: Sequence[Reading]) -> None:
        now = time.time_ns()
        self.readings.extend(batch)
        self.arrived.extend([now] * len(batch))

    def of(self, tag: str) -> list[Reading]:
        return [r for r in self.readings if r.tag == tag]

    def last(self, tag: str) -> Reading | None:
        for r in reversed(self.readings):
            if r.tag == tag:
                return r
        return None

    def mark(self) -> int:
        return len(self.readings)

    def since(self, mark: int, tag: str | None = None) -> list[Reading]:
        return [r for r in self.readings[mark:] if tag is None or r.tag == tag]


def make_adapter(cfg: OpcuaSource, tags: Mapping[str, Tag], metrics: Metrics | None = None) -> tuple[
        OpcuaAdapter, Collector]:
    col = Collector()
    ctx = SourceContext(emit=col.emit, metrics=metrics or Metrics(), tags=dict(tags))
    return OpcuaAdapter(cfg, ctx), col


@contextlib.asynccontextmanager
async def running(adapter: OpcuaAdapter) -> AsyncIterator[OpcuaAdapter]:
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


class ChildServer:
    """``python -m devkit.simulator.opcua -c CONFIG`` in a child process (kill/restart)."""

    def __init__(self, config: Path, every: float = 1.0, extra: Sequence[str] = ()) -> None:
        self.config = config
        self.every = every
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait for "ready"; returns the monotonic time it became ready."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devkit.simulator.opcua", "-c", str(self.config), "--every", str(self.every),
             *self.extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until "ready" (or EOF on a crash)
        if line.strip() != "ready" or time.monotonic() > deadline:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"OPC UA child server did not start: {line!r} {err[-2000:]}")
        return time.monotonic()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def child_server(config: Path, every: float = 1.0) -> Iterator[ChildServer]:
    srv = ChildServer(config, every)
    try:
        yield srv
    finally:
        srv.stop()


def write_site(path: Path, sources: Sequence[Mapping[str, Any]], tags: Sequence[Mapping[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"site": {"code": "91320000TEST0001X", "name": "test"},
                                    "sources": list(sources), "tags": list(tags)}, allow_unicode=True))
    return path
