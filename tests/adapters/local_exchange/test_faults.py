"""The fault syntax ``KIND@N[:SECONDS][#CONNECTION]`` and which connection a fault hits."""

from __future__ import annotations

import pytest

from adapters.local_exchange.faults import (
    EVERY_CONNECTION,
    Fault,
    FaultKind,
    FaultSyntaxError,
    faults_for_connection,
    parse_fault,
)


@pytest.mark.parametrize(
    "spec, fault",
    [
        ("drop-connection@50", Fault(FaultKind.DROP_CONNECTION, 50)),
        ("skip-seq@10#2", Fault(FaultKind.SKIP_SEQ, 10, connection=2)),
        ("duplicate@3#*", Fault(FaultKind.DUPLICATE, 3, connection=EVERY_CONNECTION)),
        ("malformed@1", Fault(FaultKind.MALFORMED, 1)),
        ("drop-fill@2#*", Fault(FaultKind.DROP_FILL, 2, connection=EVERY_CONNECTION)),
        ("stall@5:2.5", Fault(FaultKind.STALL, 5, seconds=2.5)),
        (" stall@5:0.25#3 ", Fault(FaultKind.STALL, 5, seconds=0.25, connection=3)),
    ],
)
def test_a_fault_spec_parses(spec, fault):
    assert parse_fault(spec) == fault
    assert parse_fault(str(fault)) == fault  # str() writes the spec back


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ("drop", "KIND@N"),
        ("explode@3", "unknown kind 'explode'"),
        ("skip-seq@0", "from 1"),
        ("skip-seq@ten", "N must be a whole number"),
        ("skip-seq@-1", "N must be a whole number"),
        ("stall@5", "needs its length"),
        ("stall@5:soon", "not a number of seconds"),
        ("stall@5:0", "more than 0 seconds"),
        ("stall@5:inf", "more than 0 seconds"),
        ("duplicate@5:1.0", "only a stall"),
        ("duplicate@5#0", "numbered from 1"),
        ("duplicate@5#first", "CONNECTION must be a whole number"),
    ],
)
def test_a_bad_spec_says_what_is_wrong(spec, complaint):
    with pytest.raises(FaultSyntaxError, match=complaint) as caught:
        parse_fault(spec)
    assert repr(spec) in str(caught.value)


def test_faults_reach_their_connection_only():
    faults = [
        parse_fault("drop-connection@9"),
        parse_fault("duplicate@9"),
        parse_fault("stall@9:1"),
        parse_fault("skip-seq@4#2"),
        parse_fault("malformed@2#*"),
    ]
    first = faults_for_connection(faults, 1)
    assert {at: set(hits) for at, hits in first.items()} == {
        9: {FaultKind.STALL, FaultKind.DUPLICATE, FaultKind.DROP_CONNECTION},
        2: {FaultKind.MALFORMED},
    }
    assert first[9][FaultKind.STALL].seconds == 1
    second = faults_for_connection(faults, 2)
    assert {at: set(hits) for at, hits in second.items()} == {4: {FaultKind.SKIP_SEQ}, 2: {FaultKind.MALFORMED}}
    assert set(faults_for_connection(faults, 3)) == {2}


def test_a_fault_built_in_code_is_checked_too():
    with pytest.raises(ValueError, match="N >= 1"):
        Fault(FaultKind.DUPLICATE, 0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Fault(FaultKind.STALL, 3)
