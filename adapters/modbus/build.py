"""Adapters from Modbus source configs (one shared bus per connection), and the checks
across sources that ``hazardgw check`` runs through the spec."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from adapters.modbus.adapter import ModbusSourceAdapter
from adapters.modbus.bus import ModbusBus
from adapters.modbus.metrics import modbus_metrics
from adapters.modbus.points import check_points
from adapters.modbus.transport import ModbusSource, group_by_transport
from gateway.core.config import Tag
from gateway.core.sources import SourceAdapter, SourceContext

# At most this many sources poll in the same instant (issue 23, measured with 50 TCP endpoints
# at 1 s). All 50 at once made a burst of answers that put polls up to 57 ms behind schedule
# at p99 (bench/modbus_capacity.py; and anything else on the event loop, an alarm too, waited
# behind the burst). Each source on its own phase cost CPU instead: a loop wake-up per request
# rather than per burst took hazardgw from 2.0 to 3.4 % of a core (bench/peers.py), groups of
# 8 to 2.6 %, of 16 to 2.3 %. Groups of 25: lateness p99 6-7 ms (was 10-30, 57 at worst) at
# 2.03 % of a core.
SPREAD_GROUP = 25


def build_modbus_sources(cfgs: Sequence[ModbusSource], ctx: SourceContext) -> list[SourceAdapter]:
    """One adapter per source config, in config order.

    Sources on the same TCP endpoint or serial port get one shared :class:`ModbusBus`
    (one connection, strictly serialized requests); different buses poll concurrently.
    After a first poll at start, the sources poll in ``ceil(n / SPREAD_GROUP)`` groups spread
    evenly over the interval (source ``i`` in group ``i mod groups``) rather than all in the
    same instant: see :data:`SPREAD_GROUP`.
    Raises ValueError when sources sharing a connection contradict each other (framer,
    serial settings): that is a config error, caught before anything starts.
    """
    mm = modbus_metrics(ctx.metrics)
    groups = max(1, math.ceil(len(cfgs) / SPREAD_GROUP))
    phase = {id(c): (i % groups) / groups for i, c in enumerate(cfgs)}
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
            by_cfg[id(cfg)] = ModbusSourceAdapter(cfg, bus, ctx, mm, phase[id(cfg)])
    return [by_cfg[id(c)] for c in cfgs]


def check_modbus_sources(cfgs: Sequence[ModbusSource], tags: Mapping[str, Tag]) -> list[str]:
    """Problems that need more than one source or the tag table (for ``hazardgw check``),
    each starting with ``source ID:`` when it concerns one source."""
    problems: list[str] = []
    try:
        group_by_transport(cfgs)
    except ValueError as e:
        problems.append(str(e))
    for cfg in cfgs:
        problems.extend(f"source {cfg.id}: {p}" for p in check_points(cfg, tags))
    return problems

