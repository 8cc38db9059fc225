"""Faults the local exchange injects on purpose, so clients can be tested against a bad day.

A fault is written ``KIND@N[:SECONDS][#CONNECTION]``:

* ``KIND`` -- what goes wrong, at the ``N``-th book message (an ``orderbook_snapshot`` or
  ``orderbook_delta``, counted from 1 over every sid) the exchange sends on a connection:

  ====================  ==============================================================
  ``drop-connection``   the TCP connection is cut (no close frame) where message N would
                        go: the client receives N - 1 book messages
  ``skip-seq``          message N carries the seq after the one it should: a gap of one
  ``duplicate``         message N is sent twice (the copy does not count toward N)
  ``malformed``         a torn copy of message N (invalid JSON) is sent just before it
  ``stall``             the connection sends nothing for ``SECONDS`` before message N
                        (required for ``stall``, refused for the others)
  ``drop-fill``         counts ``fill`` messages instead: the connection is cut where its
                        N-th fill would go, so that fill never reaches the client (it must
                        recover it over REST, ``GET /portfolio/fills``)
  ====================  ==============================================================

* ``#CONNECTION`` -- which connection, numbered from 1 in the order their handshakes succeed;
  ``#*`` means every connection. Default ``#1``: a client that reconnects after a fault gets a
  clean connection.

Examples: ``drop-connection@50``, ``skip-seq@10#2``, ``stall@5:2.5``, ``duplicate@3#*``.
Several kinds may meet at one message: the stall comes first, then the torn frame, then the
message (numbered past the skipped seq, sent twice) -- or the cut instead of the message.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping

import attrs

EVERY_CONNECTION = 0  # the ``#*`` target


class FaultKind(enum.Enum):
    DROP_CONNECTION = "drop-connection"
    SKIP_SEQ = "skip-seq"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    STALL = "stall"
    DROP_FILL = "drop-fill"  # counts fill messages, not book messages


FAULT_KINDS: tuple[str, ...] = tuple(kind.value for kind in FaultKind)

_SYNTAX = re.compile(r"(?P<kind>[a-z-]+)@(?P<at>[^:#]+)(?::(?P<seconds>[^#]+))?(?:#(?P<connection>.+))?")


class FaultSyntaxError(ValueError):
    """A fault spec that does not follow ``KIND@N[:SECONDS][#CONNECTION]``."""


@attrs.frozen
class Fault:
    kind: FaultKind
    at: int  # the book message it hits, from 1 (the fill message, for DROP_FILL)
    seconds: float = 0.0  # stall only
    connection: int = 1  # from 1; EVERY_CONNECTION for all

    def __attrs_post_init__(self) -> None:
        if self.at < 1:
            raise ValueError(f"a fault hits book message N >= 1, got {self.at}")
        if self.connection < 0:
            raise ValueError(f"connection must be >= 1 (or EVERY_CONNECTION), got {self.connection}")
        if self.kind is FaultKind.STALL and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"a stall needs a positive number of seconds, got {self.seconds}")

    def hits(self, connection: int) -> bool:
        return self.connection in (EVERY_CONNECTION, connection)

    def __str__(self) -> str:
        seconds = f":{self.seconds:g}" if self.kind is FaultKind.STALL else ""
        target = "*" if self.connection == EVERY_CONNECTION else str(self.connection)
        return f"{self.kind.value}@{self.at}{seconds}#{target}"


def parse_fault(spec: str) -> Fault:
    """``"stall@5:2.5#2"`` -> ``Fault(STALL, 5, 2.5, 2)``; a bad spec says what is wrong."""
    match = _SYNTAX.fullmatch(spec.strip())
    if match is None:
        raise FaultSyntaxError(f"fault {spec!r} is not KIND@N[:SECONDS][#CONNECTION] (e.g. skip-seq@10, stall@5:2.5#2)")
    try:
        kind = FaultKind(match["kind"])
    except ValueError:
        known = ", ".join(FAULT_KINDS)
        raise FaultSyntaxError(f"fault {spec!r}: unknown kind {match['kind']!r}; one of {known}") from None
    at = _whole(match["at"], spec, "N")
    if at < 1:
        raise FaultSyntaxError(f"fault {spec!r}: N counts book messages from 1, got {at}")
    seconds = 0.0
    if kind is FaultKind.STALL:
        if match["seconds"] is None:
            raise FaultSyntaxError(f"fault {spec!r}: a stall needs its length, e.g. stall@{at}:2.5")
        try:
            seconds = float(match["seconds"])
        except ValueError:
            raise FaultSyntaxError(f"fault {spec!r}: {match['seconds']!r} is not a number of seconds") from None
        if not (math.isfinite(seconds) and seconds > 0):
            raise FaultSyntaxError(f"fault {spec!r}: the stall must last more than 0 seconds")
    elif match["seconds"] is not None:
        raise FaultSyntaxError(f"fault {spec!r}: only a stall takes :SECONDS")
    connection = 1
    if match["connection"] is not None:
        if match["connection"] == "*":
            connection = EVERY_CONNECTION
        else:
            connection = _whole(match["connection"], spec, "CONNECTION")
            if connection < 1:
                raise FaultSyntaxError(f"fault {spec!r}: connections are numbered from 1 (or * for all)")
    return Fault(kind, at, seconds, connection)


def _whole(text: str, spec: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise FaultSyntaxError(f"fault {spec!r}: {what} must be a whole number, got {text!r}")
    return int(text)


FaultPlan = Mapping[int, Mapping[FaultKind, Fault]]


def faults_for_connection(faults: Iterable[Fault], connection: int) -> FaultPlan:
    """The faults that hit ``connection``: by the book message they hit, then by kind (one of
    each kind per message; of two alike, the later one counts)."""
    plan: dict[int, dict[FaultKind, Fault]] = {}
    for fault in faults:
        if fault.hits(connection):
            plan.setdefault(fault.at, {})[fault.kind] = fault
    return plan
