"""Common part of the SMS and voice-call channels: an apprise plugin whose push is a signed
HTTPS request to a provider's API with template parameters taken from the alarm.

A provider channel is an ordinary apprise URL (``aliyun-sms://...``). Apprise parses it
(:meth:`ProviderPlugin.parse_url`), builds the plugin object and validates every part in
``__init__`` (an invalid URL raises :class:`~apprise.exception.AppriseImproperlyConfigured`
with a message naming the part: ``hazardgw check`` shows it). Sending:

* from the notifier: :meth:`ProviderPlugin.deliver` with the alarm's template parameters
  (``Templates.sms_fields``) returns a :class:`ProviderResult` (provider code, its class,
  message, request id), so the channel layer can log it clearly and count it;
* from plain apprise (``apprise -b ... aliyun-sms://...``): :meth:`send` fills the first
  template parameter with the title (a test message), the others with ``-``.

Requests are built by pure functions of the subclass (:meth:`build_request`, given the time
and a nonce) and answered by :meth:`parse_response` (status, body), so signing and error
mapping are tested without a network; the transport is ``requests`` (apprise's own HTTP
client), run in the worker thread apprise or the channel layer gives it.

URL query options common to every provider scheme:

* ``endpoint=URL``: another API endpoint (a private gateway, a test stand-in). Default: the
  provider's public endpoint. ``http://`` is allowed (a stand-in on loopback).
* ``params=a,b,c``: the template parameters, in order (Tencent's ``{1} {2} ...`` are
  positional; Alibaba's ``${name}`` are named). ``var:field`` renames: ``name:hs`` fills the
  template variable ``${name}`` with the hazard source. Fields: :data:`FIELDS`.
* ``maxlen=N``: cut every parameter value to N characters (0: never). Alibaba Cloud limits a
  notification template variable to 35 characters, so that is its default.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from apprise.common import NotifyType
from apprise.exception import AppriseImproperlyConfigured
from apprise.plugins.base import NotifyBase
from apprise.url import PrivacyMode

#: template parameters the notifier fills for every push (``Templates.sms_fields``)
FIELDS: tuple[str, ...] = (
    "site",  # site name
    "site_code",
    "hs",  # hazard source name
    "hs_code",
    "tag",  # 位号
    "tag_name",
    "condition",  # 高高报 ...
    "value",  # with unit
    "limit",  # with unit
    "priority",  # 一级(紧急) ...
    "time",  # raise time, site time zone, short form
    "state",
    "step",  # escalation step (0 first push)
    "person",  # the recipient's name
    "link",  # one-tap acknowledge link (most providers refuse links in variables)
)
#: the default ``params`` (the issue's list: site, hazard source, tag, value, limit, priority, time)
DEFAULT_PARAMS: tuple[str, ...] = ("site", "hs", "tag", "value", "limit", "priority", "time")

_PHONE = re.compile(r"^\+?[0-9]{5,20}$")
_VAR = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")

#: code classes (metric label ``result`` of ``hazardgw_notify_provider_results_total``)
CLASSES: Mapping[str, str] = {
    "ok": "accepted",
    "auth": "credentials or permission rejected (AccessKey/SecretId, signature, RAM/CAM policy, IP allow list)",
    "balance": "account in arrears, or the SMS/voice package is used up: top up in the provider console",
    "quota": "rate or daily limit reached for this number or account (provider flow control)",
    "template": "template, sign name or caller number not approved, or the parameters do not match the template",
    "number": "phone number rejected (invalid, not reachable by this template, or blacklisted)",
    "provider": "provider-side error; retried",
    "http": "no valid answer from the provider (connection, timeout, HTTP error, not JSON); retried",
    "other": "unclassified provider code",
}


@dataclass(frozen=True, slots=True)
class ProviderResult:
    ok: bool
    code: str  # the provider's code ("OK", "isv.BUSINESS_LIMIT_CONTROL", "LimitExceeded...", "HTTP 502")
    kind: str  # a key of CLASSES
    message: str = ""  # the provider's message (not secret)
    request_id: str | None = None

    def text(self) -> str:
        """One clear line: code, class and its meaning, the provider's message, request id."""
        if self.ok:
            return f"{self.code} (accepted)"
        out = f"{self.code} ({self.kind}: {CLASSES.get(self.kind, self.kind)})"
        if self.message:
            out += f": {self.message[:300]}"
        if self.request_id:
            out += f" [request {self.request_id}]"
        return out


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def mask_phone(p: str) -> str:
    """138****5678 (PIPL: a phone number is personal data; logs and records show it masked)."""
    prefix = "+" if p.startswith("+") else ""
    digits = p.lstrip("+")
    if len(digits) == 13 and digits.startswith("861"):  # +86 mainland mobile
        prefix, digits = prefix + "86", digits[2:]
    if len(digits) < 7:
        return "****"
    return prefix + digits[:3] + "****" + digits[-4:]


def _unq(s: str | None) -> str:
    return NotifyBase.unquote(s) if s else ""


def parse_params(spec: str | None) -> list[tuple[str, str]]:
    """``"site,name:hs"`` -> [("site", "site"), ("name", "hs")] (template variable, field)."""
    if spec is None or not spec.strip():
        return [(f, f) for f in DEFAULT_PARAMS]
    out: list[tuple[str, str]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        var, _, field = part.partition(":")
        var, field = var.strip(), (field.strip() or var.strip())
        if field not in FIELDS:
            raise AppriseImproperlyConfigured(
                f"params: unknown field {field!r} (fields: {', '.join(FIELDS)})"
            )
        if not _VAR.match(var):
            raise AppriseImproperlyConfigured(f"params: template variable {var!r} must be a letter then letters, "
                                              "digits or _ (at most 32)")
        out.append((var, field))
    if not out:
        raise AppriseImproperlyConfigured("params: empty")
    return out


def check_endpoint(endpoint: str | None, default: str) -> str:
    if not endpoint:
        return default
    u = urlsplit(endpoint)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise AppriseImproperlyConfigured(f"endpoint must be an http(s):// URL, got {endpoint!r}")
    return endpoint.rstrip("/")


def check_phones(phones: Sequence[str], what: str = "phone") -> list[str]:
    out = []
    for p in phones:
        p = p.strip().replace(" ", "").replace("-", "")
        if not _PHONE.match(p):
            raise AppriseImproperlyConfigured(f"{what} {mask_phone(p)} is not a phone number (digits, optional +)")
        mainland = p[3:] if p.startswith("+86") else p
        if mainland.startswith("1") and len(mainland) != 11:
            raise AppriseImproperlyConfigured(
                f"{what} {mask_phone(p)}: a mainland mobile number has 11 digits (1xxxxxxxxxx, or +86 and 11 digits)"
            )
        out.append(p)
    return out


class ProviderPlugin(NotifyBase):
    """Base of the four provider schemes (not registered itself)."""

    # apprise attributes. URLBase/NotifyBase set the first four to None without an annotation,
    # so a type checker reads their type as None; every apprise plugin gives them strings.
    service_name: str  # type: ignore[assignment]
    service_url: str  # type: ignore[assignment]
    secure_protocol: str  # type: ignore[assignment]
    templates: tuple[str, ...]  # type: ignore[assignment]
    title_maxlen = 0
    body_maxlen = 4000
    request_rate_per_sec = 0.0  # no throttle between pushes: each push is one request
    category = "custom"

    # provider attributes (subclasses)
    scheme: ClassVar[str] = ""  # the gateway's name: aliyun-sms (apprise: secure_protocol aliyunsms)
    provider: ClassVar[str] = ""  # "aliyun" | "tencent"
    kind: ClassVar[str] = ""  # "sms" | "voice"
    default_endpoint: ClassVar[str] = ""
    default_maxlen: ClassVar[int] = 0
    #: the URL's parts before the phone numbers, in order (the host, then path segments), as
    #: attribute names: :meth:`url` writes them, :meth:`parse_url` reads them back
    url_layout: ClassVar[tuple[str, ...]] = ()
    #: the scheme's own query options (kept in ``self.options``)
    option_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        targets: Sequence[str] | None = None,
        ident: str | None = None,
        template: str | None = None,
        sign: str | None = None,
        endpoint: str | None = None,
        params: str | None = None,
        maxlen: str | int | None = None,
        options: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        key_name, secret_name = self.key_names()
        if not self.user:
            raise AppriseImproperlyConfigured(f"{self.scheme}: {key_name} (URL user) is missing")
        if not self.password:
            raise AppriseImproperlyConfigured(f"{self.scheme}: {secret_name} (URL password) is missing")
        self.ident = ident or ""
        self.template = template or ""
        self.sign = sign or ""
        self.phones = check_phones(list(targets or []))
        self.endpoint = check_endpoint(endpoint, self.default_endpoint)
        self.endpoint_given = bool(endpoint)
        self.param_spec = params
        self.params = parse_params(params)
        try:
            self.maxlen = self.default_maxlen if maxlen in (None, "") else int(maxlen)
        except ValueError:
            raise AppriseImproperlyConfigured(f"maxlen must be a whole number, got {maxlen!r}") from None
        if self.maxlen < 0:
            raise AppriseImproperlyConfigured("maxlen must be >= 0")
        self.options = dict(options or {})
        self.validate()

    # ---------------------------------------------------------------- subclass hooks
    def key_names(self) -> tuple[str, str]:
        return ("AccessKey ID", "AccessKey secret")

    def validate(self) -> None:
        """Check the scheme's own parts (raise AppriseImproperlyConfigured)."""

    def build_request(self, values: list[tuple[str, str]], now: float, nonce: str) -> HttpRequest:
        raise NotImplementedError

    @classmethod
    def url_parts(cls, qsd: Mapping[str, str], host: str, segs: list[str]) -> list[str]:
        """The positional URL parts (``url_layout`` then the phone numbers), unquoted."""
        return [host, *segs]

    # ---------------------------------------------------------------- validation helpers
    def check_one_phone(self) -> None:
        """A call: one number per URL."""
        if len(self.phones) != 1:
            raise AppriseImproperlyConfigured(
                f"{self.scheme}: exactly one phone number per URL (one call; give each number its own URL)"
            )

    def check_some_phones(self, most: int, after: str) -> None:
        """An SMS: 1..``most`` numbers (``after``: the URL part the numbers follow)."""
        if not self.phones:
            raise AppriseImproperlyConfigured(f"{self.scheme}: no phone number after the {after}")
        if len(self.phones) > most:
            raise AppriseImproperlyConfigured(f"{self.scheme}: at most {most} phone numbers per URL")

    def parse_response(self, status: int, body: bytes) -> ProviderResult:
        raise NotImplementedError

    # ---------------------------------------------------------------- sending
    def template_values(self, fields: Mapping[str, str] | None, title: str = "") -> list[tuple[str, str]]:
        """(template variable, value) in ``params`` order, each cut to ``maxlen``."""
        if fields is None:  # plain apprise use: a test message
            fields = {f: "-" for f in FIELDS}
            if self.params:
                fields[self.params[0][1]] = title or "hazardgw"
        out = []
        for var, field in self.params:
            v = str(fields.get(field, "") or "-")
            if self.maxlen and len(v) > self.maxlen:
                v = v[: self.maxlen - 1] + "…"
            out.append((var, v))
        return out

    def deliver(
        self,
        fields: Mapping[str, str] | None,
        title: str = "",
        timeout: float | None = None,
        *,
        now: float | None = None,
        nonce: str | None = None,
    ) -> ProviderResult:
        """Send one push; never raises for provider or network trouble."""
        values = self.template_values(fields, title)
        req = self.build_request(values, time.time() if now is None else now, nonce or uuid.uuid4().hex)
        try:
            r = requests.request(
                req.method,
                req.url,
                headers=req.headers,
                data=req.body,
                timeout=timeout if timeout is not None else self.request_timeout,
                verify=self.verify_certificate,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            return ProviderResult(False, type(e).__name__, "http", _first_line(str(e)))
        return self.parse_response(r.status_code, r.content or b"")

    def send(self, body: str, title: str = "", notify_type: NotifyType = NotifyType.INFO, **kwargs: Any) -> bool:
        first = (title or body).strip().splitlines()
        res = self.deliver(None, first[0] if first else "")
        if res.ok:
            self.logger.info("Sent %s push.", self.service_name)
        else:
            self.logger.warning("%s push failed: %s", self.service_name, res.text())
        return res.ok

    # ---------------------------------------------------------------- URL
    @classmethod
    def parse_url(cls, url: str) -> dict[str, Any] | None:  # type: ignore[override]  # apprise passes the URL only
        results = NotifyBase.parse_url(url, verify_host=False)
        if not results:
            return results
        qsd = results["qsd"]
        host, segs = split(results)
        parts = cls.url_parts(qsd, host, segs)
        for i, name in enumerate(cls.url_layout):
            results[name] = parts[i] if i < len(parts) else None
        results["targets"] = parts[len(cls.url_layout) :]
        results["options"] = {k: NotifyBase.unquote(qsd[k]) for k in cls.option_keys if qsd.get(k)}
        return parse_common(results)

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        return "{}://{}{}/{}?{}".format(
            self.secure_protocol,
            self.auth(privacy),
            "/".join(self.part(getattr(self, name), privacy) for name in self.url_layout),
            "/".join(self.shown_phones(privacy)),
            self.query(privacy, *args, **kwargs),
        )

    # ---------------------------------------------------------------- display
    def shown_phones(self, privacy: bool) -> list[str]:
        return [mask_phone(p) if privacy else NotifyBase.quote(p, safe="+") for p in self.phones]

    def query(self, privacy: bool, *args: Any, **kwargs: Any) -> str:
        q: dict[str, str] = {}
        if self.endpoint_given:
            q["endpoint"] = self.endpoint
        if self.param_spec:
            q["params"] = self.param_spec
        if self.maxlen != self.default_maxlen:
            q["maxlen"] = str(self.maxlen)
        q.update(self.options)
        q.update(self.url_parameters(*args, privacy=privacy, **kwargs))
        return NotifyBase.urlencode(q)

    def auth(self, privacy: bool) -> str:
        user = self.user or ""
        shown_user = (user[:4] + "****" + user[-2:] if len(user) > 8 else "****") if privacy else user
        return "{}:{}@".format(
            NotifyBase.quote(shown_user, safe="*"),
            self.pprint(self.password, privacy, mode=PrivacyMode.Secret, safe=""),
        )

    def part(self, s: str, privacy: bool) -> str:
        """A URL part: readable (Chinese sign names as is) in the privacy form, quoted otherwise."""
        return s if privacy else NotifyBase.quote(s, safe="")

    def display(self) -> str:
        """What logs, records and health show: the gateway's scheme name, key id shortened,
        secret ``****``, phones 138****5678, no query."""
        shown = self.url(privacy=True).split("?", 1)[0]
        return self.scheme + shown[len(self.secure_protocol) :]

    @property  # apprise's own plugins make it a property too; URLBase declares it `= None` (see above)
    def url_identifier(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.secure_protocol, self.user or "", self.ident)

    def __len__(self) -> int:
        return 1


def _first_line(s: str) -> str:
    return s.strip().splitlines()[0][:300] if s.strip() else ""


def json_body(status: int, body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def http_failure(status: int, body: bytes) -> ProviderResult:
    text = body[:200].decode("utf-8", "replace").strip()
    return ProviderResult(False, f"HTTP {status}", "http", _first_line(text))


def parse_common(results: dict[str, Any]) -> dict[str, Any]:
    """Query options every provider scheme takes (see the module docstring)."""
    qsd = results.get("qsd", {})
    for k in ("endpoint", "params", "maxlen"):
        if k in qsd and qsd[k] != "":
            results[k] = NotifyBase.unquote(qsd[k])
    return results


def split(results: dict[str, Any]) -> tuple[str, list[str]]:
    """(host, path segments) of a parsed URL, both unquoted."""
    host = _unq(results.get("host"))
    segs = [_unq(s) for s in NotifyBase.split_path(results.get("fullpath") or "", unquote=False)]
    return host, segs
