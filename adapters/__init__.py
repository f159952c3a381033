"""Southbound adapters: one package per protocol (modbus, mqtt)."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.base import SourceAdapter, SourceContext
from gateway.config import ModbusRtuSource, ModbusTcpSource, MqttSource

SourceConfig = ModbusTcpSource | ModbusRtuSource | MqttSource


def build_sources(cfgs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
    """Adapters for the enabled ``sources[]`` entries.

    Modbus sources that share a transport (one serial port, or one TCP endpoint such as a
    serial device server) are built together so they share one strictly serialized bus.
    """
    out: list[SourceAdapter] = []
    modbus = [c for c in cfgs if isinstance(c, ModbusTcpSource | ModbusRtuSource) and c.enabled]
    if modbus:
        from adapters.modbus import build_modbus_sources

        out.extend(build_modbus_sources(modbus, ctx))
    for c in cfgs:
        if isinstance(c, MqttSource) and c.enabled:
            from adapters.mqtt.adapter import MqttAdapter

            out.append(MqttAdapter(c, ctx))
    return out


__all__ = ["SourceAdapter", "SourceConfig", "SourceContext", "build_sources"]
