"""OPC UA servers for the plant simulator, the tests and the bench: real asyncua servers.

The simulator module of the OPC UA source spec (``traits`` and ``build`` implement the
contract in :mod:`devkit.simulator`).

:class:`OpcuaPlantServer` serves every point of a list of ``type: opcua`` source configs,
one asyncua server per endpoint (``host:port`` of the source's ``url``):

* ``node:`` points become variables with exactly that node id (namespaces are registered
  up to the index used; an ``nsu=`` URI is registered as a namespace), in folders
  ``Objects/Simulated/G000``, ``G001``... of 100 variables each;
* ``path:`` points become variables at that browse path, folders created on the way
  (elements without a namespace prefix get namespace 2);
* variables are Double, or Boolean for discrete tags; ``types`` overrides per tag
  (``{"TT-101": "Int16"}``, any VariantType name, also ``String`` for type-mismatch tests).

Security: endpoints for None and for every policy/mode the sources use, with a generated
server certificate unless ``certificate``/``private_key`` are given; ``users`` (default: the
sources' username/password) are the only accepted logins (anonymous is refused when there
are users); ``trusted_certs`` (DER bytes) restricts client certificates (default: any).

Test hooks: :meth:`set_value` with status code and timestamps, :meth:`pause`/:meth:`resume`
(stop listening and drop connections, sessions kept), per-service ``limits`` answered with
``BadTooManyOperations`` / ``BadTooManyMonitoredItems``, and counters of every service
called (``calls``) including the ones that would change the server (``writes``).

``python -m devkit.simulator.opcua -c site.yaml`` runs the servers of a config's OPC UA
sources in a child process (the restart and scale tests, bench/opcua.py): every
``--every`` seconds each value changes (a sawtooth per point, SourceTimestamp = now);
it prints ``ready`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from asyncua.ua.uaerrors import UaStatusCodeError

from adapters.opcua.certs import make_certificate
from adapters.opcua.config import OpcuaPoint, OpcuaSource
from adapters.opcua.nodeids import parse_browse_path, parse_node_id
from adapters.opcua.resolve import node_id, to_node_id
from devkit.simulator import SimulatedDevice, SourceTraits
from gateway.core.config import SiteConfig, SourceConfig, Tag

if TYPE_CHECKING:
    from devkit.simulator.plant import Frame

log = logging.getLogger(__name__)
if logging.getLogger("asyncua").level == logging.NOTSET:  # as adapters/opcua/session.py does
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)

SIM_NS = "urn:hazardgw:simulator"
_POLICY_TYPES = {
    ("None", "None"): ua.SecurityPolicyType.NoSecurity,
    ("Basic256Sha256", "Sign"): ua.SecurityPolicyType.Basic256Sha256_Sign,
    ("Basic256Sha256", "SignAndEncrypt"): ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ("Aes128Sha256RsaOaep", "Sign"): ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ("Aes128Sha256RsaOaep", "SignAndEncrypt"): ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
}
#: services that would change the server: the adapter must never call them
MUTATING = ("write", "add_nodes", "delete_nodes", "add_references", "delete_references", "call", "history_update")
_COUNTED = ("read", "browse", "browse_next", "translate_browsepaths_to_nodeids", "create_subscription",
            "create_monitored_items", "delete_subscriptions", *MUTATING)


class _Users(UserManager):
    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)
        self.refused = 0

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if not self.users:
            return User(role=UserRole.User)
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User)
        self.refused += 1
        return None


@dataclass
class _Var:
    node: Node
    vtype: ua.VariantType
    point: OpcuaPoint
    source: str


@dataclass
class _Endpoint:
    url: str
    sources: list[OpcuaSource] = field(default_factory=list)
    server: Server | None = None
    paused: bool = False


def _vtype(tag: Tag | None, override: str | None) -> ua.VariantType:
    if override:
        return cast(ua.VariantType, getattr(ua.VariantType, override))
    return ua.VariantType.Boolean if tag is not None and tag.kind == "discrete" else ua.VariantType.Double


def _coerce(value: Any, vt: ua.VariantType) -> Any:
    if vt == ua.VariantType.Boolean:
        return bool(value)
    if vt in (ua.VariantType.Float, ua.VariantType.Double):
        return float(value)
    if vt == ua.VariantType.String:
        return str(value)
    if vt == ua.VariantType.DateTime:
        return value if isinstance(value, dt.datetime) else dt.datetime.now(dt.UTC)
    if 2 <= int(vt) <= 9:  # integers
        return round(float(value))
    return value


class OpcuaPlantServer:
    """Serves the points of ``sources`` (see the module doc for the options)."""

    def __init__(
        self,
        sources: Sequence[OpcuaSource],
        tags: Mapping[str, Tag] | None = None,
        *,
        types: Mapping[str, str] | None = None,
        certificate: str | Path | None = None,
        private_key: str | Path | None = None,
        users: Mapping[str, str] | None = None,
        trusted_certs: Sequence[bytes] | None = None,
        limits: Mapping[str, int] | None = None,
        policies: Sequence[tuple[str, str]] | None = None,
        path_id_prefix: str = "",
    ) -> None:
        self._tags = dict(tags or {})
        self._prefix = path_id_prefix  # node ids of path variables: prefix + path (a restart may move them)
        self._types = dict(types or {})
        self._cert = certificate
        self._key = private_key
        self._trusted = list(trusted_certs) if trusted_certs is not None else None
        self.limits = dict(limits or {})
        self._endpoints: dict[str, _Endpoint] = {}
        self._by_source: dict[str, _Endpoint] = {}
        self._vars: dict[str, _Var] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._silenced: set[str] = set()
        self._quiet_tags: set[str] = set()  # tags the plant left out: served BadNoCommunication
        self.calls: Counter[str] = Counter()  # service -> requests
        self.operations: Counter[str] = Counter()  # service -> operations (items, nodes)
        self.sessions = 0
        if users is None:
            users = {s.username: s.password.get_secret_value() for s in sources
                     if s.username is not None and s.password is not None}
        self._users = _Users(users)
        wanted = set(policies or ())
        for s in sources:
            key = urlsplit(s.url).netloc
            ep = self._endpoints.setdefault(key, _Endpoint(s.url))
            ep.sources.append(s)
            self._by_source[s.id] = ep
            wanted.add((s.security.policy, s.security.message_mode))
        self._policies = [_POLICY_TYPES[("None", "None")]] + [
            _POLICY_TYPES[p] for p in sorted(wanted) if p in _POLICY_TYPES and p[0] != "None"
        ]

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoints(self) -> list[str]:
        return [ep.url for ep in self._endpoints.values()]

    @property
    def writes(self) -> int:
        """Calls of services that would change the server (Write, Call, node management...)."""
        return sum(self.calls[s] for s in MUTATING)

    @property
    def refused_logins(self) -> int:
        return self._users.refused

    async def start(self) -> None:
        for ep in self._endpoints.values():
            if ep.server is None:
                ep.server = await self._make_server(ep)
                await ep.server.start()

    async def stop(self) -> None:
        for ep in self._endpoints.values():
            server, ep.server = ep.server, None
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> OpcuaPlantServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def pause(self, source: str | None = None) -> None:
        """Stop listening and drop every connection (of ``source``'s endpoint, or all); the
        address space and the server-side sessions stay (a network cut)."""
        for ep in self._eps(source):
            if ep.server is not None and not ep.paused:
                ep.paused = True
                assert ep.server.bserver is not None
                await ep.server.bserver.stop()

    async def resume(self, source: str | None = None) -> None:
        for ep in self._eps(source):
            if ep.server is not None and ep.paused:
                ep.paused = False
                assert ep.server.bserver is not None
                await ep.server.bserver.start()

    def _eps(self, source: str | None) -> list[_Endpoint]:
        return list(self._endpoints.values()) if source is None else [self._by_source[source]]

    def _security_files(self) -> tuple[str | Path, str | Path]:
        if self._cert is not None and self._key is not None:
            return self._cert, self._key
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hazardgw-opcua-sim-")
        d = Path(self._tmp.name)
        cert, key = d / "server-cert.der", d / "server-key.pem"
        if not cert.exists():
            der, pem = make_certificate(SIM_NS, hostname="127.0.0.1", common_name="hazardgw simulator",
                                        server=True)
            cert.write_bytes(der)
            key.write_bytes(pem)
        self._cert, self._key = cert, key
        return cert, key

    async def _make_server(self, ep: _Endpoint) -> Server:
        server = Server(user_manager=self._users)
        await server.init()
        server.set_endpoint(ep.url)
        server.set_server_name("hazardgw simulated DCS")
        await server.set_application_uri(SIM_NS)
        server.set_security_policy(self._policies)
        if len(self._policies) > 1:
            cert, key = self._security_files()
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
        if self._users.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self._trusted is not None:
            trusted = set(self._trusted)

            async def validate(cert: Any, app: Any) -> None:
                from asyncua.common.utils import ServiceError
                from cryptography.hazmat.primitives import serialization

                if cert.public_bytes(serialization.Encoding.DER) not in trusted:
                    raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

            server.set_certificate_validator(validate)
        self._instrument(server)
        await self._populate(server, ep)
        return server

    def _instrument(self, server: Server) -> None:
        """Count every session's service calls; enforce ``limits``."""
        iserver = server.iserver
        original = iserver.create_session

        def create_session(name: str, user: Any = None, external: bool = False) -> Any:
            session = original(name, user=user, external=external) if user is not None \
                else original(name, external=external)
            if external:
                self.sessions += 1
                self._wrap(session)
            return session

        iserver.create_session = create_session  # type: ignore[method-assign]

    def _wrap(self, session: Any) -> None:
        from asyncua.common.utils import ServiceError

        sim = self
        per_sub: Counter[int] = Counter()

        def count_of(name: str, params: Any) -> int:
            for attr in ("NodesToRead", "NodesToBrowse", "ItemsToCreate", "NodesToWrite", "ContinuationPoints"):
                if hasattr(params, attr):
                    return len(getattr(params, attr))
            return len(params) if isinstance(params, list) else 1

        for name in _COUNTED:
            fn = getattr(session, name, None)
            if fn is None:
                continue

            def wrapper(params: Any, *args: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
                n = count_of(_name, params)
                sim.calls[_name] += 1
                sim.operations[_name] += n
                limit = sim.limits.get({"create_monitored_items": "monitored_items"}.get(_name, _name))
                if limit is not None and n > limit:
                    raise ServiceError(ua.StatusCodes.BadTooManyOperations)
                if _name == "create_monitored_items" and "items_per_subscription" in sim.limits:
                    return sim._capped_items(_fn, params, per_sub)
                return _fn(params, *args, **kw)

            setattr(session, name, wrapper)

    async def _capped_items(self, fn: Any, params: Any, per_sub: Counter[int]) -> list[Any]:
        cap = self.limits["items_per_subscription"]
        room = max(0, cap - per_sub[params.SubscriptionId])
        items = list(params.ItemsToCreate)
        params.ItemsToCreate = items[:room]
        results = list(await fn(params)) if params.ItemsToCreate else []
        per_sub[params.SubscriptionId] += len(results)
        for _ in items[room:]:
            too_many = ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems)  # type: ignore[arg-type]
            results.append(ua.MonitoredItemCreateResult(StatusCode=too_many))
        return results

    async def _namespace(self, server: Server, names: list[str], index: int | None = None,
                         uri: str | None = None) -> int:
        """The index of namespace ``uri``, or make sure ``index`` exists; ``names`` is kept current."""
        if uri is not None:
            if uri not in names:
                await server.register_namespace(uri)
                names[:] = await server.get_namespace_array()
            return names.index(uri)
        assert index is not None
        while len(names) <= index:
            await server.register_namespace(f"urn:hazardgw:simulator:ns{len(names)}")
            names[:] = await server.get_namespace_array()
        return index

    async def _populate(self, server: Server, ep: _Endpoint) -> None:
        sim_ns = await server.register_namespace(SIM_NS)
        names = list(await server.get_namespace_array())
        folder = await server.nodes.objects.add_folder(node_id("Simulated", sim_ns, ua.NodeIdType.String),
                                                       ua.QualifiedName("Simulated", sim_ns))
        folders: dict[tuple[str, ...], Node] = {}
        groups: list[Node] = []  # node-id variables, 100 per folder (asyncua adds a child in O(siblings))
        count = 0
        for src in ep.sources:
            for p in src.points:
                if p.tag in self._vars:
                    continue
                tag = self._tags.get(p.tag)
                vt = _vtype(tag, self._types.get(p.tag))
                initial = ua.Variant(_coerce(0, vt) if vt != ua.VariantType.String else "", vt)
                if p.node is not None:
                    ref = parse_node_id(p.node)
                    if ref.nsu is not None:
                        await self._namespace(server, names, uri=ref.nsu)
                    else:
                        await self._namespace(server, names, index=ref.ns)
                    nid = to_node_id(ref, names)
                    bname = ua.QualifiedName(str(ref.ident), nid.NamespaceIndex)
                    if count % 100 == 0:
                        g = f"G{len(groups):03d}"
                        groups.append(await folder.add_folder(node_id(f"Simulated/{g}", sim_ns, ua.NodeIdType.String),
                                                              ua.QualifiedName(g, sim_ns)))
                    count += 1
                    node = await groups[-1].add_variable(nid, bname, initial)
                else:
                    node = await self._add_at_path(server, names, folders, p.path or "", initial)
                self._vars[p.tag] = _Var(node, vt, p, src.id)
                if tag is not None and tag.kind != "discrete":
                    await self._add_eu(node, tag)

    async def _add_eu(self, node: Node, tag: Tag) -> None:
        """EURange and EngineeringUnits properties, as a DCS gives its analog items."""
        ns = node.nodeid.NamespaceIndex
        if tag.range is not None:
            rng = ua.Range(Low=float(tag.range[0]), High=float(tag.range[1]))
            await node.add_property(ns, "EURange", ua.Variant(rng, ua.VariantType.ExtensionObject))
        if tag.unit:
            eu = ua.EUInformation(DisplayName=ua.LocalizedText(tag.unit), Description=ua.LocalizedText(tag.unit))
            await node.add_property(ns, "EngineeringUnits", ua.Variant(eu, ua.VariantType.ExtensionObject))

    async def _add_at_path(self, server: Server, names: list[str], folders: dict[tuple[str, ...], Node],
                           path: str, initial: ua.Variant) -> Node:
        elements = parse_browse_path(path)
        parent = server.nodes.root
        for k, el in enumerate(elements):
            key = tuple(e.text() for e in elements[: k + 1])
            last = k == len(elements) - 1
            if not last:
                known = folders.get(key)
                if known is None and el.ns in (None, 0):
                    for child in await parent.get_children():  # a standard folder (Objects, Types...)
                        qn = await child.read_browse_name()
                        if qn.NamespaceIndex == 0 and qn.Name == el.name:
                            known = folders[key] = child
                            break
                if known is not None:
                    parent = known
                    continue
            ns = await self._namespace(server, names, index=el.ns if el.ns is not None else 2)
            qn = ua.QualifiedName(el.name, ns)
            nid = node_id(self._prefix + "/".join(key), ns, ua.NodeIdType.String)
            if last:
                return await parent.add_variable(nid, qn, initial)
            parent = folders[key] = await parent.add_folder(nid, qn)
        raise ValueError(f"empty browse path {path!r}")

    # ------------------------------------------------------------------ values
    def has_tag(self, tag: str) -> bool:
        return tag in self._vars

    def node_of(self, tag: str) -> ua.NodeId:
        return self._vars[tag].node.nodeid

    async def set_value(
        self,
        tag: str,
        value: Any,
        *,
        status: int | str = ua.StatusCodes.Good,
        source_ts: dt.datetime | bool | None = True,
        server_ts: dt.datetime | bool | None = True,
        vtype: str | None = None,
    ) -> None:
        """Set a variable's value; ``status`` a code or name (``"BadSensorFailure"``);
        timestamps ``True`` = now, ``None``/``False`` = absent, or a datetime."""
        var = self._vars[tag]
        vt = cast(ua.VariantType, getattr(ua.VariantType, vtype)) if vtype else var.vtype
        code = getattr(ua.StatusCodes, status) if isinstance(status, str) else status
        now = dt.datetime.now(dt.UTC)
        src = now if source_ts is True else (source_ts or None)
        srv = now if server_ts is True else (server_ts or None)
        variant = ua.Variant(_coerce(value, vt) if value is not None else None, vt if value is not None else
                             ua.VariantType.Null)
        dv = ua.DataValue(variant, ua.StatusCode(code), SourceTimestamp=src, ServerTimestamp=srv)  # type: ignore[arg-type]
        ep = self._by_source[var.source]
        if ep.server is None:
            raise RuntimeError("server not started")
        await ep.server.write_attribute_value(var.node.nodeid, dv)

    async def show(self, frame: Frame, ts_ms: int) -> None:
        """One plant frame: every value of a tag served here; silent sources stop listening,
        silent tags read BadNoCommunication (until a frame leaves them out)."""
        ts = dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC)
        silent = frame.effects.silent_sources & self._by_source.keys()
        for sid in silent - self._silenced:
            await self.pause(sid)
        for sid in self._silenced - silent:
            await self.resume(sid)
        self._silenced = set(silent)
        quiet = frame.effects.silent_tags & self._vars.keys()
        for tag in quiet - self._quiet_tags:  # what a DCS reports for a transmitter it lost
            if self._vars[tag].source not in silent:
                await self.set_value(tag, None, status="BadNoCommunication", source_ts=ts)
        self._quiet_tags = set(quiet)
        for tag, v in frame.values.items():
            var = self._vars.get(tag)
            if v is None or var is None or var.source in silent or tag in quiet or var.vtype == ua.VariantType.String:
                continue
            await self.set_value(tag, v, source_ts=ts)

    def status(self) -> dict[str, Any]:
        return {"endpoints": self.endpoints, "points": len(self._vars), "calls": dict(self.calls),
                "sessions": self.sessions, "refused_logins": self.refused_logins}


# ---------------------------------------------------------------------- simulator contract


def traits(configs: Sequence[SourceConfig]) -> SourceTraits:
    """Every variable is its own node: a scenario may leave any one tag out (it is then served
    with status BadNoCommunication, as a DCS reports a transmitter it lost)."""
    return SourceTraits(silenceable_tags=frozenset(t for cfg in configs for t in cfg.point_tags()))


def build(configs: Sequence[SourceConfig], site: SiteConfig) -> list[SimulatedDevice]:
    return [OpcuaPlantServer(cast(Sequence[OpcuaSource], configs), site.tag_map())]


# ---------------------------------------------------------------------- child process


async def _serve(args: argparse.Namespace) -> None:
    from gateway.validate import load_config

    config = load_config(args.config)
    sources = [s for s in config.sources if isinstance(s, OpcuaSource) and s.enabled]
    sim = OpcuaPlantServer(sources, config.tag_map(), certificate=args.cert, private_key=args.key,
                           path_id_prefix=args.path_id_prefix)
    await sim.start()
    print("ready", flush=True)
    tags = [t for t in sim._vars if sim._vars[t].vtype != ua.VariantType.String]
    k = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            now = dt.datetime.now(dt.UTC)
            for j, tag in enumerate(tags):
                var = sim._vars[tag]
                v: float = float((k + j) % 2) if var.vtype == ua.VariantType.Boolean else float((k + j) % 50)
                await sim.set_value(tag, v, source_ts=now, server_ts=now)
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.every)
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devkit.simulator.opcua",
                                description="serve a config's OPC UA points, changing every value each --every s")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--path-id-prefix", default="", help="prefix of the node ids of path variables")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(_serve(args))
    except UaStatusCodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
