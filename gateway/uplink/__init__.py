"""Northbound uplink (联网监控) to the regulator's or park's platform.

:class:`UplinkService` (the component), the profile interface (:class:`Profile`,
:class:`Transport`, :class:`Message`), the built-in ``generic`` (JSON over MQTT) and
``tcp-aes`` (encrypted JSON envelope over TCP/TLS) profiles. See README.md here.
"""

from gateway.uplink.profile import (
    BUILTIN,
    Heartbeat,
    Message,
    Profile,
    ProfileError,
    TagValue,
    Transport,
    TransportError,
    collect_time,
    resolve_profile,
)
from gateway.uplink.service import UplinkService

__all__ = [
    "BUILTIN",
    "Heartbeat",
    "Message",
    "Profile",
    "ProfileError",
    "TagValue",
    "Transport",
    "TransportError",
    "UplinkService",
    "collect_time",
    "resolve_profile",
]
