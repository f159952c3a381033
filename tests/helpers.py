"""Test helpers shared by the integration tests (import as ``from helpers import wait_for``).

Tests poll a condition with :func:`wait_for` / :func:`async_wait_for` instead of sleeping:
they return as soon as the condition holds and fail with a description when it never does.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Credentials the fixtures in conftest.py configure.
MQTT_USER = "gw"
MQTT_PASSWORD = "secret"
INFLUX_USER = "admin"
INFLUX_PASSWORD = "admin-secret"

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.05


def _describe(predicate: Callable[..., object], desc: str | None) -> str:
    if desc:
        return desc
    name = getattr(predicate, "__qualname__", repr(predicate))
    if name.endswith("<lambda>"):
        try:
            return inspect.getsource(predicate).strip()
        except (OSError, TypeError):
            pass
    return name


def _timeout_error(
    what: str, timeout: float, attempts: int, last: object, error: BaseException | None
) -> AssertionError:
    detail = f"last error: {error!r}" if error is not None else f"last result: {last!r}"
    return AssertionError(f"timed out after {timeout:g}s ({attempts} attempts) waiting for {what}; {detail}")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    *,
    desc: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """Call ``predicate`` every ``interval`` s until it returns something truthy; return that.

    Exceptions of the ``retry_on`` types (an ``assert`` inside the predicate, a refused
    connection) count as "not yet". After ``timeout`` s raise AssertionError naming the
    condition (``desc``, or the predicate's name / lambda source) and the last result or
    exception, which is also chained as the cause.
    """
    what = _describe(predicate, desc)
    deadline = time.monotonic() + timeout
    attempts = 0
    last: object = None
    error: BaseException | None = None
    while True:
        attempts += 1
        try:
            last = predicate()
            error = None
        except retry_on as exc:
            error = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise _timeout_error(what, timeout, attempts, last, error) from error
        time.sleep(interval)


async def async_wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    # A polling deadline with the same signature as wait_for, not a cancellation scope.
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    interval: float = DEFAULT_INTERVAL,
    *,
    desc: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
) -> T:
    """:func:`wait_for` for async tests: sleeps with ``asyncio.sleep``; ``predicate`` may be
    a plain function or return an awaitable (e.g. an ``async def``), which is awaited with
    the remaining time as its timeout."""
    what = _describe(predicate, desc)
    deadline = time.monotonic() + timeout
    attempts = 0
    last: object = None
    error: BaseException | None = None
    while True:
        attempts += 1
        try:
            result = predicate()
            if inspect.isawaitable(result):
                remaining = max(deadline - time.monotonic(), interval)
                result = await asyncio.wait_for(result, remaining)
            last = result
            error = None
        except retry_on as exc:
            error = exc
        else:
            if result:
                return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise _timeout_error(what, timeout, attempts, last, error) from error
        await asyncio.sleep(interval)
