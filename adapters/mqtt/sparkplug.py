"""``format: sparkplug_b``: Sparkplug B (Eclipse Sparkplug 3.0) edge nodes and devices.

Topics are ``spBv1.0/{group}/{type}/{edge_node}[/{device}]``; payloads are protobuf
(``sparkplug_b.proto`` beside this file, ``sparkplug_b_pb2.py`` generated from it). Points
bind ``{tag, edge_node, device, metric}`` (no ``device``: a metric of the node itself).

What the decoder keeps per edge node (pure state, no I/O):

* **Births** (NBIRTH, DBIRTH) carry every metric with its name, alias and datatype; they
  are remembered, so later data (NDATA, DDATA) may name metrics by alias only. Births
  carry current values too: bound metrics in a birth are readings.
* **Timestamps**: a metric's own ``timestamp`` (ms), else the payload's, else the time of
  receipt.
* **Deaths**: NDEATH (the node's MQTT will, sent by the broker when the node drops) turns
  every bound tag of the node and its devices to ``comm`` (value-less, at the time of
  receipt: the will's own timestamp is from when the node connected). An NDEATH whose
  ``bdSeq`` is not the one of the node's last NBIRTH is a late will of an older session
  and is ignored (``stale_death``). DDEATH turns the device's tags to ``comm``.
* **Sequence numbers**: every message of a node after its NBIRTH carries ``seq``
  0..255, one more than the one before. A gap means messages were lost: the node's
  readings are ``uncertain`` from then until its next NBIRTH (``seq_gap`` counted once per
  gap). With ``rebirth: true`` the decoder also asks the adapter to publish the standard
  Rebirth request (NCMD ``Node Control/Rebirth`` = true) to that node, at most once per
  ``REBIRTH_INTERVAL`` per node; likewise when data names an alias no birth has defined
  (``unknown_alias``, e.g. the gateway started after the node's birth). This request is the
  only message the MQTT source ever publishes.
* Value types: integers (signed types sign-extended from their width, so Tahu's and
  Java encoders agree), Float, Double, Boolean (1/0), String/Text (the subscription's
  value rules: numbers, states, units). ``is_null`` metrics are ``bad`` readings; DataSet,
  Template, Bytes, File, UUID and DateTime metrics are ``unsupported_type``;
  ``is_historical`` metrics are skipped (they are backfill, not the current value).

NCMD, DCMD and STATE messages (commands and host states) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from google.protobuf.message import DecodeError

from adapters.mqtt import sparkplug_b_pb2
from adapters.mqtt.config import SPARKPLUG_NAMESPACE, MqttSubscription
from adapters.mqtt.payload import Problem, QualityRules, Reason, ValueRules, _Bad, _Reject
from gateway.core.config import Tag
from gateway.core.models import Quality, Reading
from gateway.core.units import normalize_unit

REBIRTH_METRIC: Final = "Node Control/Rebirth"
REBIRTH_INTERVAL_NS: Final = 5_000_000_000  # at most one Rebirth request per node per 5 s
BOOLEAN: Final = 11
_SIGNED_BITS: Final = {1: 8, 2: 16, 3: 32, 4: 64}
_UNSIGNED: Final = frozenset({5, 6, 7, 8})
_UNSUPPORTED: Final = {13: "DateTime", 15: "UUID", 16: "DataSet", 17: "Bytes", 18: "File", 19: "Template"}
_NONE: Final[tuple[Problem, ...]] = ()
Payload: Any = sparkplug_b_pb2.Payload  # type: ignore[attr-defined]  # generated: no stubs


class _Target(NamedTuple):
    tag: str
    scale: float
    offset: float
    identity: bool
    rng: tuple[float, float] | None
    unit: str | None


@dataclass
class _Unit:
    """A node or a device: alias -> (name, datatype), name -> datatype."""

    aliases: dict[int, tuple[str, int]] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)

    def learn(self, metrics: Any) -> None:
        self.aliases.clear()
        self.types.clear()
        for m in metrics:
            if m.HasField("name"):
                dt = m.datatype if m.HasField("datatype") else 0
                self.types[m.name] = dt
                if m.HasField("alias"):
                    self.aliases[m.alias] = (m.name, dt)


@dataclass
class _Node:
    born: bool = False
    bd_seq: int | None = None
    next_seq: int | None = None
    uncertain: bool = False
    metrics: _Unit = field(default_factory=_Unit)
    devices: dict[str, _Unit] = field(default_factory=dict)
    last_rebirth_ns: int = -(10**30)


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def rebirth_request(ts_ms: int) -> bytes:
    """The payload of the standard Rebirth NCMD."""
    p = Payload(timestamp=ts_ms)
    m = p.metrics.add()
    m.name = REBIRTH_METRIC
    m.timestamp = ts_ms
    m.datatype = BOOLEAN
    m.boolean_value = True
    return p.SerializeToString()


class SparkplugDecoder:
    """One ``sparkplug_b`` subscription: births, aliases, deaths, sequence numbers."""

    def __init__(self, sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int,
                 timezone: str | None = None) -> None:
        self.max_payload = max_payload
        self.group = sub.topic.split("/")[1]
        self.rebirth = sub.rebirth
        self.values = ValueRules(sub.states, sub.decimal_comma)
        self.qualities = QualityRules(sub.quality_map)
        self._points: dict[tuple[str, str | None, str], _Target] = {}
        self._node_tags: dict[str, list[str]] = {}
        self._device_tags: dict[tuple[str, str], list[str]] = {}
        for p in sub.points:
            assert p.edge_node is not None and p.metric is not None
            tag = tags.get(p.tag)
            self._points[(p.edge_node, p.device, p.metric)] = _Target(
                p.tag, float(p.scale), float(p.offset), p.scale == 1.0 and p.offset == 0.0,
                None if tag is None or tag.range is None else (float(tag.range[0]), float(tag.range[1])),
                None if tag is None else normalize_unit(tag.unit),
            )
            self._node_tags.setdefault(p.edge_node, []).append(p.tag)
            if p.device is not None:
                self._device_tags.setdefault((p.edge_node, p.device), []).append(p.tag)
        self._nodes: dict[str, _Node] = {}
        #: (group, edge node) of nodes to send a Rebirth request to; the adapter takes them
        self.rebirth_requests: list[tuple[str, str]] = []

    def node(self, edge: str) -> _Node:
        n = self._nodes.get(edge)
        if n is None:
            n = self._nodes[edge] = _Node()
        return n

    def _ask_rebirth(self, edge: str, node: _Node, recv_ns: int) -> None:
        if self.rebirth and recv_ns - node.last_rebirth_ns >= REBIRTH_INTERVAL_NS:
            node.last_rebirth_ns = recv_ns
            self.rebirth_requests.append((self.group, edge))

    def decode(self, payload: bytes, recv_ns: int, retained: bool = False,
               topic: str = "") -> tuple[list[Reading], Sequence[Problem]]:
        levels = topic.split("/")
        if len(levels) not in (4, 5) or levels[0] != SPARKPLUG_NAMESPACE:
            if levels[0] == SPARKPLUG_NAMESPACE and "STATE" in levels[1:3]:
                return [], _NONE
            return [], (Problem(Reason.BAD_TOPIC, f"not a Sparkplug B topic: {topic[:120]!r}"),)
        mtype, edge = levels[2], levels[3]
        device = levels[4] if len(levels) == 5 else None
        if mtype in ("NCMD", "DCMD", "STATE") or edge not in self._node_tags:
            return [], _NONE  # commands, or a node none of our points names
        if (device is None) != (mtype[0] == "N") or mtype[1:] not in ("BIRTH", "DEATH", "DATA"):
            return [], (Problem(Reason.BAD_TOPIC, f"not a Sparkplug B topic: {topic[:120]!r}"),)
        n = len(payload)
        if n > self.max_payload:
            return [], (Problem(Reason.OVERSIZED, f"{n} bytes > max_payload {self.max_payload}"),)
        try:
            msg = Payload.FromString(payload)
        except DecodeError as e:
            return [], (Problem(Reason.NOT_PROTOBUF, f"not a Sparkplug B payload: {str(e)[:120]}"),)
        node = self.node(edge)
        problems: list[Problem] = []
        kind = mtype[1:]
        if mtype == "NDEATH":
            bd = _bd_seq(msg)
            if node.bd_seq is not None and bd is not None and bd != node.bd_seq:
                return [], (Problem(Reason.STALE_DEATH, f"{edge}: NDEATH bdSeq {bd} is not the birth's "
                                                        f"{node.bd_seq}; ignored"),)
            node.born = False
            node.next_seq = None
            node.devices.clear()
            node.metrics = _Unit()
            return [Reading(t, None, recv_ns, Quality.COMM) for t in self._node_tags.get(edge, ())], _NONE
        # every other message of the node carries the node's sequence number
        seq = msg.seq if msg.HasField("seq") else None
        if mtype == "NBIRTH":
            node.born = True
            node.uncertain = False
            node.bd_seq = _bd_seq(msg)
            node.devices.clear()
            node.metrics.learn(msg.metrics)
            node.next_seq = ((seq or 0) + 1) % 256
        else:
            if node.next_seq is not None and seq is not None and seq != node.next_seq:
                if not node.uncertain:
                    problems.append(Problem(Reason.SEQ_GAP, f"{edge}: seq {seq}, expected {node.next_seq}: "
                                                            "readings uncertain until the next NBIRTH"))
                node.uncertain = True
                self._ask_rebirth(edge, node, recv_ns)
            if seq is not None:
                node.next_seq = (seq + 1) % 256
        ts_msg = msg.timestamp * 1_000_000 if msg.HasField("timestamp") and msg.timestamp > 0 else recv_ns
        if device is not None:
            if kind == "DEATH":
                node.devices.pop(device, None)
                return [Reading(t, None, ts_msg, Quality.COMM) for t in self._device_tags.get((edge, device), ())], \
                    problems or _NONE
            unit = node.devices.get(device)
            if kind == "BIRTH":
                unit = node.devices[device] = _Unit()
                unit.learn(msg.metrics)
        else:
            unit = node.metrics
        out: list[Reading] = []
        unknown = 0
        points = self._points
        uncertain = node.uncertain
        for m in msg.metrics:
            if m.HasField("name"):
                name = m.name
                dt = m.datatype if m.HasField("datatype") else (unit.types.get(name, 0) if unit else 0)
            else:
                hit = unit.aliases.get(m.alias) if unit is not None else None
                if hit is None:
                    unknown += 1
                    continue
                name, dt = hit
                if m.HasField("datatype"):
                    dt = m.datatype
            target = points.get((edge, device, name))
            if target is None or m.is_historical:
                continue
            ts = m.timestamp * 1_000_000 if m.HasField("timestamp") and m.timestamp > 0 else ts_msg
            try:
                if m.is_null:
                    raise _Bad(Reason.NOT_NUMERIC, f"{name}: is_null")
                v = self._value(m, dt, target.unit)
                if not target.identity:
                    v = v * target.scale + target.offset
                    if not math.isfinite(v):
                        raise _Reject(Reason.NOT_FINITE, "value not finite after scale/offset")
            except _Bad as r:
                if r.reason != Reason.NOT_NUMERIC:  # is_null: a bad reading, not a decode error
                    problems.append(Problem(r.reason, f"{edge}/{device or ''} {name}: {r.detail}"))
                out.append(Reading(target.tag, None, ts, Quality.BAD))
                continue
            except _Reject as r:
                problems.append(Problem(r.reason, f"{edge}/{device or ''} {name}: {r.detail}"))
                continue
            q = Quality.UNCERTAIN if uncertain else Quality.GOOD
            if target.rng is not None and not (target.rng[0] <= v <= target.rng[1]):
                q = Quality.UNCERTAIN
            out.append(Reading(target.tag, v, ts, q))
        if unknown:
            problems.append(Problem(Reason.UNKNOWN_ALIAS, f"{edge}/{device or ''}: {unknown} metric(s) by an alias "
                                                          "no birth defined (gateway started after the birth?)"))
            self._ask_rebirth(edge, node, recv_ns)
        return out, problems or _NONE

    def _value(self, m: Any, dt: int, unit: str | None) -> float:
        which = m.WhichOneof("value")
        if dt in _UNSUPPORTED:
            raise _Reject(Reason.UNSUPPORTED_TYPE, f"datatype {_UNSUPPORTED[dt]} is not a measurement")
        if which == "int_value" or which == "long_value":
            raw = m.int_value if which == "int_value" else m.long_value
            bits = _SIGNED_BITS.get(dt)
            return float(_signed(raw, bits) if bits is not None else raw)
        if which == "float_value" or which == "double_value":
            v = float(m.float_value if which == "float_value" else m.double_value)
            if not math.isfinite(v):
                raise _Reject(Reason.NOT_FINITE, f"value {v!r} is not finite")
            return v
        if which == "boolean_value":
            return 1.0 if m.boolean_value else 0.0
        if which == "string_value":
            return self.values.value(m.string_value, unit)
        if which is None:
            raise _Reject(Reason.NOT_NUMERIC, "metric has no value")
        raise _Reject(Reason.UNSUPPORTED_TYPE, f"{which} is not a measurement")


def _bd_seq(msg: Any) -> int | None:
    for m in msg.metrics:
        if m.name == "bdSeq":
            which = m.WhichOneof("value")
            if which == "long_value":
                return int(m.long_value)
            if which == "int_value":
                return int(m.int_value)
    return None
