"""The SourceAdapter of one Modbus source (one device): a poll task on a shared bus."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from adapters.modbus.bus import ModbusBus
from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from adapters.modbus.device import DeviceState
from adapters.modbus.metrics import ModbusMetrics
from adapters.modbus.points import compile_points
from adapters.modbus.poller import SourcePoller
from gateway.core.sources import RawValue, SourceContext

log = logging.getLogger("adapters.modbus")


class ModbusSourceAdapter:
    """Polls one ``sources[]`` entry. Start/stop are idempotent; failures are retried, not raised."""

    def __init__(
        self,
        cfg: ModbusTcpSource | ModbusRtuSource,
        bus: ModbusBus,
        ctx: SourceContext,
        metrics: ModbusMetrics,
        phase: float = 0.0,
    ) -> None:
        self.id = cfg.id
        self.cfg = cfg
        self.bus = bus
        self.device = DeviceState(cfg.id, f"{bus.key}/{cfg.device_id}", cfg.poll_interval, cfg.backoff_max)
        self.poller = SourcePoller(cfg, bus, ctx, metrics, compile_points(cfg, ctx.tags), self.device, phase)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        self.poller.stopping = False
        self.bus.attach()
        self._task = asyncio.create_task(self._run(), name=f"modbus:{self.id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.poller.stopping = True
        if self.poller.busy:
            # Let the request in flight finish (the cycle stops after it and emits nothing):
            # a request cancelled on the wire leaves a late answer on a shared bus.
            cfg = self.cfg
            await asyncio.wait({task}, timeout=cfg.timeout * (cfg.retries + 1) + 0.5)
        # Python 3.11's asyncio.wait_for (which pymodbus awaits answers with) swallows a
        # cancellation that lands in the same loop iteration as the answer, and the poll
        # loop would go on; so cancel until the task has really ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if not task.cancelled() and task.exception() is not None:
            log.error("source %s: poll task ended with %r", self.id, task.exception())
        await self.bus.detach()

    async def _run(self) -> None:
        while not self.poller.stopping:
            try:
                await self.poller.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the pipeline raised from emit: restart, never go silent
                log.exception("source %s: poll loop failed; restarting in one interval", self.id)
                await asyncio.sleep(self.cfg.poll_interval)

    def raw_points(self) -> dict[str, RawValue]:
        """The register words of each point's last answer (gateway.core.sources.RawPoints)."""
        return self.poller.raw_points()

    def health(self) -> dict[str, Any]:
        running = self._task is not None and not self._task.done()
        p = self.poller.health()
        connected = self.bus.connected
        return {
            "ok": running and connected and self.device.state == "ok",
            "connected": connected,
            "running": running,
            "type": self.cfg.type,
            "transport": self.bus.spec.describe(),
            "device_id": self.cfg.device_id,
            "poll_interval_s": self.cfg.poll_interval,
            **p,
            "bus": self.bus.health(),
        }
