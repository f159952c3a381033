"""Log lines that cannot be forged: control characters in logged text are escaped, centrally.

Tag names, MQTT topics, payload snippets, HTTP paths and client ids come from outside. A
tag name ``"x\\n2026-01-01 00:00:00,000 CRITICAL ..."`` logged as is would write a second,
well-formed but fake log line. Instead of escaping at every call site, the formatter that
``hazardgw`` installs on its log handlers (gateway/cli.py ``_setup_logging``) escapes the
*whole message* of every record (its format string with the arguments filled in):

* C0 controls (``\\n``, ``\\r``, ESC, NUL, ...) except TAB, DEL, the C1 controls (NEL ...),
  the Unicode line and paragraph separators and the bidirectional overrides/isolates
  become ``\\n``, ``\\r``, ``\\x1b``, ``\\u2028`` ... : one record is always one line;
* a traceback or stack attached to a record keeps its lines, but every line after the
  first is indented and escaped the same way, so no line of it can pass for a record (an
  exception message quoting a tag name is external text too).

The cost is one ``str.translate`` per emitted record (nothing for records that are filtered
out by level).
"""

from __future__ import annotations

import logging
from typing import Final

_NAMED = {"\n": "\\n", "\r": "\\r", "\x0b": "\\x0b", "\x0c": "\\x0c", "\x00": "\\x00"}


def _table() -> dict[int, str]:
    t: dict[int, str] = {}
    for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]:
        if c == 0x09:  # TAB cannot start a line
            continue
        ch = chr(c)
        t[c] = _NAMED.get(ch, f"\\x{c:02x}")
    for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, 0xFEFF):
        t[c] = f"\\u{c:04x}"
    return t


_ESCAPES: Final = _table()
_INDENT: Final = "    | "


def escape_controls(text: str) -> str:
    """``text`` with every control / line-breaking / bidi character written as an escape."""
    return text.translate(_ESCAPES)


class SafeFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose output lines cannot be forged by logged text.

    Use it like ``logging.Formatter`` (same arguments). The message (format string and
    arguments) is escaped with :func:`escape_controls`; an attached traceback / stack keeps
    its line breaks, each continuation line indented with ``"    | "`` and escaped.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:
        return _block(super().formatException(ei))  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return _block(super().formatStack(stack_info))


def _block(text: str) -> str:
    """A multi-line block (traceback): lines escaped, every line indented so none looks like a record."""
    return "\n".join(_INDENT + escape_controls(line) for line in text.splitlines())


def install(handlers: list[logging.Handler], fmt: str, datefmt: str | None = None) -> None:
    """Give every handler in ``handlers`` a :class:`SafeFormatter` with ``fmt``."""
    for h in handlers:
        h.setFormatter(SafeFormatter(fmt, datefmt))
