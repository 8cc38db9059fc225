"""The simulated exchange's matching, compiled: one market, one account, numba-jitted functions
over plain arrays.

:class:`~adapters.simulated_exchange.exchange.SimulatedExchange` is the reference: it states the
rules (latency, crossing against visible depth, consumed liquidity, queue position, fees) and
serves every caller. This module carries out the same rules, step for step, for the case the
training environment runs millions of times -- one replayed market, the risk-averse queue model
-- where the Python version spends ~15 µs a step in interpreter overhead. It keeps its own copy of
the account's cash and position only to check orders (the ledger stays the books: every fill is
handed back and booked there), and reports what happened as rows of ``events`` for
:class:`~adapters.simulated_exchange.compiled.CompiledExchange` to turn into the same orders,
fills and rejections. ``tests/adapters/simulated_exchange/test_compiled.py`` steps both
implementations side by side and requires them to agree on everything observable.

Layout (all int64):

* ``state``: the scalars below (``ROW`` .. ``TAKEN``);
* ``orders[slot]``: ``O_SIDE`` (0 bid, 1 ask) .. ``O_TRADED``, one row per order sent;
* ``open_slots[:state[OPEN]]``: open orders, oldest first; ``resting[:state[RESTING]]``: those in
  the book, in the order they came to rest;
* ``requests[head:tail]``: ``(kind, active_ms, slot)`` in the order sent;
* ``taken[side * LADDER_SIZE + price]``: consumed liquidity ``(held, amount, cursor, time)``;
* the market: ``times``, ``log_offsets``, ``log`` (rows ``L_TIME`` .. ``L_COUNT``), ``bids``
  ``[row, side, depth, (price, count)]`` and, per level, the log entries that changed it
  (``level_entries[level_offsets[key]:level_offsets[key + 1]]``);
* ``config``: fee rates and increments, latency, refill (``-1``: none).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from adapters.simulated_exchange import queue_models
from domain import fees, values

# The domain's constants, written out: numba's on-disk cache watches this file only, so a constant
# read from another module could change without the cached machine code noticing. Checked here.
ONE_DOLLAR = 10_000
LADDER_SIZE = 10_001
FEE_DENOMINATOR = 100_000_000
if (ONE_DOLLAR, LADDER_SIZE, FEE_DENOMINATOR) != (values.ONE_DOLLAR, values.LADDER_SIZE, fees.FEE_DENOMINATOR):
    raise ImportError("domain units changed: update the constants of adapters/simulated_exchange/kernel.py")
HALF_DOLLAR = ONE_DOLLAR // 2

# state
ROW, NOW, SENT, CURSOR, CASH, POSITION, ORDERS, OPEN, RESTING, HEAD, TAIL, EVENTS, TAKEN = range(13)
STATE_SIZE = 13
# orders[slot]
O_SIDE, O_PRICE, O_COUNT, O_FILLED, O_STATUS, O_TIF, O_REDUCE, O_POST, O_AHEAD, O_LEVEL, O_TRADED = range(11)
O_UNEXPLAINED, O_REMOVED, O_SINCE = range(11, 14)  # the queue's trade/decrease pairing (queue_models)
ORDER_FIELDS = 14
PAIRING_MS = 100  # queue_models.PAIRING_MS (written out, as the constants above)
if PAIRING_MS != queue_models.PAIRING_MS:
    raise ImportError("queue_models.PAIRING_MS changed: update adapters/simulated_exchange/kernel.py")
# order status (O_STATUS); 0 and 1 are the open ones
PENDING, RESTING_STATUS, CANCELED, EXECUTED, REJECTED = range(5)
# time in force (O_TIF)
GTC, IOC, FOK = range(3)
# request kinds
NEW, CANCEL = 0, 1
# taken[key]
T_HELD, T_AMOUNT, T_CURSOR, T_TIME = range(4)
# log rows
L_TIME, L_KIND, L_PRICE, L_COUNT = range(4)
# config
C_TAKER, C_MAKER, C_FEE_STEP, C_ACCOUNT_STEP, C_LATENCY, C_REFILL = range(6)
# events: (kind, slot, a, b, c, d, e, f)
EVENT_FIELDS = 8
E_FILL, E_REST, E_CANCEL, E_REJECT = range(4)  # fill: price, count, is taker, time, fee, count closed
# rejection reasons (event a; b and c their numbers)
R_NOTHING_TO_REDUCE, R_REDUCE_TOO_BIG, R_POST_ONLY, R_FILL_OR_KILL, R_CASH, R_CASH_TO_FILL = range(6)
# (R_CASH_TO_FILL: a passive fill the cash could not pay in full; b the count paid for, c the cash,
# e the fill's count; the order, partly filled, is cancelled)

_KERNEL = {"cache": True}  # compiled once, kept beside the module (__pycache__)


@njit(**_KERNEL)
def _bisect_right(values: np.ndarray, x: int, lo: int, hi: int) -> int:
    while lo < hi:
        middle = (lo + hi) // 2
        if x < values[middle]:
            hi = middle
        else:
            lo = middle + 1
    return lo


@njit(**_KERNEL)
def _bisect_left(values: np.ndarray, x: int, lo: int, hi: int) -> int:
    while lo < hi:
        middle = (lo + hi) // 2
        if values[middle] < x:
            lo = middle + 1
        else:
            hi = middle
    return lo


@njit(**_KERNEL)
def fee(config: np.ndarray, count: int, price: int, is_taker: bool) -> int:
    """:meth:`domain.fees.FeeSchedule.fee` (same integer steps)."""
    rate = config[C_TAKER] if is_taker else config[C_MAKER]
    exact = rate * count * price * (ONE_DOLLAR - price)
    step = config[C_FEE_STEP]
    amount = -(-exact // (FEE_DENOMINATOR * step)) * step
    step = config[C_ACCOUNT_STEP]
    return -(-amount // step) * step


@njit(**_KERNEL)
def _cash_required(config: np.ndarray, side: int, price: int, count: int, position: int) -> int:
    """:func:`domain.actions.cash_required`."""
    if side == 0:
        closing = min(count, -position) if position < 0 else 0
        unpaid = fee(config, count, min(price, HALF_DOLLAR), True) - closing * (ONE_DOLLAR - price)
        return (count - closing) * price + (unpaid if unpaid > 0 else 0)
    closing = min(count, position) if position > 0 else 0
    unpaid = fee(config, count, max(price, HALF_DOLLAR), True) - closing * price
    return (count - closing) * (ONE_DOLLAR - price) + (unpaid if unpaid > 0 else 0)


@njit(**_KERNEL)
def _cost_to_take_effect(config, side, price, tif, count, position, levels, count_levels) -> int:
    """``SimulatedExchange._cost_to_take_effect``: the crossing part at what each level's fill
    costs (fee rounded per fill), plus ``_cash_required`` for a remainder that will rest."""
    left = count
    cost = 0
    for i in range(count_levels):
        yes_price, size = levels[i, 1], levels[i, 2]
        take = size if size < left else left
        if side == 0:
            closing = min(take, -position) if position < 0 else 0
            fill_cost = (take - closing) * yes_price - closing * (ONE_DOLLAR - yes_price)
            position += take
        else:
            closing = min(take, position) if position > 0 else 0
            fill_cost = (take - closing) * (ONE_DOLLAR - yes_price) - closing * yes_price
            position -= take
        fill_cost += fee(config, take, yes_price, True)
        cost += fill_cost if fill_cost > 0 else 0  # a fill that brings cash in takes none
        left -= take
        if not left:
            break
    if left and tif == GTC:
        cost += _cash_required(config, side, price, left, position)
    return cost


@njit(**_KERNEL)
def _affordable(state, config, side, price, count) -> int:
    """``SimulatedExchange._affordable``: how much of a passive fill of ``count`` at ``price`` the
    cash pays for, fee included."""
    cash = state[CASH]
    if cash >= count * ONE_DOLLAR + fee(config, count, HALF_DOLLAR, True):
        return count
    position = state[POSITION]
    if side == 0:
        held, opening = (-position if position < 0 else 0), price
    else:
        held, opening = (position if position > 0 else 0), ONE_DOLLAR - price
    closed = count if count < held else held
    if cash - fee(config, count, price, False) + (ONE_DOLLAR - opening) * closed - opening * (count - closed) >= 0:
        return count
    lo, hi = 0, count
    while hi - lo > 1:
        middle = (lo + hi) // 2
        closed = middle if middle < held else held
        if cash - fee(config, middle, price, False) + (ONE_DOLLAR - opening) * closed - opening * (middle - closed) >= 0:
            lo = middle
        else:
            hi = middle
    return lo


# -- the risk-averse queue model (adapters.simulated_exchange.queue_models) ---------------------
@njit(**_KERNEL)
def _queue_trade(order, count, now) -> int:
    """``RiskAverseQueueModel.on_trade``: a trade of ``count`` at our price; what reaches us."""
    if (order[O_TRADED] or order[O_UNEXPLAINED]) and now - order[O_SINCE] > PAIRING_MS:
        order[O_TRADED], order[O_UNEXPLAINED], order[O_REMOVED] = 0, 0, 0
    ahead = order[O_AHEAD]
    unexplained = order[O_UNEXPLAINED]
    paired = count if count < unexplained else unexplained
    if paired:
        ahead += order[O_REMOVED]
        order[O_REMOVED] = 0
        unexplained -= paired
        order[O_UNEXPLAINED] = unexplained
    if count > paired:
        order[O_TRADED] += count - paired
        order[O_SINCE] = now
    if count <= ahead:
        ahead -= count
        reached = 0
    else:
        reached = count - ahead
        ahead = 0
    if paired:
        level = order[O_LEVEL]
        if ahead > level:
            if unexplained:
                order[O_REMOVED] = ahead - level
            ahead = level
    order[O_AHEAD] = ahead
    return reached


@njit(**_KERNEL)
def _queue_level(order, size, now) -> None:
    """``RiskAverseQueueModel.on_level``: the level's size is now ``size``."""
    if (order[O_TRADED] or order[O_UNEXPLAINED]) and now - order[O_SINCE] > PAIRING_MS:
        order[O_TRADED], order[O_UNEXPLAINED], order[O_REMOVED] = 0, 0, 0
    drop = order[O_LEVEL] - size
    ahead = before = order[O_AHEAD]
    if drop < 0:
        order[O_TRADED], order[O_UNEXPLAINED], order[O_REMOVED] = 0, 0, 0
    elif drop:
        traded = order[O_TRADED]
        if traded:
            explained = drop if drop < traded else traded
            order[O_TRADED] = traded - explained
            drop -= explained
    if ahead > size:
        ahead = size
    if ahead < 0:
        ahead = 0
    if drop > 0:
        order[O_UNEXPLAINED] += drop
        order[O_REMOVED] += before - ahead
        order[O_SINCE] = now
    order[O_AHEAD] = ahead
    order[O_LEVEL] = size


# -- consumed liquidity (adapters.simulated_exchange.liquidity) --------------------------------
@njit(**_KERNEL)
def _remaining(state, taken, config, log, level_offsets, level_entries, side, price, cursor, now) -> int:
    key = side * LADDER_SIZE + price
    record = taken[key]
    if not record[T_HELD]:
        return 0
    if config[C_REFILL] >= 0 and now - record[T_TIME] >= config[C_REFILL]:
        record[T_HELD] = 0
        state[TAKEN] -= 1
        return 0
    amount = record[T_AMOUNT]
    if record[T_CURSOR] < cursor:  # the level may have drained since
        lo, hi = level_offsets[key], level_offsets[key + 1]
        first = _bisect_left(level_entries, record[T_CURSOR], lo, hi)
        last = _bisect_left(level_entries, cursor, first, hi)
        for position in range(first, last):
            count = log[L_COUNT, level_entries[position]]
            if count < amount:
                amount = count
        if not amount:
            record[T_HELD] = 0
            state[TAKEN] -= 1
            return 0
        record[T_AMOUNT] = amount
        record[T_CURSOR] = cursor
    return amount


@njit(**_KERNEL)
def _take(state, taken, config, log, level_offsets, level_entries, side, price, count, cursor, now) -> None:
    key = side * LADDER_SIZE + price
    record = taken[key]
    if record[T_HELD] and record[T_CURSOR] == cursor and record[T_TIME] == now:
        record[T_AMOUNT] += count
        return
    held = _remaining(state, taken, config, log, level_offsets, level_entries, side, price, cursor, now)
    if not record[T_HELD]:
        record[T_HELD] = 1
        state[TAKEN] += 1
    record[T_AMOUNT] = held + count
    record[T_CURSOR] = cursor
    record[T_TIME] = now


@njit(**_KERNEL)
def _level_size(log, level_offsets, level_entries, side, price, cursor) -> int:
    key = side * LADDER_SIZE + price
    lo, hi = level_offsets[key], level_offsets[key + 1]
    last = _bisect_left(level_entries, cursor, lo, hi) - 1
    return log[L_COUNT, level_entries[last]] if last >= lo else 0


# -- orders ------------------------------------------------------------------------------------
@njit(**_KERNEL)
def _event(state, events, kind, slot, a, b, c, d, e, f) -> None:
    row = events[state[EVENTS]]
    row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] = kind, slot, a, b, c, d, e, f
    state[EVENTS] += 1


@njit(**_KERNEL)
def _remove(slots, count, slot) -> int:
    """Take ``slot`` out of ``slots[:count]`` (keeping the order); returns the new count."""
    for index in range(count):
        if slots[index] == slot:
            slots[index : count - 1] = slots[index + 1 : count]
            return count - 1
    return count


@njit(**_KERNEL)
def _close(state, open_slots, resting, slot) -> None:
    """The order leaves the book (filled, cancelled or refused)."""
    state[OPEN] = _remove(open_slots, state[OPEN], slot)
    state[RESTING] = _remove(resting, state[RESTING], slot)


@njit(**_KERNEL)
def _execute(state, orders, events, config, slot, price, count, is_taker, now) -> None:
    order = orders[slot]
    amount = fee(config, count, price, is_taker)
    # the account's cash and position, as domain.ledger.Position.apply moves them
    if order[O_SIDE] == 0:
        direction, open_price = 1, price
    else:
        direction, open_price = -1, ONE_DOLLAR - price
    cash = -amount
    left = count
    closed = 0
    held_against = -state[POSITION] * direction
    if held_against > 0:
        closed = left if left < held_against else held_against
        cash += (ONE_DOLLAR - open_price) * closed
        state[POSITION] += closed * direction
        left -= closed
    if left:
        cash -= open_price * left
        state[POSITION] += left * direction
    state[CASH] += cash
    order[O_FILLED] += count
    if order[O_FILLED] == order[O_COUNT]:
        order[O_STATUS] = EXECUTED
    _event(state, events, E_FILL, slot, price, count, 1 if is_taker else 0, now, amount, closed)


@njit(**_KERNEL)
def _reject(state, orders, open_slots, resting, events, slot, reason, a, b) -> None:
    _close(state, open_slots, resting, slot)
    orders[slot, O_STATUS] = REJECTED
    _event(state, events, E_REJECT, slot, reason, a, b, state[NOW], 0, 0)


@njit(**_KERNEL)
def _reserved_by_others(state, orders, open_slots, config, slot) -> int:
    reserved = 0
    for index in range(state[OPEN]):
        other = open_slots[index]
        if other != slot:
            order = orders[other]
            remaining = order[O_COUNT] - order[O_FILLED]
            reserved += _cash_required(config, order[O_SIDE], order[O_PRICE], remaining, state[POSITION])
    return reserved


@njit(**_KERNEL)
def _set_level(candidates, found, price, size) -> int:
    """Set ``price``'s size among ``candidates[:found]``, adding it if new; returns the new count."""
    for known in range(found):
        if candidates[known, 0] == price:
            candidates[known, 1] = size
            return found
    candidates[found, 0], candidates[found, 1] = price, size
    return found + 1


@njit(**_KERNEL)
def _activate(
    state, orders, open_slots, resting, taken, events, config,
    times, log_offsets, log, bids, level_offsets, level_entries, slot,
) -> None:  # fmt: skip
    order = orders[slot]
    now, cursor = state[NOW], state[CURSOR]
    is_bid = order[O_SIDE] == 0
    side = 0 if is_bid else 1
    price = order[O_PRICE] if is_bid else ONE_DOLLAR - order[O_PRICE]  # the bid it makes
    other = 1 - side
    row = _bisect_right(times, now, 0, len(times)) - 1
    lowest = ONE_DOLLAR - price  # the other side's bids at or above this cross the order
    # The other side's crossing bids at the cursor: the row's, updated by the log since the row.
    depth = bids.shape[2]
    start = log_offsets[row + 1]
    candidates = np.empty((depth + cursor - start, 2), np.int64)
    found = 0
    for level in range(depth):  # the row's levels, best first (an empty slot, -1, is below any)
        q = bids[row, other, level, 0]
        if q < lowest:
            break
        candidates[found, 0], candidates[found, 1] = q, bids[row, other, level, 1]
        found += 1
    for index in range(start, cursor):
        if log[L_KIND, index] == other and log[L_PRICE, index] >= lowest:
            # a level removed by the log gets size -1 (a level of size 0 can only be the row's)
            size = log[L_COUNT, index]
            found = _set_level(candidates, found, log[L_PRICE, index], size if size else -1)
    # best (highest) first; levels the log removed have size -1
    for i in range(1, found):
        j = i
        while j > 0 and candidates[j - 1, 0] < candidates[j, 0]:
            q, size = candidates[j - 1, 0], candidates[j - 1, 1]
            candidates[j - 1, 0], candidates[j - 1, 1] = candidates[j, 0], candidates[j, 1]
            candidates[j, 0], candidates[j, 1] = q, size
            j -= 1
    levels = np.empty((found, 3), np.int64)  # (other side's bid, YES price, available)
    count_levels = 0
    available = 0
    for i in range(found):
        q, size = candidates[i, 0], candidates[i, 1]
        if size < 0:
            continue
        yes_price = ONE_DOLLAR - q if is_bid else q
        if not 0 < yes_price < ONE_DOLLAR:
            continue
        if state[TAKEN]:
            size -= _remaining(state, taken, config, log, level_offsets, level_entries, other, q, cursor, now)
        if size > 0:
            levels[count_levels, 0], levels[count_levels, 1], levels[count_levels, 2] = q, yes_price, size
            count_levels += 1
            available += size

    position = state[POSITION]
    count = order[O_COUNT]
    if order[O_REDUCE] and (position >= 0 if is_bid else position <= 0):
        _reject(state, orders, open_slots, resting, events, slot, R_NOTHING_TO_REDUCE, 0, 0)
        return
    if order[O_REDUCE] and count > abs(position):
        _reject(state, orders, open_slots, resting, events, slot, R_REDUCE_TOO_BIG, abs(position), 0)
        return
    if order[O_POST] and count_levels:
        _reject(state, orders, open_slots, resting, events, slot, R_POST_ONLY, 0, 0)
        return
    if order[O_TIF] == FOK and available < count:
        _reject(state, orders, open_slots, resting, events, slot, R_FILL_OR_KILL, available, 0)
        return
    spendable = state[CASH] - _reserved_by_others(state, orders, open_slots, config, slot)
    dearest = count * ONE_DOLLAR + fee(config, count, HALF_DOLLAR, True) + (count_levels + 1) * config[C_ACCOUNT_STEP]
    if spendable < dearest:  # else affordable at any price, position and per-fill fee rounding
        required = _cost_to_take_effect(config, order[O_SIDE], order[O_PRICE], order[O_TIF], count, position,
                                        levels, count_levels)  # fmt: skip
        if required > spendable:
            _reject(state, orders, open_slots, resting, events, slot, R_CASH, required, spendable)
            return

    left = count - order[O_FILLED]
    for i in range(count_levels):
        q, yes_price, size = levels[i, 0], levels[i, 1], levels[i, 2]
        take = size if size < left else left
        _execute(state, orders, events, config, slot, yes_price, take, True, now)
        _take(state, taken, config, log, level_offsets, level_entries, other, q, take, cursor, now)
        left -= take
        if not left:
            break
    if not left:
        _close(state, open_slots, resting, slot)
    elif order[O_TIF] == GTC:
        order[O_STATUS] = RESTING_STATUS
        _event(state, events, E_REST, slot, 0, 0, 0, 0, 0, 0)
        level = _level_size(log, level_offsets, level_entries, side, price, cursor)
        ahead = level
        if state[TAKEN]:
            ahead = level - _remaining(state, taken, config, log, level_offsets, level_entries, side, price, cursor, now)
        order[O_AHEAD], order[O_LEVEL], order[O_TRADED] = max(ahead, 0), level, 0
        order[O_UNEXPLAINED], order[O_REMOVED], order[O_SINCE] = 0, 0, 0
        resting[state[RESTING]] = slot
        state[RESTING] += 1
    else:
        _close(state, open_slots, resting, slot)
        order[O_STATUS] = CANCELED
        _event(state, events, E_CANCEL, slot, 0, 0, 0, 0, 0, 0)


# -- the market log past our resting orders ------------------------------------------------------
@njit(**_KERNEL)
def _replay_log(
    state, orders, open_slots, resting, taken, events, config, log, level_offsets, level_entries, until, end
) -> None:
    watch = resting[: state[RESTING]].copy()  # the orders the loop looks at, as they stood
    watching = len(watch)
    # in price-time priority: the best bid on its side first, then the order that rested first
    for i in range(1, watching):
        slot = watch[i]
        key = orders[slot, O_PRICE] if orders[slot, O_SIDE] == 0 else ONE_DOLLAR - orders[slot, O_PRICE]
        j = i
        while j > 0:
            before = watch[j - 1]
            if (orders[before, O_PRICE] if orders[before, O_SIDE] == 0 else ONE_DOLLAR - orders[before, O_PRICE]) >= key:
                break
            watch[j] = before
            j -= 1
        watch[j] = slot
    index = state[CURSOR]
    while index < end and log[L_TIME, index] <= until:
        kind, price, count = log[L_KIND, index], log[L_PRICE, index], log[L_COUNT, index]
        index += 1
        finished = False
        volume = count  # a trade's volume not yet used up by our fills
        for entry in range(watching):
            slot = watch[entry]
            order = orders[slot]
            is_bid = order[O_SIDE] == 0
            side = 0 if is_bid else 1
            bid_price = order[O_PRICE] if is_bid else ONE_DOLLAR - order[O_PRICE]
            if kind == side:  # our level changed: the risk-averse queue model
                if price == bid_price:
                    _queue_level(order, count, log[L_TIME, index - 1])
                continue
            remaining = order[O_COUNT] - order[O_FILLED] if order[O_STATUS] <= RESTING_STATUS else 0
            if kind < 2:  # the other side changed
                if price < ONE_DOLLAR - bid_price or not count:
                    continue
                # Liquidity that crosses us arrived: it would have met our order first.
                now = log[L_TIME, index - 1]
                fill = count - _remaining(state, taken, config, log, level_offsets, level_entries, kind, price, index, now)
                if remaining < fill:
                    fill = remaining
                if fill <= 0:
                    continue
                paid = _affordable(state, config, side, order[O_PRICE], fill)
                if paid:
                    _take(state, taken, config, log, level_offsets, level_entries, kind, price, paid, index, now)
                order[O_AHEAD] = 0
            elif kind == 3 - side:  # a trade whose taker sold to bids on our side
                at = price if side == 0 else ONE_DOLLAR - price
                if at < bid_price:  # through our price
                    fill = min(remaining, volume)
                    order[O_AHEAD] = 0
                    if not fill:
                        continue
                elif at == bid_price:
                    reached = _queue_trade(order, volume, log[L_TIME, index - 1])
                    fill = min(remaining, reached)
                    if not fill:
                        continue
                else:
                    continue
            else:
                continue
            if kind >= 2:
                paid = _affordable(state, config, side, order[O_PRICE], fill)
                volume -= paid
            cash = state[CASH]
            if paid:
                _execute(state, orders, events, config, slot, order[O_PRICE], paid, False, log[L_TIME, index - 1])
            if paid < fill:  # the cash cannot pay for the whole fill: the rest of the order goes
                orders[slot, O_STATUS] = CANCELED
                _event(state, events, E_REJECT, slot, R_CASH_TO_FILL, paid, cash, log[L_TIME, index - 1], fill, 0)
                finished = True
            elif order[O_FILLED] == order[O_COUNT]:
                finished = True
        if finished:
            position = 0
            while position < state[RESTING]:
                slot = resting[position]
                if orders[slot, O_FILLED] == orders[slot, O_COUNT] or orders[slot, O_STATUS] == CANCELED:
                    _close(state, open_slots, resting, slot)
                else:
                    position += 1
            if not state[RESTING]:
                break
            kept = 0
            for entry in range(watching):
                slot = watch[entry]
                if orders[slot, O_FILLED] != orders[slot, O_COUNT] and orders[slot, O_STATUS] != CANCELED:
                    watch[kept] = slot
                    kept += 1
            watching = kept
    if not state[RESTING]:  # nothing left to fill: skip to the end of the span
        index = _bisect_right(log[L_TIME], until, index, end)
    state[CURSOR] = index


# -- requests and time ---------------------------------------------------------------------------
@njit(**_KERNEL)
def cancel(state, requests, config, slot, ts) -> None:
    """Send a cancel for the order in ``slot`` at ``ts`` (the caller has checked it is open)."""
    tail = state[TAIL]
    requests[tail, 0], requests[tail, 1], requests[tail, 2] = CANCEL, ts + config[C_LATENCY], slot
    state[TAIL] = tail + 1
    state[SENT] = ts


@njit(**_KERNEL)
def cancel_all(state, open_slots, requests, config, ts) -> int:
    """Send a cancel for every open order at ``ts``, oldest first; returns how many."""
    count = state[OPEN]
    for index in range(count):
        cancel(state, requests, config, open_slots[index], ts)
    return count


@njit(**_KERNEL)
def submit(
    state, orders, open_slots, requests, config, side, price, count, tif, reduce_only, post_only, ts, replacing
) -> int:  # fmt: skip
    """Send a new order at ``ts`` -- ``replacing``: after a cancel of every open order, sent at
    the same time -- and return its slot, or -1 (nothing sent) when ``ts`` is earlier than the
    market's clock. The caller has made room for it (and the cancels)."""
    if ts < state[SENT] or ts < state[NOW]:
        return -1
    if replacing:
        cancel_all(state, open_slots, requests, config, ts)
    slot = state[ORDERS]
    state[ORDERS] = slot + 1
    order = orders[slot]
    order[O_SIDE], order[O_PRICE], order[O_COUNT], order[O_FILLED] = side, price, count, 0
    order[O_STATUS], order[O_TIF], order[O_REDUCE], order[O_POST] = PENDING, tif, reduce_only, post_only
    open_slots[state[OPEN]] = slot
    state[OPEN] += 1
    tail = state[TAIL]
    requests[tail, 0], requests[tail, 1], requests[tail, 2] = NEW, ts + config[C_LATENCY], slot
    state[TAIL] = tail + 1
    state[SENT] = ts
    return slot


@njit(**_KERNEL)
def refuse(state, orders, open_slots, resting, slot) -> int:
    """The order just sent in ``slot`` is refused as sent (its request will find it closed);
    returns the latest open order's slot (-1: none)."""
    _close(state, open_slots, resting, slot)
    orders[slot, O_STATUS] = REJECTED
    return open_slots[state[OPEN] - 1] if state[OPEN] else -1


@njit(**_KERNEL)
def cancel_everything(state, orders, open_slots, resting, events) -> None:
    """Resolution: drop the requests in flight and cancel the open orders, oldest first."""
    state[HEAD] = state[TAIL]
    while state[OPEN]:
        slot = open_slots[0]
        _close(state, open_slots, resting, slot)
        orders[slot, O_STATUS] = CANCELED
        _event(state, events, E_CANCEL, slot, 0, 0, 0, 0, 0, 0)


@njit(**_KERNEL)
def _events_needed(state, log_offsets, depth, row) -> int:
    """The most events replaying to ``row`` can make: a fill of each resting order per log entry,
    and per request one per crossing level (the row's depth and the log since) and one more."""
    end = log_offsets[row + 1]
    window = end - log_offsets[state[ROW]]
    pending = state[TAIL] - state[HEAD]
    return 2 * window * (state[OPEN] + pending + 1) + pending * (depth + window + 2) + 1


@njit(**_KERNEL)
def advance(
    state, orders, open_slots, resting, requests, taken, events, config,
    times, log_offsets, log, bids, level_offsets, level_entries, row, cash, position,
) -> tuple[int, int]:  # fmt: skip
    """Replay up to row ``row`` (inclusive), carrying out the requests that take effect on the
    way, from the account's ``cash`` and ``position`` now. Returns ``(events, latest)``: the
    events are ``events[:events]``, ``latest`` the latest open order's slot (-1: none); or
    ``(-needed, -1)``, nothing done, when ``events`` has fewer than ``needed`` rows."""
    needed = _events_needed(state, log_offsets, bids.shape[2], row)
    if needed > len(events):
        return -needed, -1
    state[EVENTS] = 0
    state[CASH], state[POSITION] = cash, position
    target = times[row]
    end = log_offsets[row + 1]
    if state[HEAD] == state[TAIL] and not state[RESTING]:  # nothing of ours in the market: jump
        state[CURSOR] = max(state[CURSOR], end)
        state[NOW] = max(state[NOW], target)
    else:
        while True:
            head = state[HEAD]
            pending = head < state[TAIL] and requests[head, 1] <= target
            until = requests[head, 1] if pending else target
            if state[RESTING]:
                _replay_log(state, orders, open_slots, resting, taken, events, config, log, level_offsets,
                            level_entries, until, end)  # fmt: skip
            elif state[CURSOR] < end:
                state[CURSOR] = _bisect_right(log[L_TIME], until, state[CURSOR], end)
            if until > state[NOW]:
                state[NOW] = until
            if not pending:
                break
            state[HEAD] = head + 1
            kind, slot = requests[head, 0], requests[head, 2]
            status = orders[slot, O_STATUS]
            if kind == CANCEL:
                if status <= RESTING_STATUS:
                    _close(state, open_slots, resting, slot)
                    orders[slot, O_STATUS] = CANCELED
                    _event(state, events, E_CANCEL, slot, 0, 0, 0, 0, 0, 0)
            elif status <= RESTING_STATUS:  # not closed before it could take effect
                _activate(state, orders, open_slots, resting, taken, events, config, times, log_offsets, log, bids,
                          level_offsets, level_entries, slot)  # fmt: skip
    state[ROW] = row
    return state[EVENTS], open_slots[state[OPEN] - 1] if state[OPEN] else -1
