"""The ``mapped`` profile: a platform's format declared in a mapping file, no Python.

``uplink.mapping`` names a shipped mapping (gateway/uplink/mappings/*.yaml) or a path to
one (gateway/uplink/mapping.py parses and compiles it; PROFILES.md is the writing guide).
The profile renders each message with the mapping's templates and wraps it in the
envelope; the url scheme picks the transport the mapping declares:

* ``tcp://`` / ``tls://``: JSON frames with a delimiter on one persistent connection,
  acknowledged per message by a response frame carrying the message id
  (:mod:`gateway.uplink.delimited`);
* ``http://`` / ``https://``: one POST per message, headers from the mapping, success by
  status and a body field (:mod:`gateway.uplink.http_transport`);
* ``mqtt://`` / ``mqtts://``: publish to the mapping's topic (:mod:`gateway.uplink.mqtt`).

What goes into the durable spool is the envelope with the body in the clear (so a changed
key applies to the backlog too, and the message id stays the same on every re-send); the
transport encrypts the body when it sends (:class:`Sealer`). Secrets (the key, IV and
options declared ``secret``) are never part of a spooled message: templates cannot use them
(``hazardgw check`` refuses it), only HTTP headers and the cipher do.

Point registration (``meta``): on start, when the config changes (a reload rebuilds the
uplink; a sources-only reload re-sends it), and on request: a frame from the platform (or
an HTTP response) matching the mapping's ``requests.meta`` rule, or
:meth:`gateway.uplink.service.UplinkService.register_points`.

Options (``uplink.options``): what the mapping declares under ``options:``, plus
``tag_fields`` ({tag id: {name: value}}: per-tag values the templates read as
``{tag.fields.<name>}``, e.g. the platform's 指标编码 ``target_code``), ``key_format`` /
``iv_format`` (override the mapping's: text, hex, base64).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway.core.problems import Problem
from gateway.uplink import codes
from gateway.uplink.ciphers import KEY_FORMATS, BodyCipher, CipherError, make_cipher
from gateway.uplink.connection import port_of
from gateway.uplink.generic import dumps
from gateway.uplink.mapping import (
    Env,
    HazardInfo,
    Mapping,
    MappingError,
    MessageSpec,
    SourceInfo,
    TagInfo,
    get_path,
    load_mapping,
    set_path,
)
from gateway.uplink.profile import Heartbeat, Message, Profile, TagValue, Transport, TransportError

if TYPE_CHECKING:
    from alerting.events import AlarmEvent
    from gateway.config import Config
    from gateway.core.config import SiteConfig, Uplink
    from gateway.core.yamlsrc import Path_

PROFILE_OPTIONS = ("tag_fields", "key_format", "iv_format")


class Sealer:
    """Turns a spooled message (envelope with the plain body) into what goes on the wire:
    the body serialized and encrypted in place. ``repr`` shows no key."""

    def __init__(self, mapping: Mapping, cipher: BodyCipher) -> None:
        self.body_path = mapping.body_path or ()
        self.cipher = cipher

    def __repr__(self) -> str:
        return f"<Sealer {self.cipher.name}>"

    def seal(self, payload: str) -> tuple[dict[str, Any] | Any, str]:
        """(the envelope document, the wire text)."""
        if not self.cipher.encrypts:
            return json.loads(payload), payload
        doc = json.loads(payload)
        body = get_path(doc, self.body_path)
        doc = set_path(doc, self.body_path, self.cipher.encrypt(dumps(body).encode("utf-8")))
        return doc, dumps(doc) if isinstance(doc, dict | list) else json.dumps(doc)

    def open(self, doc: Any) -> Any:
        """The plain body of a wire envelope (receivers): CipherError / ValueError when it
        does not decrypt or is not JSON."""
        if not self.cipher.encrypts:
            return get_path(doc, self.body_path)
        text = get_path(doc, self.body_path)
        if not isinstance(text, str):
            raise CipherError("the encrypted body is not a string")
        return json.loads(self.cipher.decrypt(text).decode("utf-8"))


def resolve_options(mapping: Mapping, uplink: Uplink) -> dict[str, Any]:
    """The option values templates see: the mapping's defaults, then ``uplink.options``."""
    out = {name: o.default for name, o in mapping.spec.options.items()}
    out.update({k: v for k, v in uplink.options.items() if k in mapping.spec.options})
    return out


def cipher_of(mapping: Mapping, uplink: Uplink) -> BodyCipher:
    env = mapping.spec.envelope
    opts = resolve_options(mapping, uplink)
    key_format = uplink.options.get("key_format", env.key_format)
    iv_format = uplink.options.get("iv_format", env.iv_format)
    key = opts.get(env.key) if env.key else None
    iv = None if env.iv in (None, "key") else opts.get(env.iv)
    if env.iv not in (None, "key") and iv is None:
        raise CipherError(f"options.{env.iv} (the IV) is not set")
    return make_cipher(env.cipher, key, key_format, iv, iv_format)


def tag_infos(config: SiteConfig, fields: dict[str, dict[str, Any]],
              maintenance: frozenset[str] = frozenset()) -> dict[str, TagInfo]:
    bound = config.source_of_tag()
    out = {}
    for t in config.tags:
        a = t.alarms
        out[t.id] = TagInfo(
            code=t.id, name=t.name or t.id, hazard_code=t.hazard_source, kind=t.kind, gas=t.gas, unit=t.unit,
            range_low=t.range[0] if t.range else None, range_high=t.range[1] if t.range else None,
            ll=a.ll.limit if a.ll else None, l=a.l.limit if a.l else None, h=a.h.limit if a.h else None,
            hh=a.hh.limit if a.hh else None, source=bound.get(t.id), fields=dict(fields.get(t.id) or {}),
            maintenance=t.id in maintenance,
        )
    return out


def hazard_infos(config: SiteConfig) -> dict[str, HazardInfo]:
    people = {p.id: p for p in config.people}
    out = {}
    for h in config.hazard_sources:
        roles: dict[str, tuple[str, str | None] | None] = {}
        for role in ("principal", "technical", "operational"):
            pid = getattr(h.responsible, role)
            p = people.get(pid) if pid else None
            roles[role] = (p.name, p.phone) if p else ((pid, None) if pid else None)
        out[h.code] = HazardInfo(h.code, h.name, h.grade, roles)
    return out


class MappedProfile(Profile):
    name = "mapped"

    def __init__(self, config: Config, uplink: Uplink) -> None:
        super().__init__(config, uplink)
        if uplink.mapping is None:
            raise ValueError("profile mapped needs uplink.mapping")
        self.mapping = load_mapping(uplink.mapping)
        self.scheme = urlsplit(uplink.url).scheme
        self.options = resolve_options(self.mapping, uplink)
        self.tag_fields: dict[str, dict[str, Any]] = dict(uplink.options.get("tag_fields") or {})
        self.sealer = Sealer(self.mapping, cipher_of(self.mapping, uplink))
        self._tags = tag_infos(config, self.tag_fields)
        self._static = {"site": config.site, "options": self.options}

    def __repr__(self) -> str:
        return f"<MappedProfile {self.mapping.name} {self.sealer.cipher.name}>"  # never the key

    def set_maintenance(self, tags: frozenset[str]) -> bool:
        self.maintenance = tags
        self._tags = tag_infos(self.config, self.tag_fields, tags)
        return self.mapping.uses("meta", "tag.maintenance")

    # ------------------------------------------------------------------ checks
    @classmethod
    def check(cls, uplink: Uplink) -> list[str]:
        return []  # everything needs the mapping and the site: check_config

    @classmethod
    def check_config(cls, config: SiteConfig) -> list[Problem]:
        up = config.uplink
        assert up is not None
        if up.mapping is None:
            return [Problem(("uplink",), None, "profile mapped needs uplink.mapping: a shipped mapping name "
                            "(jiangsu-tcp, mem-http-sm4) or the path of your mapping file")]
        try:
            mapping = load_mapping(up.mapping)
        except FileNotFoundError as e:
            return [Problem(("uplink", "mapping"), None, str(e))]
        except MappingError as e:
            return [*e.problems, Problem(("uplink", "mapping"), None,
                                         f"the mapping {up.mapping!r} has {len(e.problems)} problem(s), listed "
                                         f"with its file name")]
        return _config_problems(mapping, config, up)

    # ------------------------------------------------------------------ transport
    def transport(self) -> Transport:
        if self.scheme in ("tcp", "tls"):
            from gateway.uplink.delimited import DelimitedTcpTransport

            return DelimitedTcpTransport(self.uplink, self.mapping, self.sealer)
        if self.scheme in ("http", "https"):
            from gateway.uplink.http_transport import HttpTransport

            return HttpTransport(self.uplink, self.mapping, self.sealer, self.header_values())
        from gateway.uplink.mqtt import MqttTransport

        return SealingTransport(MqttTransport(self.config, self.uplink), self.sealer)

    def header_values(self) -> dict[str, str]:
        """The HTTP headers (secret options rendered here, kept in memory only)."""
        env = Env(self.tz, {"site": self.site, "options": self.options}, {})
        return {k: str(fn(env, None)) for k, fn in self.mapping.headers.items()}

    # ------------------------------------------------------------------ builders
    def _topic(self, spec: MessageSpec, env: Env) -> str:
        if self.scheme in ("http", "https"):
            return f"{spec.path.rstrip('/')}/{spec.kind}"
        if self.scheme in ("mqtt", "mqtts") and self.mapping.topic is not None:
            return str(self.mapping.topic(env, None))
        return spec.kind

    def _messages(self, spec: MessageSpec, now_ns: int, scopes: dict[str, Any],
                  collections: dict[str, list[Any]], priority: bool) -> list[Message]:
        chunks: list[dict[str, list[Any]]] = [collections]
        if spec.batched is not None:
            items = collections[spec.batched]
            n = spec.batch or max(1, len(items))
            chunks = [{**collections, spec.batched: items[i:i + n]} for i in range(0, len(items), n)] or [
                {**collections, spec.batched: []}]
        out = []
        for i, cols in enumerate(chunks):
            count = len(cols[spec.batched]) if spec.batched else 0
            msg = {"id": uuid.uuid4().hex, "kind": spec.kind, "service": spec.service, "time": now_ns,
                   "part": i + 1, "parts": len(chunks), "count": count}
            env = Env(self.tz, {**self._static, **scopes, "msg": msg}, cols)
            env.body = spec.body(env, None)
            doc = self.mapping.envelope(env, None)
            out.append(Message(self._topic(spec, env), dumps(doc), priority))
        return out

    def meta(self, now_ns: int) -> list[Message]:
        cfg = self.config
        self._tags = tag_infos(cfg, self.tag_fields, self.maintenance)  # a sources-only reload changes tag -> source
        hazards = hazard_infos(cfg)
        cols: dict[str, list[Any]]
        cols = {"tags": [(None, t) for t in self._tags.values()],
                "hazard_sources": [(h, None) for h in hazards.values()],
                "sources": [(SourceInfo(s.id, s.type), None) for s in cfg.sources]}
        out: list[Message] = []
        for spec in self.mapping.messages.get("meta", []):
            out += self._messages(spec, now_ns, {}, cols, True)
        return out

    def _tag(self, tag: str, hs: str | None = None) -> TagInfo:
        t = self._tags.get(tag)
        if t is None:  # a vote, or a tag added since: its id and hazard source are known
            t = TagInfo(tag, tag, hs, None, None, "", None, None, None, None, None, None, None,
                        dict(self.tag_fields.get(tag) or {}), tag in self.maintenance)
        return t

    def realtime(self, values: Sequence[TagValue], now_ns: int) -> list[Message]:
        if not values:
            return []
        tags = self._tags
        items = [(v, tags.get(v.tag) or self._tag(v.tag, v.hs)) for v in values]
        out: list[Message] = []
        for spec in self.mapping.messages.get("realtime", []):
            out += self._messages(spec, now_ns, {}, {"values": items}, False)
        return out

    def alarm(self, event: AlarmEvent, status: str) -> list[Message]:
        out: list[Message] = []
        for spec in self.mapping.messages.get("alarm", []):
            if spec.events is not None and event.event not in spec.events:
                continue
            if spec.conditions is not None and event.condition not in spec.conditions:
                continue
            scopes = {"alarm": (event, status), "tag": (None, self._tag(event.tag, event.hs))}
            out += self._messages(spec, event.wall, scopes, {}, True)
        return out

    def heartbeat(self, hb: Heartbeat) -> list[Message]:
        specs = self.mapping.messages.get("heartbeat", [])
        if not specs:
            return []
        hazards = hazard_infos(self.config)
        cols: dict[str, list[Any]]
        cols = {"sources": [(SourceInfo(sid, str(s.get("type"))), s) for sid, s in hb.sources.items()],
                "hazard_sources": [(hazards[c], h) for c, h in hb.hazard_sources.items() if c in hazards]}
        out: list[Message] = []
        for spec in specs:
            out += self._messages(spec, hb.ts, {"heartbeat": hb}, cols, False)
        return out


class SealingTransport(Transport):
    """Encrypts the body of each message, then hands it to another transport (MQTT)."""

    def __init__(self, inner: Transport, sealer: Sealer) -> None:
        self.inner = inner
        self.sealer = sealer

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def connect(self) -> None:
        await self.inner.connect()

    async def send(self, messages: Sequence[Message]) -> None:
        try:
            sealed = [Message(m.topic, self.sealer.seal(m.payload)[1], m.priority) for m in messages]
        except (ValueError, KeyError, TypeError) as e:
            raise TransportError(f"cannot seal a message: {e}") from None
        await self.inner.send(sealed)

    async def close(self) -> None:
        await self.inner.close()

    def describe(self) -> str:
        return f"{self.inner.describe()} ({self.sealer.cipher.name})"


# --------------------------------------------------------------------------- config checks


def _config_problems(mapping: Mapping, config: SiteConfig, up: Uplink) -> list[Problem]:
    out: list[Problem] = []

    def err(path: Path_, msg: str, severity: str = "error") -> None:
        out.append(Problem(path, None, msg, severity))  # type: ignore[arg-type]

    u = urlsplit(up.url)
    if u.scheme not in mapping.schemes():
        err(("uplink", "url"), f"mapping {mapping.name} sends over {', '.join(mapping.schemes())}: "
                               f"url {u.scheme}:// does not fit (the mapping has no {u.scheme} section)")
    elif u.scheme in ("tcp", "tls"):
        if port_of(u) is None:
            err(("uplink", "url"), "url needs a port: tcp://host:port or tls://host:port")
        if mapping.tcp is not None and mapping.tcp.ack.match is None:
            err(("uplink", "mapping"), f"mapping {mapping.name} has no acknowledgement (tcp.ack.match: null): a "
                "message written just before the connection drops is lost without notice", "warning")
    opts = up.options
    for name, spec in mapping.spec.options.items():
        v = opts.get(name, spec.default)
        shown = "" if spec.secret else f", got {v!r}"
        if v is None or v == "":
            if spec.required:
                err(("uplink", "options"), f"options.{name} is required by mapping {mapping.name}"
                    + (f" ({spec.description})" if spec.description else "")
                    + (": keep it in the environment, e.g. ${UPLINK_" + name.upper() + "}" if spec.secret else ""))
            continue
        if spec.pattern is not None and not (isinstance(v, str | int) and _full(spec.pattern, str(v))):
            err(("uplink", "options", name), f"options.{name} must match {spec.pattern}{shown}")
    for k in opts:
        if k not in mapping.spec.options and k not in PROFILE_OPTIONS:
            err(("uplink", "options", k), f"option {k!r} is not used by mapping {mapping.name} "
                f"(it declares {', '.join(mapping.spec.options)})", "warning")
    for k in ("key_format", "iv_format"):
        if k in opts and opts[k] not in KEY_FORMATS:
            err(("uplink", "options", k), f"options.{k} must be one of {', '.join(KEY_FORMATS)}, got {opts[k]!r}")
    out += _tag_field_problems(mapping, config, opts.get("tag_fields"))
    if not any(p.severity == "error" and p.path[:2] == ("uplink", "options") for p in out):
        try:
            cipher_of(mapping, up)
        except CipherError as e:
            env = mapping.spec.envelope
            err(("uplink", "options", env.key or "key"), f"{e} (cipher {env.cipher}, "
                f"key_format {opts.get('key_format', env.key_format)})")
    flagged = {p.path for p in out if p.severity == "error"}
    out += [p for p in _code_problems(mapping, config, opts) if p.path not in flagged]  # one error per option
    return out


def _full(pattern: str, text: str) -> bool:
    import re

    return re.fullmatch(pattern, text) is not None


def _tag_field_problems(mapping: Mapping, config: SiteConfig, tf: Any) -> list[Problem]:
    out: list[Problem] = []
    path: Path_ = ("uplink", "options", "tag_fields")
    if tf is None:
        tf = {}
    if not isinstance(tf, dict) or any(not isinstance(v, dict) for v in tf.values()):
        return [Problem(path, None, "options.tag_fields must map tag ids to {field: value}")]
    ids = {t.id for t in config.tags}
    for tag, fields in tf.items():
        if tag not in ids:
            out.append(Problem((*path, tag), None, f"unknown tag {tag!r}: not in tags"))
        for k, v in fields.items():
            if isinstance(v, dict | list):
                out.append(Problem((*path, tag, k), None, "tag field values are scalars"))
    for name in sorted(mapping.tag_fields_required):
        missing = [t.id for t in config.tags if name not in (tf.get(t.id) or {})]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            out.append(Problem(path, None, f"mapping {mapping.name} uses {{tag.fields.{name}}} without a fallback: "
                               f"give it for every tag (missing for {', '.join(missing[:5])}{more})"))
    return out


def _code_problems(mapping: Mapping, config: SiteConfig, opts: dict[str, Any]) -> list[Problem]:
    checks = mapping.spec.checks
    out: list[Problem] = []
    why = f" (mapping {mapping.name} checks codes)"
    ent: str | None = None
    if checks.enterprise_code is not None:
        ent = opts.get(checks.enterprise_code)
        msg = codes.enterprise_code_problem(ent)
        if msg is not None:
            out.append(Problem(("uplink", "options", checks.enterprise_code), None, msg + why))
            ent = None
    if checks.district_code is not None:
        msg = codes.district_code_problem(opts.get(checks.district_code))
        if msg is not None:
            out.append(Problem(("uplink", "options", checks.district_code), None, msg + why))
    if checks.hazard_codes and ent is not None:
        for i, h in enumerate(config.hazard_sources):
            msg = codes.hazard_code_problem(h.code, ent)
            if msg is not None:
                out.append(Problem(("hazard_sources", i, "code"), None, msg + why))
    if checks.uscc and len(config.site.code) == 18:
        msg = codes.uscc_problem(config.site.code)
        if msg is not None:
            out.append(Problem(("site", "code"), None, msg + why))
    return out
