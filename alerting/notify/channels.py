"""Push channels: one apprise URL per attempt, so retry and failover are per channel.

``Channels.send(url, title, body, notify_type)`` builds a fresh ``apprise.Apprise`` holding
that single URL and awaits ``Apprise.async_notify`` (apprise runs the plugin's blocking
HTTP request in its own worker pool, so the event loop never blocks). The whole call is
limited by ``timeout``. Apprise's own per-service retry stays at its default (0): the
outbox decides about retries.

Secrets: apprise URLs carry tokens and passwords (``dingtalk://TOKEN/``,
``json://user:pass@host``). Nothing here logs or returns a raw URL: :func:`mask_url` gives
apprise's privacy form without the query, with long path segments shortened, and error
texts are scrubbed of every secret-looking part of the URL. :class:`SecretFilter` does the
same (and hides ack tokens) in the log records of apprise and urllib3 (the notifier attaches
it while it runs).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import apprise

log = logging.getLogger(__name__)

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


def mask_url(url: str) -> str:
    """A display form of an apprise URL without its secrets (for logs, records, health)."""
    scheme = url.split("://", 1)[0] if "://" in url else "?"
    try:
        obj = apprise.Apprise.instantiate(url, suppress_exceptions=True)
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
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None
    except Exception:
        return False


class Channels:
    def __init__(self, *, timeout: float = 20.0) -> None:
        self.timeout = timeout

    async def send(self, url: str, title: str, body: str, notify_type: str = "info") -> SendResult:
        t0 = time.monotonic()
        secrets = url_secrets(url)
        ap = apprise.Apprise()
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
