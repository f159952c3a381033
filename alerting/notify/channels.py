"""Push channels: one apprise URL per attempt, so retry and failover are per channel.

``Channels.send(url, title, body, notify_type)`` builds a fresh ``apprise.Apprise`` holding
that single URL and awaits ``Apprise.async_notify`` (apprise runs the plugin's blocking
HTTP request in its own worker pool, so the event loop never blocks). The whole call is
limited by ``timeout``. Apprise's own per-service retry stays at its default (0): the
outbox decides about retries. ``json://`` / ``jsons://`` webhooks are the exception: the same
request apprise would make, sent on the event loop over kept-alive connections
(alerting/notify/webhook.py, issue 23: no thread hand-off, no new connection per push).

SMS and voice calls (``aliyun-sms`` ``aliyun-voice`` ``tencent-sms`` ``tencent-voice``,
alerting/notify/providers/) are apprise plugins, registered when apprise is loaded. For them ``send``
hands the alarm's template parameters (``params``) to the plugin's ``deliver`` (in a worker
thread, like apprise does) and gets the provider's code back: every answer is counted in
``hazardgw_notify_provider_results_total{scheme, result}`` (``result``: ok or the code class,
providers/base.py ``CLASSES``) and a refusal is logged with the code, its class and what to
do about it.

:func:`check_url` is the config check of one URL (``hazardgw check``): scheme known,
required parts present, through apprise's own URL parsing, with apprise's reason (secrets
masked) instead of a bare "not accepted"; ``wecom://`` is explained (apprise reads it as the
PushPlus relay, channel ``cp``, not a WeCom group robot: that is ``wecombot://``).

Secrets: apprise URLs carry tokens and passwords (``dingtalk://TOKEN/``,
``json://user:pass@host``). Nothing here logs or returns a raw URL: :func:`mask_url` gives
apprise's privacy form without the query, with long path segments shortened, and error
texts are scrubbed of every secret-looking part of the URL. :class:`SecretFilter` does the
same (and hides ack tokens) in the log records of apprise and urllib3 (the notifier attaches
it while it runs).

apprise (with its ~100 plugins, requests and cryptography: ~26 MB of the gateway's memory)
and the provider plugins are imported on first use (:func:`apprise_module`): the first push,
URL check or masked URL. A site without ``people`` never loads them (issue 23).
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Final, Literal
from urllib.parse import unquote, urlsplit

from alerting.notify.metrics import NotifyMetrics
from alerting.notify.webhook import Webhooks, document

log = logging.getLogger(__name__)

#: the SMS/voice schemes of alerting/notify/providers/ (both spellings; providers.PLUGINS has the
#: same keys, tests/test_notify_providers.py checks), known here without importing apprise
PROVIDER_SCHEMES: Final = frozenset({"aliyun-sms", "aliyun-voice", "tencent-sms", "tencent-voice",
                                     "aliyunsms", "aliyunvoice", "tencentsms", "tencentvoice"})


@functools.cache
def apprise_module() -> ModuleType:
    """apprise, with the provider schemes registered: imported on the first call (issue 23)."""
    import apprise

    _providers()
    return apprise


@functools.cache
def _providers() -> ModuleType:
    from alerting.notify import providers

    providers.register()
    return providers


def is_provider(url: str) -> bool:
    """An SMS/voice URL of alerting/notify/providers/ (without importing them)."""
    return (url.split("://", 1)[0].lower() if "://" in url else "") in PROVIDER_SCHEMES

_SECRETISH = re.compile(r"^(?=.*[A-Za-z])(?=.*\d).{8,}$|^.{16,}$")


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None
    elapsed: float


def _shorten(seg: str) -> str:
    if _SECRETISH.match(seg):
        return f"{seg[:2]}****{seg[-2:]}" if len(seg) >= 12 else "****"
    return seg


@functools.lru_cache(maxsize=1024)
def mask_url(url: str) -> str:
    """A display form of an apprise URL without its secrets (for logs, records, health).
    Remembered per URL (every attempt shows its channel: 0.16 ms of apprise parsing each)."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    if is_provider(url):
        try:
            return _providers().plugin_for(url).display()
        except Exception:
            return f"{scheme}://****"
    try:
        with _quiet_apprise():
            obj = apprise_module().Apprise.instantiate(url, suppress_exceptions=True)
        shown = obj.url(privacy=True) if obj is not None else None
    except Exception:
        shown = None
    if not shown:
        return f"{scheme}://****"
    shown = shown.split("?", 1)[0]
    head, _, rest = shown.partition("://")
    parts = rest.split("/")
    netloc = parts[0]
    if "@" in netloc:  # user:**** -> keep the user only when it is not secret-looking
        user, host = netloc.rsplit("@", 1)
        netloc = f"{_shorten(user.split(':', 1)[0])}:****@{host}" if ":" in user else f"{_shorten(user)}@{host}"
    else:
        netloc = _shorten(netloc) if not _looks_like_host(netloc) else netloc
    return "://".join((head, "/".join([netloc, *(_shorten(p) for p in parts[1:])])))


def _looks_like_host(s: str) -> bool:
    host = s.rsplit(":", 1)[0] if s.count(":") == 1 else s
    return bool(re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}|\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|localhost", host))


def url_secrets(url: str) -> set[str]:
    """Parts of ``url`` that may be secret: user, password, path segments, query values,
    and the host when it is not a host name (token-style schemas)."""
    out: set[str] = set()
    try:
        u = urlsplit(url)
    except ValueError:
        return {url}
    for s in (u.username, u.password):
        if s:
            out.add(s)
            out.add(unquote(s))
    netloc = u.netloc.rsplit("@", 1)[-1]
    if netloc and not _looks_like_host(netloc):
        out.add(netloc)
    for seg in u.path.split("/"):
        if len(seg) >= 4:
            out.add(seg)
            out.add(unquote(seg))
    for kv in u.query.split("&"):
        v = kv.split("=", 1)[1] if "=" in kv else ""
        if len(v) >= 4:
            out.add(v)
            out.add(unquote(v))
    return {s for s in out if len(s) >= 4}


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in sorted(secrets, key=len, reverse=True):
        if s and s in text:
            text = text.replace(s, "****")
    return text


_ACK_TOKEN = re.compile(r"(/ack/)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
LOGGERS = ("apprise", "urllib3.connectionpool")  # loggers that may print URLs, paths or push bodies


class SecretFilter(logging.Filter):
    """Scrubs the given secrets and one-tap ack tokens from log records.

    The notifier attaches one to each of :data:`LOGGERS` while it runs: apprise logs the
    push payload (with its ack link) at DEBUG, urllib3 logs request paths (webhook paths can
    be secrets) at DEBUG."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        clean = _ACK_TOKEN.sub(r"\1***", redact(msg, self.secrets))
        if clean != msg:
            record.msg = clean
            record.args = None
        return True


def valid_url(url: str) -> bool:
    """True when apprise knows the schema and accepts the URL."""
    found = check_url(url)
    return found is None or found[0] != "error"


_capture = threading.local()


class _ThreadCapture(logging.Filter):
    """Takes the apprise log records of the thread that is checking a URL (their text names
    the wrong part, and may hold a secret: they are returned redacted, never printed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = getattr(_capture, "sink", None)
        if sink is None or record.thread != threading.get_ident():
            return True
        sink.append(record.getMessage())
        return False


_CAPTURE = _ThreadCapture()
logging.getLogger("apprise").addFilter(_CAPTURE)  # passes everything through unless this thread captures


@contextmanager
def _quiet_apprise() -> Iterator[list[str]]:
    old = getattr(_capture, "sink", None)
    sink: list[str] = []
    _capture.sink = sink
    try:
        yield sink
    finally:
        _capture.sink = old


#: apprise reads ``wecom://`` as its PushPlus plugin (relay service pushplus.plus, channel cp)
WECOM_HINT = (
    "wecom:// is apprise's alias for the PushPlus relay (pushplus.plus, channel cp), not a WeCom "
    "group robot: for a 企业微信群机器人 webhook (https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY) "
    "use wecombot://KEY; for a WeCom application use wechat://CORPID:SECRET@AGENTID/@all"
)

Severity = Literal["error", "warning"]


def check_url(url: str) -> tuple[Severity, str] | None:
    """What is wrong with one notify URL (no network), or None. The message names the URL
    masked and the reason."""
    if "://" not in url:
        return "error", "not a URL: expected scheme://... (e.g. dingtalk://TOKEN/, aliyun-sms://...)"
    scheme = url.split("://", 1)[0].lower()
    if is_provider(url):
        try:
            _providers().plugin_for(url)
        except Exception as e:
            return "error", f"{mask_url(url)}: {redact(str(e), url_secrets(url))}"
        return None
    apprise = apprise_module()
    with _quiet_apprise() as said:
        try:
            ok = apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None
        except Exception as e:
            ok = False
            said.append(str(e))
    if scheme == "wecom":
        # a WeCom robot key is a UUID (8-4-4-4-12); apprise would send it to PushPlus as a token
        key = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        robot_key = re.fullmatch(r"[0-9a-zA-Z]{8}-[0-9a-zA-Z]{4}-[0-9a-zA-Z]{4}-[0-9a-zA-Z]{4}-[0-9a-zA-Z]{12}", key)
        sev: Severity = "warning" if ok and not robot_key else "error"
        return sev, f"wecom://****: {WECOM_HINT}"
    if ok:
        return None
    from apprise.manager_plugins import NotificationManager

    known = NotificationManager()
    if scheme not in known:
        names = sorted(set(known.schemas()) | set(_providers().SCHEMES))
        close = difflib.get_close_matches(scheme, names, n=1)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        return "error", f"unknown scheme {scheme}://{hint}: apprise {apprise.__version__} has no such service"
    secrets = url_secrets(url)
    reasons = [redact(m, secrets) for m in said if not m.startswith(("Could not load", "Unsupported URL"))]
    why = "; ".join(dict.fromkeys(reasons)) or "a required part is missing or malformed"
    return "error", f"{mask_url(url)} is not a valid {scheme}:// URL: {why}"


def needs_params(url: str) -> bool:
    """True for SMS/voice URLs (their pushes carry template parameters, not the text)."""
    return is_provider(url)


class Channels:
    def __init__(self, *, timeout: float = 20.0, metrics: NotifyMetrics | None = None) -> None:
        self.timeout = timeout
        self.metrics = metrics
        self.webhooks = Webhooks()  # json:// on the loop, connections kept (alerting/notify/webhook.py)

    async def close(self) -> None:
        """Close the kept-alive webhook connections (the notifier's stop)."""
        await self.webhooks.close()

    async def send(
        self,
        url: str,
        title: str,
        body: str,
        notify_type: str = "info",
        params: Mapping[str, str] | None = None,
    ) -> SendResult:
        """One attempt on one URL. ``params``: the template parameters of SMS/voice pushes."""
        if is_provider(url):
            return await self._send_provider(url, title, params)
        t0 = time.monotonic()
        hook = self.webhooks.target(url)
        if hook is not None:
            data = document(hook, title, body, notify_type)
            if data is not None:
                error = await self.webhooks.send(hook, data, self.timeout)
                elapsed = time.monotonic() - t0
                if error is None:
                    return SendResult(True, None, elapsed)
                return SendResult(False, redact(error, url_secrets(url)), elapsed)
        secrets = url_secrets(url)
        ap = apprise_module().Apprise()
        try:
            if not ap.add(url):
                return SendResult(False, "invalid or unsupported apprise URL", 0.0)
            res = await ap.async_notify(
                body=body, title=title, notify_type=notify_type, timeout=self.timeout, log_level=logging.WARNING
            )
        except Exception as e:  # a plugin that raises is a failed attempt, never a crash
            return SendResult(False, redact(f"{type(e).__name__}: {e}", secrets), time.monotonic() - t0)
        elapsed = time.monotonic() - t0
        if bool(res):
            return SendResult(True, None, elapsed)
        return SendResult(False, redact(_error_text(res), secrets), elapsed)

    async def _send_provider(self, url: str, title: str, params: Mapping[str, str] | None) -> SendResult:
        t0 = time.monotonic()
        secrets = url_secrets(url)
        providers = _providers()
        scheme = providers.scheme_of(url)
        scheme = next((s for s, a in providers.APPRISE_SCHEMES.items() if a == scheme), scheme)
        try:
            plugin = providers.plugin_for(url)
        except Exception as e:
            return SendResult(False, redact(f"invalid URL: {e}", secrets), 0.0)
        try:
            async with asyncio.timeout(self.timeout + 1.0):
                res = await asyncio.to_thread(plugin.deliver, params, title, self.timeout)
        except TimeoutError:
            res = providers.ProviderResult(False, "Timeout", "http", f"no answer within {self.timeout:g} s")
        except Exception as e:  # a bug in a plugin is a failed attempt, never a crash
            res = providers.ProviderResult(False, type(e).__name__, "other", str(e))
        elapsed = time.monotonic() - t0
        if self.metrics is not None:
            self.metrics.provider.labels(scheme, res.kind).inc()
        if res.ok:
            return SendResult(True, None, elapsed)
        text = redact(res.text(), secrets)
        log.warning("notify: %s refused the push via %s: %s", scheme, plugin.display(), text)
        return SendResult(False, text, elapsed)


def _error_text(res: object) -> str:
    status = getattr(getattr(res, "status", None), "name", "FAILURE")
    msgs: list[str] = []
    try:
        for entry in res.logs():  # type: ignore[attr-defined]
            m = getattr(entry, "message", None) or str(entry)
            if m not in msgs:
                msgs.append(m)
    except Exception:
        pass
    text = status.lower()
    if msgs:
        text += ": " + " | ".join(msgs[-3:])
    return text[:500]
