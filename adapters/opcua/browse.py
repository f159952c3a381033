"""``hazardgw opcua browse`` and ``hazardgw probe opcua``: read-only commissioning tools.

The browse walks the address space below ``--root`` breadth first (batched Browse
requests, the same resolver and batch learning as the adapter), reads every variable's
DataType and Value and its ``EURange`` / ``EngineeringUnits`` properties in batched Reads,
prints one line per variable and, with ``--out``, writes the numeric and Boolean variables
as a tag-list CSV (:mod:`adapters.opcua.tagcsv`). Nodes of namespace 0 below the root (the
standard ``Server`` object) are left out.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from asyncua import Client, ua
from pydantic import ValidationError

from adapters.opcua.batching import BatchLimit, in_batches, status_name
from adapters.opcua.config import OpcuaSource
from adapters.opcua.nodeids import parse_browse_path, parse_node_id
from adapters.opcua.resolve import browse_children, read_namespaces, resolve_paths, to_node_id
from adapters.opcua.session import close_quietly, describe, open_session

_HAS_PROPERTY = ua.ObjectIds.HasProperty
_VARIABLE = int(ua.NodeClass.Variable)
_OBJECT = int(ua.NodeClass.Object)
_NUMERIC_TYPES = {"Boolean", "SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float",
                  "Double", "Number", "Integer", "UInteger"}
_TYPE_NAMES = {v: k for k, v in vars(ua.ObjectIds).items() if isinstance(v, int)}


@dataclass
class Variable:
    node: ua.NodeId
    path: str  # browse path from Root, e.g. Objects/Plant/V101/PT101
    rel: str  # below the root, e.g. V101/PT101
    name: str  # display name
    data_type: str = ""
    value: Any = None
    status: str = ""
    eu_low: float | None = None
    eu_high: float | None = None
    unit: str = ""
    eu_range_node: ua.NodeId | None = None
    eu_unit_node: ua.NodeId | None = None

    @property
    def numeric(self) -> bool:
        return self.data_type in _NUMERIC_TYPES

    @property
    def node_text(self) -> str:
        return str(self.node.to_string())


def source_from_args(args: argparse.Namespace, points: Sequence[dict[str, str]] | None = None) -> OpcuaSource:
    """An OpcuaSource for a command's connection options (validated like a config)."""
    sec: dict[str, Any] = {"policy": args.policy}
    for k in ("mode", "cert", "key"):
        if getattr(args, k, None):
            sec[k] = getattr(args, k)
    if getattr(args, "server_cert", None):
        sec["server_cert"] = args.server_cert
    raw: dict[str, Any] = {
        "id": "cli", "type": "opcua", "url": args.url, "security": sec, "timeout": args.timeout,
        "points": list(points or [{"tag": "x", "node": "i=85"}]),
    }
    if args.username:
        raw["username"] = args.username
        raw["password"] = os.environ.get(args.password_env, "")
    return OpcuaSource.model_validate(raw)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


async def _connect(args: argparse.Namespace, points: Sequence[dict[str, str]] | None = None) -> tuple[
        OpcuaSource, Client]:
    cfg = source_from_args(args, points)
    if args.username and not os.environ.get(args.password_env):
        print(f"warning: ${args.password_env} is not set; logging in with an empty password", file=sys.stderr)
    return cfg, await open_session(cfg, name="hazardgw browse")


def _type_name(nid: Any) -> str:
    if isinstance(nid, ua.NodeId) and nid.NamespaceIndex == 0 and isinstance(nid.Identifier, int):
        return _TYPE_NAMES.get(nid.Identifier, str(nid.to_string()))
    return str(nid.to_string()) if isinstance(nid, ua.NodeId) else ""


def _text(v: Any) -> str:
    if isinstance(v, ua.LocalizedText):
        return v.Text or ""
    return "" if v is None else str(v)


async def walk(client: Client, root: str, depth: int, max_nodes: int, source: str = "cli") -> list[Variable]:
    """Every variable (not property) within ``depth`` levels below browse path ``root``."""
    limit = BatchLimit(source, "browse", 200)
    read_limit = BatchLimit(source, "read", 1000)
    elements = parse_browse_path(root)
    [start] = await resolve_paths(client, [elements], limit)
    if isinstance(start, str):
        raise LookupError(f"--root {root}: {start}")
    base = "/".join(e.text() for e in elements)
    found: list[Variable] = []
    by_node: dict[ua.NodeId, Variable] = {}
    level: list[tuple[ua.NodeId, str]] = [(start, "")]
    seen = {start}
    for _ in range(max(0, depth)):
        if not level or len(seen) > max_nodes:
            break
        results = await browse_children(client, [n for n, _ in level], limit)
        nxt: list[tuple[ua.NodeId, str]] = []
        for (_parent, rel), children in zip(level, results, strict=True):
            if isinstance(children, str):
                continue
            by_var = by_node.get(_parent)
            for c in children:
                if c.node in seen and not c.ref_type == _HAS_PROPERTY:
                    continue
                if c.node.NamespaceIndex == 0 and c.ref_type != _HAS_PROPERTY:
                    continue  # the standard Server object and friends
                name = c.name.Name
                if c.ref_type == _HAS_PROPERTY:
                    if by_var is not None and c.name.Name == "EURange":
                        by_var.eu_range_node = c.node
                    elif by_var is not None and c.name.Name == "EngineeringUnits":
                        by_var.eu_unit_node = c.node
                    continue
                seen.add(c.node)
                crel = f"{rel}/{name}" if rel else name
                if c.node_class == _VARIABLE:
                    var = Variable(c.node, f"{base}/{crel}", crel, _text(c.display_name) or c.name.Name)
                    found.append(var)
                    by_node[c.node] = var
                if c.node_class in (_VARIABLE, _OBJECT):
                    nxt.append((c.node, crel))
        level = nxt
        if len(seen) > max_nodes:
            print(f"warning: stopped after {max_nodes} nodes (--max-nodes)", file=sys.stderr)
            break
    # the properties of the variables found on the last level were not browsed yet
    last_level = {n for n, _ in level}
    pending = [v for v in found if v.node in last_level]
    if pending:
        results = await browse_children(client, [v.node for v in pending], limit)
        for v, children in zip(pending, results, strict=True):
            if isinstance(children, str):
                continue
            for c in children:
                if c.name.Name == "EURange":
                    v.eu_range_node = c.node
                elif c.name.Name == "EngineeringUnits":
                    v.eu_unit_node = c.node
    await _read_details(client, found, read_limit)
    return found


async def _read(client: Client, ids: Sequence[ua.ReadValueId], limit: BatchLimit) -> list[ua.DataValue]:
    async def call(batch: Sequence[ua.ReadValueId]) -> list[ua.DataValue]:
        p = ua.ReadParameters()
        p.TimestampsToReturn = ua.TimestampsToReturn.Both
        p.NodesToRead = list(batch)
        return list(await client.uaclient.read(p))

    return await in_batches(list(ids), limit, call)


async def _read_details(client: Client, found: list[Variable], limit: BatchLimit) -> None:
    ids = []
    for v in found:
        ids.append(ua.ReadValueId(NodeId=v.node, AttributeId=ua.AttributeIds.DataType))
        ids.append(ua.ReadValueId(NodeId=v.node, AttributeId=ua.AttributeIds.Value))
    props = [(v, "range", v.eu_range_node) for v in found if v.eu_range_node is not None]
    props += [(v, "unit", v.eu_unit_node) for v in found if v.eu_unit_node is not None]
    ids.extend(ua.ReadValueId(NodeId=n, AttributeId=ua.AttributeIds.Value) for _, _, n in props)
    values = await _read(client, ids, limit)
    for k, v in enumerate(found):
        dtype, dv = values[2 * k], values[2 * k + 1]
        v.data_type = _type_name(dtype.Value.Value if dtype.Value is not None else None)
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        v.status = status_name(code)
        v.value = dv.Value.Value if dv.Value is not None else None
    for (v, what, _), dv in zip(props, values[2 * len(found):], strict=True):
        x = dv.Value.Value if dv.Value is not None else None
        if what == "range" and x is not None and hasattr(x, "Low"):
            v.eu_low, v.eu_high = float(x.Low), float(x.High)
        elif what == "unit" and x is not None and hasattr(x, "DisplayName"):
            v.unit = _text(x.DisplayName)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, list):
        return f"[{len(x)} items]"
    s = str(x)
    return s if len(s) <= 24 else s[:21] + "..."


def print_table(found: Sequence[Variable], out: TextIO) -> None:
    rows = [("NODE", "PATH", "TYPE", "VALUE", "STATUS", "EURANGE", "UNIT")]
    for v in found:
        rng = f"{v.eu_low:g}..{v.eu_high:g}" if v.eu_low is not None and v.eu_high is not None else ""
        rows.append((v.node_text, v.path, v.data_type, _fmt(v.value), v.status, rng, v.unit))
    widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1], file=out)


def tag_id(rel: str) -> str:
    """A tag id from a path below the root: ``V101/PT101`` -> ``V101.PT101``."""
    out = re.sub(r"[\s,=\"\\]+", "_", rel.replace("/", ".")).strip("._") or "tag"
    return out[:128]


async def run_browse(args: argparse.Namespace) -> int:
    from adapters.opcua.tagcsv import TagRow, write_tag_csv

    try:
        _cfg, client = await _connect(args)
    except ValidationError as e:
        return _fail("; ".join(f"{'.'.join(str(x) for x in er['loc'])}: {er['msg']}" for er in e.errors()))
    except Exception as e:
        return _fail(f"cannot connect to {args.url}: {describe(e, source_from_args(args)).text}")
    try:
        try:
            found = await walk(client, args.root, args.depth, args.max_nodes)
        except (LookupError, ValueError) as e:
            return _fail(str(e))
        print_table(found, sys.stdout)
        print(f"{len(found)} variables below {args.root}", file=sys.stderr)
        if args.out:
            rows = []
            ids: set[str] = set()
            for v in found:
                if not v.numeric:
                    continue
                tid = tag_id(v.rel)
                while tid in ids:
                    tid += "_"
                ids.add(tid)
                rows.append(TagRow(
                    id=tid, name=v.name, kind="discrete" if v.data_type == "Boolean" else "analog",
                    unit=v.unit, range_lo=v.eu_low, range_hi=v.eu_high, source=args.source, node=v.node_text,
                ))
            write_tag_csv(args.out, rows)
            print(f"wrote {len(rows)} tags (numeric and Boolean variables) to {args.out}", file=sys.stderr)
    finally:
        await close_quietly(client, 2.0)
    return 0


async def run_probe(args: argparse.Namespace) -> int:
    """Read the given node ids / browse paths once and print what comes back."""
    points = []
    for k, text in enumerate(args.nodes):
        try:
            parse_node_id(text)
            points.append({"tag": f"p{k}", "node": text})
        except ValueError:
            try:
                parse_browse_path(text)
            except ValueError as e:
                return _fail(f"{text!r} is neither a node id nor a browse path ({e})")
            points.append({"tag": f"p{k}", "path": text})
    try:
        _cfg, client = await _connect(args, points)
    except ValidationError as e:
        return _fail("; ".join(f"{'.'.join(str(x) for x in er['loc'])}: {er['msg']}" for er in e.errors()))
    except Exception as e:
        return _fail(f"cannot connect to {args.url}: {describe(e, source_from_args(args)).text}")
    try:
        limit = BatchLimit("probe", "browse", 200)
        namespaces = await read_namespaces(client) if any("nsu=" in t for t in args.nodes) else None
        nodes: list[ua.NodeId | str] = []
        for p in points:
            if "node" in p:
                try:
                    nodes.append(to_node_id(parse_node_id(p["node"]), namespaces))
                except KeyError as e:
                    nodes.append(str(e.args[0]))
            else:
                [r] = await resolve_paths(client, [parse_browse_path(p["path"])], limit)
                nodes.append(r)
        ok = [n for n in nodes if isinstance(n, ua.NodeId)]
        ids = [ua.ReadValueId(NodeId=n, AttributeId=a) for n in ok
               for a in (ua.AttributeIds.Value, ua.AttributeIds.DataType)]
        values = await _read(client, ids, BatchLimit("probe", "read", 1000)) if ids else []
        k = 0
        failed = 0
        for text, n in zip(args.nodes, nodes, strict=True):
            if isinstance(n, str):
                print(f"{text}: {n}")
                failed += 1
                continue
            dv, dt_ = values[2 * k], values[2 * k + 1]
            k += 1
            code = dv.StatusCode.value if dv.StatusCode is not None else 0
            vt = dv.Value.VariantType.name if dv.Value is not None and dv.Value.VariantType is not None else "-"
            print(f"{text}: {n.to_string()} value={_fmt(dv.Value.Value if dv.Value else None)} "
                  f"variant={vt} datatype={_type_name(dt_.Value.Value if dt_.Value else None)} "
                  f"status={status_name(code)} source_ts={dv.SourceTimestamp} server_ts={dv.ServerTimestamp}")
            failed += code >> 31
        return 1 if failed else 0
    finally:
        await close_quietly(client, 2.0)

