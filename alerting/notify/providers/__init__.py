"""SMS and voice-call channels of Chinese providers, as apprise notification schemes.

=================  ==========================================  ==============================
scheme             provider API                                module
=================  ==========================================  ==============================
``aliyun-sms``     Alibaba Cloud Dysmsapi ``SendSms``           providers/aliyun.py
``aliyun-voice``   Alibaba Cloud Dyvmsapi ``SingleCallByTts``   providers/aliyun.py
``tencent-sms``    Tencent Cloud SMS ``SendSms`` (2021-01-11)   providers/tencent.py
``tencent-voice``  Tencent Cloud VMS ``SendTtsVoice``           providers/tencent.py
=================  ==========================================  ==============================

Apprise schemes are ``[a-z0-9]`` only: apprise knows them as ``aliyunsms`` ``aliyunvoice``
``tencentsms`` ``tencentvoice``; the gateway accepts both spellings and hands apprise its own
(:func:`apprise_url`).

:func:`register` adds the four plugin classes to apprise's plugin table (apprise's
``NotificationManager.add``, the same table its ``@notify`` decorator fills; a class rather
than the decorator so that apprise parses and validates the URL and prints it masked). It is
idempotent and only adds code, never configuration; ``alerting.notify.channels`` calls it at
import, so every apprise use in the gateway knows the schemes.
"""

from __future__ import annotations

import threading
from typing import Final

from alerting.notify.providers.aliyun import AliyunSms, AliyunVoice
from alerting.notify.providers.base import (
    CLASSES,
    DEFAULT_PARAMS,
    FIELDS,
    ProviderPlugin,
    ProviderResult,
    mask_phone,
)
from alerting.notify.providers.tencent import TencentSms, TencentVoice

_CLASSES: Final = (AliyunSms, AliyunVoice, TencentSms, TencentVoice)
#: the gateway's scheme names (hyphenated, as in the issue and the docs)
SCHEMES: Final = tuple(c.scheme for c in _CLASSES)
#: apprise's names: apprise schemes are [a-z0-9] only, so ``aliyun-sms://`` is handed to
#: apprise as ``aliyunsms://`` (:func:`apprise_url`); both forms are accepted in the config
APPRISE_SCHEMES: Final = {c.scheme: c.secure_protocol for c in _CLASSES}
PLUGINS: Final[dict[str, type[ProviderPlugin]]] = {
    **{c.scheme: c for c in _CLASSES},
    **{c.secure_protocol: c for c in _CLASSES},
}

_lock = threading.Lock()


def register() -> None:
    """Make apprise know the provider schemes (idempotent, thread-safe)."""
    from apprise.manager_plugins import NotificationManager

    mgr = NotificationManager()  # apprise's singleton plugin table
    with _lock:
        for cls in _CLASSES:
            if cls.secure_protocol in mgr and mgr[cls.secure_protocol] is cls:
                continue
            mgr.add(plugin=cls, schemas=cls.secure_protocol, force=True)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def is_provider(url: str) -> bool:
    return scheme_of(url) in PLUGINS


def apprise_url(url: str) -> str:
    """``aliyun-sms://...`` -> ``aliyunsms://...`` (what apprise can parse); others unchanged."""
    s = scheme_of(url)
    return APPRISE_SCHEMES[s] + url[len(s) :] if s in APPRISE_SCHEMES else url


def plugin_for(url: str) -> ProviderPlugin:
    """Parse and validate a provider URL (raises ``AppriseImproperlyConfigured`` / ``ValueError``
    with a message naming the wrong part; never contains the secret)."""
    cls = PLUGINS[scheme_of(url)]
    results = cls.parse_url(url)
    if not results:
        raise ValueError("cannot be parsed as a URL")
    return cls(**results)


__all__ = [
    "APPRISE_SCHEMES",
    "CLASSES",
    "DEFAULT_PARAMS",
    "FIELDS",
    "PLUGINS",
    "SCHEMES",
    "ProviderPlugin",
    "ProviderResult",
    "apprise_url",
    "is_provider",
    "mask_phone",
    "plugin_for",
    "register",
    "scheme_of",
]
