"""Modbus TCP / RTU adapter (issue 3). See README.md beside this file.

Module map: ``decoder`` (registers -> values), ``encoder`` (the inverse, for simulators
and tests), ``planner`` (points -> fewest read requests), ``transport`` (which
connection a source uses), ``bus`` (one serialized connection with reconnect),
``device`` (a device's timeout/backoff state), ``points`` (a point compiled for the hot
path), ``poller`` (schedule and one poll cycle), ``adapter`` (the SourceAdapter),
``metrics`` (Prometheus collectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from adapters.base import SourceAdapter, SourceContext
from adapters.modbus.adapter import ModbusSourceAdapter
from adapters.modbus.bus import ModbusBus
from adapters.modbus.metrics import modbus_metrics
from adapters.modbus.points import check_points
from adapters.modbus.transport import ModbusSource, group_by_transport
from gateway.config import Tag


def build_modbus_sources(cfgs: Sequence[ModbusSource], ctx: SourceContext) -> list[SourceAdapter]:
    """One adapter per source config, in config order.

    Sources on the same TCP endpoint or serial port get one shared :class:`ModbusBus`
    (one connection, strictly serialized requests); different buses poll concurrently.
    Raises ValueError when sources sharing a connection contradict each other (framer,
    serial settings): that is a config error, caught before anything starts.
    """
    mm = modbus_metrics(ctx.metrics)
    by_cfg: dict[int, ModbusSourceAdapter] = {}
    for _key, (spec, members) in group_by_transport(cfgs).items():
        longest = max(m.timeout for m in members)
        bus = ModbusBus(
            spec,
            mm,
            # connect bound, and pymodbus' own response timer kept behind the device timeouts
            connect_timeout=max(2.0, 2 * longest),
            backoff_max=max(m.backoff_max for m in members),
            inter_frame_delay=max(m.inter_frame_delay for m in members),
        )
        for cfg in members:
            by_cfg[id(cfg)] = ModbusSourceAdapter(cfg, bus, ctx, mm)
    return [by_cfg[id(c)] for c in cfgs]


def check_modbus_sources(cfgs: Sequence[ModbusSource], tags: Mapping[str, Tag]) -> list[str]:
    """Problems that need more than one source or the tag table (for ``hazardgw check``)."""
    problems: list[str] = []
    try:
        group_by_transport(cfgs)
    except ValueError as e:
        problems.append(str(e))
    for cfg in cfgs:
        problems.extend(f"source {cfg.id}: {p}" for p in check_points(cfg, tags))
    return problems


__all__ = ["ModbusSourceAdapter", "build_modbus_sources", "check_modbus_sources"]
