"""The actor's record queue: lossless under a slow or failing store, with backpressure counted."""

from __future__ import annotations

import asyncio

import pytest

from application.actor_account import Mismatch, TradingAccount
from application.actor_records import RecordQueue
from domain.backoff import ExponentialBackoff
from domain.orders import Fill, OrderSide
from domain.values import MONEY_SCALE, ONE_CONTRACT


async def test_a_full_queue_makes_the_producer_wait_and_loses_nothing():
    written: list[int] = []
    gate = asyncio.Event()

    async def slow_write(batch):
        await gate.wait()
        written.extend(batch)

    queue: RecordQueue[int] = RecordQueue(slow_write, capacity=4, batch_size=2)
    flusher = asyncio.create_task(queue.run())
    producer = asyncio.create_task(_put_all(queue, range(20)))
    await asyncio.sleep(0.05)
    assert not producer.done() and queue.stats().depth == 4  # bounded, waiting for room
    gate.set()
    await asyncio.wait_for(producer, 5)
    assert await queue.drain(timeout_s=5) == 0
    flusher.cancel()
    assert written == list(range(20))
    assert queue.stats().backpressure_waits >= 1 and queue.stats().written == 20


async def test_a_failed_write_is_retried_until_it_succeeds():
    attempts: list[list[int]] = []

    async def flaky_write(batch):
        attempts.append(list(batch))
        if len(attempts) < 3:
            raise ConnectionError("database away")

    queue: RecordQueue[int] = RecordQueue(flaky_write, capacity=10, batch_size=5, retry=ExponentialBackoff(0.001, 0.002))
    flusher = asyncio.create_task(queue.run())
    for record in (1, 2, 3):
        await queue.put(record)
    assert await queue.drain(timeout_s=5) == 0
    flusher.cancel()
    assert attempts == [[1, 2, 3]] * 3
    assert queue.stats().write_errors == 2 and "database away" in queue.stats().last_error


async def test_a_draining_queue_refuses_new_records():
    queue: RecordQueue[int] = RecordQueue(_discard, capacity=2, batch_size=1)
    await queue.drain(timeout_s=0.1)
    with pytest.raises(RuntimeError, match="draining"):
        await queue.put(1)


def test_the_account_books_each_fill_once_and_adopts_the_exchange():
    account = TradingAccount(100 * MONEY_SCALE, {"OLD": -2 * ONE_CONTRACT})
    fill = Fill("f1", "o1", "A", OrderSide.BID, 4000, 5 * ONE_CONTRACT, 10_000, True, 0)
    assert account.apply_fill(fill) and not account.apply_fill(fill)
    assert account.positions() == {"A": 5 * ONE_CONTRACT, "OLD": -2 * ONE_CONTRACT}
    assert account.cash == 100 * MONEY_SCALE - 4000 * 5 * ONE_CONTRACT - 10_000
    mismatches = account.differences({"A": 6 * ONE_CONTRACT}, 50 * MONEY_SCALE)
    assert mismatches == [
        Mismatch("A", 5 * ONE_CONTRACT, 6 * ONE_CONTRACT),
        Mismatch("OLD", -2 * ONE_CONTRACT, 0),
        Mismatch(None, account.cash, 50 * MONEY_SCALE),
    ]
    account.adopt(mismatches)
    assert account.positions() == {"A": 6 * ONE_CONTRACT} and account.cash == 50 * MONEY_SCALE
    assert account.differences({"A": 6 * ONE_CONTRACT}, 50 * MONEY_SCALE) == []
    assert account.ledger.quantity("A") == 5 * ONE_CONTRACT  # the ledger keeps what fills said
    assert account.value({"A": 5000}) == 50 * MONEY_SCALE + 6 * ONE_CONTRACT * 5000
    assert TradingAccount(0, {"B": 1}).value({}) is None  # no mark: no value


async def _put_all(queue, records):
    for record in records:
        await queue.put(record)


async def _discard(_batch):
    return None


async def test_written_counts_the_records_of_a_writer_that_consumes_its_batch():
    # TradingRecordWriter deletes what it has written from the batch it is given (safe retries).
    def consume(batch: list[int]) -> asyncio.Future:
        batch.clear()
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    queue: RecordQueue[int] = RecordQueue(consume, capacity=10, batch_size=4)
    flusher = asyncio.create_task(queue.run())
    for record in range(10):
        await queue.put(record)
    assert await queue.drain(timeout_s=2) == 0
    flusher.cancel()
    assert (queue.stats().accepted, queue.stats().written) == (10, 10)
