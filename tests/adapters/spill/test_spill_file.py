"""The file spill: durable, ordered, crash-tolerant, one owner at a time."""

from __future__ import annotations

import pytest

from adapters.spill import FileSpillBuffer, SpillCorrupted, SpillLocked, session_directory, spilled_sessions
from adapters.spill.event_codec import SpillDecodeError, decode_event, encode_event
from domain.events import BookDelta, BookSnapshot, MarketEvent, MarketResolved, PublicTrade
from domain.ports import SpillBuffer
from domain.values import Side

EVENTS: list[MarketEvent] = [
    BookSnapshot("T1", 1, 1_700_000_000_000, yes=((4500, 12000), (4700, 300)), no=((4800, 200),), sid=3),
    BookSnapshot("T2", None, 5, yes=(), no=()),
    BookDelta("T1", 2, 1_700_000_000_001, Side.NO, 4800, -150, sid=3, client_order_id="my-order"),
    BookDelta("T1", None, 7, Side.YES, 1, 1),
    PublicTrade("T1", 9, "tr-1", yes_price=5200, count=250, taker_side=Side.NO, seq=4, sid=5),
    PublicTrade("T2", 10, "tr-2", yes_price=1, count=1, taker_side=Side.YES),
    MarketResolved("T1", 11, Side.NO),
]


def events(count: int, start: int = 0) -> list[MarketEvent]:
    return [BookDelta("T1", i, i, Side.YES, 4500, 100) for i in range(start, start + count)]


@pytest.fixture
async def opened(tmp_path):
    buffers = []

    def open_buffer(session_id: int = 1) -> FileSpillBuffer:
        buffer = FileSpillBuffer.for_session(tmp_path, session_id)
        buffers.append(buffer)
        return buffer

    yield open_buffer
    for buffer in buffers:
        await buffer.close()


# ---------------------------------------------------------------------------------------------
# The line codec
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_every_event_type_survives_a_round_trip(event):
    line = encode_event(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_event(line) == event


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{oops", "not JSON"),
        (b'{"a": 1}', "not a tagged array"),
        (b'["X", 1]', "unknown tag 'X'"),
        (b'["R", "T1", 5]', "needs 4 fields, got 3"),
        (b'["D", "T1", 2, 7, 0, 4500.0, 100, null, null]', "price must be an integer"),
        (b'["D", "T1", 2, 7, 2, 4500, 100, null, null]', "side must be 0 .YES. or 1 .NO."),
        (b'["R", "", 5, 0]', "ticker must be non-empty text"),
        (b'["S", "T1", 1, 7, [[4500]], [], null]', r"yes level must be \[price, count\]"),
        (b'["T", "T1", 7, "t", 4500, true, 0, null, null]', "count must be an integer"),
    ],
)
def test_a_damaged_line_is_refused_with_the_reason(line, message):
    with pytest.raises(SpillDecodeError, match=message):
        decode_event(line)


# ---------------------------------------------------------------------------------------------
# The buffer
# ---------------------------------------------------------------------------------------------
async def test_the_buffer_implements_the_port(opened):
    assert isinstance(opened(), SpillBuffer)


async def test_appends_are_read_back_in_order_and_acknowledged_ones_are_gone(opened):
    buffer = opened()
    assert (buffer.pending, buffer.end_ordinal) == (0, None)
    await buffer.append(10, EVENTS[:3])
    await buffer.append(13, EVENTS[3:])
    assert (buffer.pending, buffer.end_ordinal) == (7, 17)

    assert await buffer.oldest(2) == (10, EVENTS[:2])
    assert await buffer.oldest(100) == (10, EVENTS[:3])  # one segment at a time
    await buffer.acknowledge(2)
    assert await buffer.oldest(100) == (12, EVENTS[2:3])
    await buffer.acknowledge(1)  # the first segment is used up: its file goes
    assert len(list(buffer.directory.glob("*.events"))) == 1
    assert await buffer.oldest(100) == (13, EVENTS[3:])
    await buffer.acknowledge(4)
    assert (buffer.pending, buffer.end_ordinal) == (0, None)
    assert await buffer.oldest(5) == (17, [])


async def test_an_append_must_continue_the_numbering(opened):
    buffer = opened()
    await buffer.append(0, events(3))
    with pytest.raises(ValueError, match="must continue at ordinal 3, got 5"):
        await buffer.append(5, events(1))
    with pytest.raises(ValueError, match="must continue at ordinal 3, got 1"):
        await buffer.append(1, events(1))
    with pytest.raises(ValueError, match="cannot acknowledge 4 events; the spill holds 3"):
        await buffer.acknowledge(4)


_CRASHING_WRITER = """
import asyncio, os, sys
from adapters.spill import FileSpillBuffer
from domain.events import BookDelta
from domain.values import Side

async def main():
    buffer = FileSpillBuffer.for_session(sys.argv[1], 4)
    deltas = [BookDelta("T1", i, i, Side.YES, 4500, 100) for i in range(8)]
    await buffer.append(100, deltas[:5])
    await buffer.append(105, deltas[5:])
    await buffer.acknowledge(2)  # inside a segment: not persisted, the ordinals make that harmless
    with open(buffer.directory / "00000000000000000200-0000000003.tmp", "wb") as half:
        half.write(b"half an append")
    os._exit(0)  # killed: no close, no cleanup

asyncio.run(main())
"""


async def test_a_new_process_finds_what_a_killed_one_left(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(tmp_path)], check=True, timeout=60)

    assert spilled_sessions(tmp_path) == [4]
    buffer = FileSpillBuffer.for_session(tmp_path, 4)  # the dead process's lock died with it
    try:
        assert (buffer.pending, buffer.end_ordinal) == (8, 108)
        assert await buffer.oldest(10) == (100, events(5))  # the whole first segment comes back
        await buffer.acknowledge(5)
        assert await buffer.oldest(10) == (105, events(3, start=5))
        assert not list(buffer.directory.glob("*.tmp"))  # the unfinished append is dropped
    finally:
        await buffer.close()


async def test_one_owner_at_a_time(opened, tmp_path):
    buffer = opened(9)
    with pytest.raises(SpillLocked, match="in use by another writer"):
        FileSpillBuffer.for_session(tmp_path, 9)
    await buffer.append(0, events(1))
    await buffer.close()
    again = opened(9)  # released: the next owner takes it, and what it holds
    assert again.pending == 1


async def test_closing_an_empty_buffer_removes_its_directory_and_a_full_one_stays_listed(opened, tmp_path):
    empty, full = opened(1), opened(2)
    await full.append(0, events(2))
    await empty.close()
    await full.close()
    assert not session_directory(tmp_path, 1).exists()
    assert spilled_sessions(tmp_path) == [2]
    with pytest.raises(RuntimeError, match="is closed"):
        await full.append(2, events(1))


async def test_a_damaged_segment_is_refused_with_the_file_and_line(tmp_path):
    directory = session_directory(tmp_path, 3)
    directory.mkdir(parents=True)
    lines = encode_event(EVENTS[0]) + b'["D", "T1"]\n'
    (directory / "00000000000000000000-0000000002.events").write_bytes(lines)
    buffer = FileSpillBuffer.open(directory)
    try:
        with pytest.raises(SpillCorrupted, match=r"00000000000000000000-0000000002.events line 2: tag 'D' needs 9"):
            await buffer.oldest(5)
    finally:
        await buffer.close()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"notes.txt": b"hi"}, "notes.txt is not a spill segment"),
        (
            {"00000000000000000000-0000000002.events": b"", "00000000000000000003-0000000001.events": b""},
            "do not follow each other",
        ),
    ],
)
def test_a_directory_holding_what_the_buffer_did_not_write_is_refused(tmp_path, files, message):
    directory = session_directory(tmp_path, 5)
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    with pytest.raises(SpillCorrupted, match=message):
        FileSpillBuffer.open(directory)
    with pytest.raises(SpillCorrupted):  # not SpillLocked: the refusal released the lock
        FileSpillBuffer.open(directory)


async def test_a_segment_shorter_than_its_name_says_is_refused(tmp_path):
    directory = session_directory(tmp_path, 8)
    directory.mkdir(parents=True)
    (directory / "00000000000000000000-0000000003.events").write_bytes(encode_event(EVENTS[0]))
    buffer = FileSpillBuffer.open(directory)
    try:
        with pytest.raises(SpillCorrupted, match="holds 1 events, its name says 3"):
            await buffer.oldest(1)
    finally:
        await buffer.close()
