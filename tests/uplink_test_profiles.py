"""Profiles loaded by ``uplink.profile: uplink_test_profiles:ClassName`` in the tests: a
profile living outside the gateway package, selected without touching the core."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.uplink import Message, TagValue
from gateway.uplink.generic import GenericProfile


class FlakyRealtimeProfile(GenericProfile):
    """The generic profile whose realtime builder fails every other period."""

    calls = 0

    def realtime(self, values: Sequence[TagValue], now_ns: int) -> list[Message]:
        type(self).calls += 1
        if type(self).calls % 2 == 0:
            raise RuntimeError("profile bug: cannot build realtime")
        return super().realtime(values, now_ns)


class NewlineProfile(GenericProfile):
    """Builds payloads the spool cannot frame (a raw newline): refused and counted."""

    def realtime(self, values: Sequence[TagValue], now_ns: int) -> list[Message]:
        return [Message(self.topic("realtime"), "line one\nline two", False)]
