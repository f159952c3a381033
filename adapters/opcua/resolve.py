"""From configured addresses to the server's node ids, at every connect.

* ``node:`` -> :class:`asyncua.ua.NodeId` (``nsu=`` through the server's NamespaceArray);
* ``path:`` -> the node id found by browsing level by level from the Root folder: all paths
  advance together, every node to expand is browsed once per connect, in batched Browse
  requests (with BrowseNext for continuation points), so 5,000 paths below one folder
  cost a handful of requests. Hierarchical references are followed forward; an element
  without a namespace prefix matches its name in any namespace.

A point that cannot be resolved gets a reason (shown in ``/api/health``, logged once per
connect in a summary) and reads ``bad``; the others go on.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from asyncua import Client, ua

from adapters.opcua.batching import BatchLimit, in_batches, status_name
from adapters.opcua.nodeids import NodeRef, PathElement, format_browse_path


def node_id(ident: int | str | bytes | uuid.UUID, ns: int = 0, kind: ua.NodeIdType | None = None) -> ua.NodeId:
    """``ua.NodeId`` (whose annotations name asyncua's own int/str aliases)."""
    return ua.NodeId(ident, ns, kind)  # type: ignore[arg-type]


ROOT = node_id(ua.ObjectIds.RootFolder)
NAMESPACE_ARRAY = node_id(ua.ObjectIds.Server_NamespaceArray)
_HIERARCHICAL = node_id(ua.ObjectIds.HierarchicalReferences)


def to_node_id(ref: NodeRef, namespaces: Sequence[str] | None) -> ua.NodeId:
    """The asyncua NodeId of a parsed node id; KeyError when an ``nsu=`` is unknown."""
    ns = ref.ns
    if ref.nsu is not None:
        if namespaces is None or ref.nsu not in namespaces:
            raise KeyError(f"namespace {ref.nsu!r} is not in the server's NamespaceArray")
        ns = list(namespaces).index(ref.nsu)
    if ref.kind == "i":
        return node_id(int(ref.ident), ns)
    if ref.kind == "s":
        return node_id(ref.ident, ns, ua.NodeIdType.String)
    if ref.kind == "g":
        return node_id(uuid.UUID(ref.ident), ns, ua.NodeIdType.Guid)
    return node_id(base64.b64decode(ref.ident), ns, ua.NodeIdType.ByteString)


def plain(nid: ua.NodeId) -> ua.NodeId:
    """A NodeId from an ExpandedNodeId (same namespace index and identifier)."""
    return ua.NodeId(nid.Identifier, nid.NamespaceIndex, nid.NodeIdType)


async def read_namespaces(client: Client) -> list[str]:
    dv = (await client.uaclient.read(_read_params([NAMESPACE_ARRAY], ua.AttributeIds.Value)))[0]
    value = dv.Value.Value if dv.Value is not None else None
    return [str(v) for v in value] if isinstance(value, list) else []


def _read_params(nodes: Sequence[ua.NodeId], attr: int) -> ua.ReadParameters:
    p = ua.ReadParameters()
    p.TimestampsToReturn = ua.TimestampsToReturn.Both
    p.NodesToRead = [ua.ReadValueId(NodeId=n, AttributeId=attr) for n in nodes]
    return p


@dataclass(frozen=True)
class Child:
    name: ua.QualifiedName
    node: ua.NodeId
    node_class: int
    ref_type: int = 0  # numeric id of the reference type (ns 0), 0 if other
    display_name: ua.LocalizedText | None = None


def _child(r: ua.ReferenceDescription) -> Child:
    rt = r.ReferenceTypeId
    ref = rt.Identifier if rt.NamespaceIndex == 0 and isinstance(rt.Identifier, int) else 0
    return Child(r.BrowseName, plain(r.NodeId), int(r.NodeClass), ref, r.DisplayName)


async def browse_children(
    client: Client, nodes: Sequence[ua.NodeId], limit: BatchLimit, *, node_class_mask: int = 0
) -> list[list[Child] | str]:
    """Forward hierarchical children of each node (continuation points followed), or the
    status name when the node cannot be browsed."""

    async def call(batch: Sequence[ua.NodeId]) -> list[ua.BrowseResult]:
        params = ua.BrowseParameters()
        params.RequestedMaxReferencesPerNode = 0
        params.NodesToBrowse = [
            ua.BrowseDescription(
                NodeId=n,
                BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=_HIERARCHICAL,
                IncludeSubtypes=True,
                NodeClassMask=node_class_mask,
                ResultMask=ua.BrowseResultMask.All,
            )
            for n in batch
        ]
        return list(await client.uaclient.browse(params))

    results = await in_batches(list(nodes), limit, call)
    out: list[list[Child] | str] = []
    for res in results:
        if res.StatusCode is not None and not res.StatusCode.is_good():
            out.append(status_name(res.StatusCode.value))
            continue
        children = [_child(r) for r in res.References or ()]
        cp = res.ContinuationPoint
        while cp:
            nxt = ua.BrowseNextParameters()
            nxt.ReleaseContinuationPoints = False
            nxt.ContinuationPoints = [cp]
            more = (await client.uaclient.browse_next(nxt))[0]
            if more.StatusCode is not None and not more.StatusCode.is_good():
                break
            children.extend(_child(r) for r in more.References or ())
            cp = more.ContinuationPoint
        out.append(children)
    return out


def _match(children: Sequence[Child], el: PathElement) -> list[ua.NodeId]:
    found: list[ua.NodeId] = []
    for c in children:
        if c.name.Name == el.name and (el.ns is None or c.name.NamespaceIndex == el.ns) and c.node not in found:
            found.append(c.node)
    return found


async def resolve_paths(
    client: Client, paths: Sequence[tuple[PathElement, ...]], limit: BatchLimit
) -> list[ua.NodeId | str]:
    """The node id of each browse path, or why it has none."""
    current: list[ua.NodeId | str] = [ROOT] * len(paths)
    cache: dict[ua.NodeId, list[Child] | str] = {}
    depth = max((len(p) for p in paths), default=0)
    for level in range(depth):
        todo = [
            n for i, n in enumerate(current)
            if isinstance(n, ua.NodeId) and level < len(paths[i]) and n not in cache
        ]
        todo = list(dict.fromkeys(todo))
        if todo:
            for node, children in zip(todo, await browse_children(client, todo, limit), strict=True):
                cache[node] = children
        for i, n in enumerate(current):
            if not isinstance(n, ua.NodeId) or level >= len(paths[i]):
                continue
            el = paths[i][level]
            here = format_browse_path(paths[i][:level]) or "Root"
            children = cache[n]
            if isinstance(children, str):
                current[i] = f"cannot browse {here} ({children})"
                continue
            found = _match(children, el)
            if not found:
                current[i] = f"no {el.text()!r} below {here}"
            elif len(found) > 1:
                current[i] = (f"{len(found)} nodes named {el.name!r} below {here} (in namespaces "
                              f"{sorted({c.name.NamespaceIndex for c in children if c.name.Name == el.name})}); "
                              "write the namespace, e.g. 2:" + el.name)
            else:
                current[i] = found[0]
    return current
