"""The ISA-18.2 / IEC 62682 alarm state machine, as a table.

Seven states (docs/alarms.md)::

    NORM   normal: condition inactive, nothing to acknowledge
    UNACK  active, unacknowledged (annunciated)
    ACKED  active, acknowledged (or latched: returned, waiting for an acknowledge/reset)
    RTNUN  returned to normal, unacknowledged
    SHLVD  shelved by an operator (timed or one-shot, at most ``alarming.shelve_max``)
    DSUPR  suppressed by design (a discrete tag such as "unit shut down")
    OOSRV  out of service (maintenance)

The first four are the *annunciation* states. The last three are *suppression layers*
kept as flags on the alarm (``oos``, ``suppressed``, ``shelved``) with the precedence
OOSRV > DSUPR > SHLVD: an alarm that is shelved while its unit is shut down shows DSUPR and
goes back to SHLVD when the unit starts, if the shelf has not expired by then.

Leaving the last suppression layer always lands in NORM; the engine then feeds ACTIVATE
when the condition is active, which raises a *new* occurrence. Entering a suppression
layer from UNACK/ACKED/RTNUN ends the current occurrence.

``step`` is a pure function over :data:`TABLE` so the whole diagram is testable row by row.
Acknowledging never clears an alarm: ACK from UNACK goes to ACKED while the condition is
active; only RETURN (the process) moves an active alarm towards NORM.

Test mode (a detector under a bump test or maintenance, alerting/engine.py) is not a state:
its alarms go through the same diagram with their occurrence marked ``test``. END_TEST
closes such an occurrence from any annunciation state (event ``test_ended``), after which
the engine raises a still-active condition as a new, real occurrence.
"""

from __future__ import annotations

from typing import Final

NORM: Final = "NORM"
UNACK: Final = "UNACK"
ACKED: Final = "ACKED"
RTNUN: Final = "RTNUN"
SHLVD: Final = "SHLVD"
DSUPR: Final = "DSUPR"
OOSRV: Final = "OOSRV"

STATES: Final = (NORM, UNACK, ACKED, RTNUN, SHLVD, DSUPR, OOSRV)
ANNUNCIATION: Final = frozenset({NORM, UNACK, ACKED, RTNUN})
OPEN: Final = frozenset({UNACK, ACKED, RTNUN})  # an occurrence is open in these states
SUPPRESSION: Final = frozenset({SHLVD, DSUPR, OOSRV})

# inputs
ACTIVATE: Final = "activate"  # condition became active (after its on-delay)
RETURN: Final = "return"  # condition became inactive (after its off-delay)
ACK: Final = "ack"  # operator acknowledge (also the reset of a latched alarm)
REALARM: Final = "realarm"  # re_alarm timer while ACKED, or severity rise
SHELVE: Final = "shelve"
UNSHELVE: Final = "unshelve"  # operator, shelf expiry, or one-shot return
SUPPRESS: Final = "suppress"
UNSUPPRESS: Final = "unsuppress"
REMOVE: Final = "remove"  # out of service
RESTORE: Final = "restore"  # back in service
END_TEST: Final = "end_test"  # the tag's test mode ended: its test occurrence closes (then re-evaluated)

INPUTS: Final = (ACTIVATE, RETURN, ACK, REALARM, SHELVE, UNSHELVE, SUPPRESS, UNSUPPRESS, REMOVE, RESTORE, END_TEST)

# event names (the ``event`` field of the journal and of InfluxDB ``alarm``)
RAISED: Final = "raised"
CLEARED: Final = "cleared"
ACKED_EV: Final = "acked"
REALARMED: Final = "realarmed"
SHELVED: Final = "shelved"
UNSHELVED: Final = "unshelved"
SUPPRESSED: Final = "suppressed"
UNSUPPRESSED: Final = "unsuppressed"
OUT_OF_SERVICE: Final = "out_of_service"
IN_SERVICE: Final = "in_service"
DISPOSED: Final = "disposed"  # not a transition: a disposition added to an occurrence
TEST_ENDED: Final = "test_ended"  # a test occurrence closed because its tag left test mode

EVENTS: Final = (
    RAISED,
    CLEARED,
    ACKED_EV,
    REALARMED,
    SHELVED,
    UNSHELVED,
    SUPPRESSED,
    UNSUPPRESSED,
    OUT_OF_SERVICE,
    IN_SERVICE,
    DISPOSED,
    TEST_ENDED,
)
ANNUNCIATIONS: Final = frozenset({RAISED, REALARMED})  # what counts towards a flood

# next-state markers
SAME: Final = "="  # state unchanged (the event, if any, is still recorded)
LATCH: Final = "latch"  # ACKED if the alarm latches, else NORM
RESET: Final = "reset"  # NORM if the condition is inactive, else invalid (already acknowledged)
RESOLVE: Final = "resolve"  # highest remaining suppression layer, else NORM
INVALID: Final = "invalid"


class InvalidTransition(Exception):
    """An operator action that the ISA-18.2 diagram does not allow in the current state."""


_BASE = (NORM, UNACK, ACKED, RTNUN)

TABLE: dict[tuple[str, str], tuple[str, str | None]] = {}


def _row(states: tuple[str, ...] | str, inp: str, nxt: str, event: str | None) -> None:
    for s in (states,) if isinstance(states, str) else states:
        TABLE[(s, inp)] = (nxt, event)


# --- annunciation states
_row(NORM, ACTIVATE, UNACK, RAISED)
_row(NORM, RETURN, SAME, None)
_row(NORM, ACK, INVALID, None)
_row(NORM, REALARM, SAME, None)

_row(UNACK, ACTIVATE, SAME, None)
_row(UNACK, RETURN, RTNUN, CLEARED)
_row(UNACK, ACK, ACKED, ACKED_EV)
_row(UNACK, REALARM, SAME, None)

_row(ACKED, ACTIVATE, UNACK, RAISED)  # a latched alarm (returned, not reset) trips again
_row(ACKED, RETURN, LATCH, CLEARED)
_row(ACKED, ACK, RESET, ACKED_EV)  # reset of a latched alarm after return
_row(ACKED, REALARM, UNACK, REALARMED)

_row(RTNUN, ACTIVATE, UNACK, RAISED)
_row(RTNUN, RETURN, SAME, None)
_row(RTNUN, ACK, NORM, ACKED_EV)
_row(RTNUN, REALARM, SAME, None)

# --- entering suppression layers from an annunciation state
_row(_BASE, SHELVE, SHLVD, SHELVED)
_row(_BASE, SUPPRESS, DSUPR, SUPPRESSED)
_row(_BASE, REMOVE, OOSRV, OUT_OF_SERVICE)
_row(_BASE, UNSHELVE, INVALID, None)
_row(_BASE, UNSUPPRESS, SAME, None)
_row(_BASE, RESTORE, INVALID, None)

# --- shelved
_row(SHLVD, ACTIVATE, SAME, None)
_row(SHLVD, RETURN, SAME, None)
_row(SHLVD, ACK, INVALID, None)
_row(SHLVD, REALARM, SAME, None)
_row(SHLVD, SHELVE, SAME, SHELVED)  # re-shelve: new expiry
_row(SHLVD, UNSHELVE, RESOLVE, UNSHELVED)
_row(SHLVD, SUPPRESS, DSUPR, SUPPRESSED)
_row(SHLVD, UNSUPPRESS, SAME, None)
_row(SHLVD, REMOVE, OOSRV, OUT_OF_SERVICE)
_row(SHLVD, RESTORE, INVALID, None)

# --- suppressed by design
_row(DSUPR, ACTIVATE, SAME, None)
_row(DSUPR, RETURN, SAME, None)
_row(DSUPR, ACK, INVALID, None)
_row(DSUPR, REALARM, SAME, None)
_row(DSUPR, SHELVE, SAME, SHELVED)  # recorded; shows once the suppression ends
_row(DSUPR, UNSHELVE, SAME, UNSHELVED)
_row(DSUPR, SUPPRESS, SAME, None)
_row(DSUPR, UNSUPPRESS, RESOLVE, UNSUPPRESSED)
_row(DSUPR, REMOVE, OOSRV, OUT_OF_SERVICE)
_row(DSUPR, RESTORE, INVALID, None)

# --- out of service: only RESTORE leaves it; flags may still change underneath
_row(OOSRV, ACTIVATE, SAME, None)
_row(OOSRV, RETURN, SAME, None)
_row(OOSRV, ACK, INVALID, None)
_row(OOSRV, REALARM, SAME, None)
_row(OOSRV, SHELVE, INVALID, None)
_row(OOSRV, UNSHELVE, SAME, UNSHELVED)
_row(OOSRV, SUPPRESS, SAME, None)
_row(OOSRV, UNSUPPRESS, SAME, None)
_row(OOSRV, REMOVE, INVALID, None)
_row(OOSRV, RESTORE, RESOLVE, IN_SERVICE)

# --- end of test mode: an occurrence opened while the tag was in test closes, whatever its
# state; the engine then raises the alarm anew (a real occurrence) if the condition is
# still active. Suppression layers already ended the occurrence: nothing to do there.
_row(_BASE, END_TEST, NORM, TEST_ENDED)
_row(NORM, END_TEST, SAME, None)
_row((SHLVD, DSUPR, OOSRV), END_TEST, SAME, None)

assert len(TABLE) == len(STATES) * len(INPUTS), "every (state, input) pair has a row"


def resolve(*, oos: bool, suppressed: bool, shelved: bool) -> str:
    """The state shown by the remaining suppression layers (precedence OOSRV > DSUPR > SHLVD)."""
    if oos:
        return OOSRV
    if suppressed:
        return DSUPR
    if shelved:
        return SHLVD
    return NORM


def step(
    state: str,
    inp: str,
    *,
    active: bool,
    latched: bool,
    oos: bool = False,
    suppressed: bool = False,
    shelved: bool = False,
) -> tuple[str, str | None]:
    """Next state and event name for ``inp`` in ``state``.

    ``active`` is the condition's current (debounced) state; the flags are the
    suppression layers *after* the input was applied (the engine sets or clears the
    flag of SHELVE/UNSHELVE/SUPPRESS/... first). Raises :class:`InvalidTransition` for an
    operator action the diagram does not allow.
    """
    nxt, event = TABLE[(state, inp)]
    if nxt == SAME:
        return state, event
    if nxt == INVALID:
        raise InvalidTransition(_why(state, inp))
    if nxt == LATCH:
        return (ACKED if latched else NORM), event
    if nxt == RESET:
        if active:
            raise InvalidTransition("already acknowledged: the condition is still active")
        return NORM, event
    if nxt == RESOLVE:
        return resolve(oos=oos, suppressed=suppressed, shelved=shelved), event
    return nxt, event


def _why(state: str, inp: str) -> str:
    if inp == ACK:
        return f"nothing to acknowledge in state {state}"
    if state == OOSRV and inp in (SHELVE, REMOVE):
        return "the alarm is out of service"
    if inp == UNSHELVE:
        return "the alarm is not shelved"
    if inp == RESTORE:
        return "the alarm is not out of service"
    return f"{inp} is not allowed in state {state}"
