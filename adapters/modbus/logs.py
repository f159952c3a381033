"""pymodbus' own log lines, routed through the gateway's log format at debug level only.

pymodbus logs framing trouble at ERROR and appends the last raw frames to the message
(``>>>>> send: 0x0 0x1 ...`` lines), once per bad answer: 534 multi-line records in nine
minutes from four misbehaving devices. The Modbus adapter reports those problems itself,
once per device and reason (:mod:`adapters.modbus.device`), so pymodbus' records are
demoted to DEBUG, flattened to one line (control characters escaped) and dropped unless
the ``adapters.modbus`` logger is enabled for DEBUG (``hazardgw --log-level debug``).
"""

from __future__ import annotations

import logging

PYMODBUS_LOGGERS = ("pymodbus", "pymodbus.logging")
_OWN = "adapters.modbus"


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PymodbusToDebug(logging.Filter):
    """Demotes a pymodbus record to DEBUG, on one line; keeps it only when debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not logging.getLogger(_OWN).isEnabledFor(logging.DEBUG):
            return False
        record.msg = _one_line(record.getMessage())
        record.args = None
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return True


def install_log_filter() -> None:
    """Idempotent: called whenever a Modbus client or server is made."""
    for name in PYMODBUS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PymodbusToDebug) for f in logger.filters):
            logger.addFilter(PymodbusToDebug())
