"""One client's WebSocket session on the exchange: commands in, queued messages out, faults.

Two tasks per connection: the reader answers commands, the writer drains the
:class:`~adapters.local_exchange.send_queue.SendQueue` to the socket. Market events arrive from
the exchange through :meth:`ExchangeConnection.on_market_event`, synchronously and in publish
order, and only ever append to the queue -- so a client that reads slowly delays nobody but
itself, and loses its subscription (error 25) when its queue is full.

Book messages are numbered here, as they are queued (per sid, see
:meth:`~adapters.local_exchange.subscriptions.Subscription.take_seq`), and faults
(:mod:`adapters.local_exchange.faults`) act here, at the N-th book message queued for this
connection: ``skip-seq`` and ``duplicate`` change what is queued, the others queue something
for the writer (a torn frame, a pause, a cut) just before message N.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from adapters.kalshi import wire
from adapters.local_exchange.faults import FaultKind, FaultPlan
from adapters.local_exchange.markets import ExchangeMarkets, TickerUpdate
from adapters.local_exchange.messages import overflow_message, torn_frame
from adapters.local_exchange.send_queue import ItemKind, SendQueue, SendQueueFull
from adapters.local_exchange.subscriptions import ConnectionSubscriptions, Forget, Instruction, Send
from adapters.local_exchange.trading.accounts import AccountFill
from domain.events import MarketEvent

CLOSE_GOING_AWAY = 1001
# The ASGI scope extension through which the server lends a connection its transport's abort()
# (see server.KalshiWebSocketProtocol): ASGI itself has no way to cut a connection at once.
ABORT_EXTENSION = "kalshiflow.abort"
# Likewise its send_frames(texts): several text frames in one socket write (see the writer).
SEND_FRAMES_EXTENSION = "kalshiflow.send_frames"
BURST_FRAMES = 256  # at most this many queued frames go out in one write


def _text(message: wire.Message) -> str:
    return wire.encode(message).decode()


class ExchangeConnection:
    def __init__(
        self,
        number: int,
        websocket: WebSocket,
        markets: ExchangeMarkets,
        *,
        era: wire.Era = "current",
        faults: FaultPlan | None = None,
        send_buffer: int = 10_000,
        owns_client_order: Callable[[str], bool] = lambda _client_order_id: False,
    ) -> None:
        self.number = number  # from 1, in the order handshakes succeeded
        self.websocket = websocket
        self.subscriptions = ConnectionSubscriptions(markets, era, owns_client_order)
        self.queue = SendQueue(send_buffer)
        self.faults = faults or {}
        self.book_messages = 0  # queued so far: what fault positions count
        self.fill_messages = 0  # fill messages queued so far: what drop-fill counts
        self.cut_at_fill = False  # a drop-fill fault cut it
        self.overflows = 0  # subscriptions dropped for a full queue
        self._ending = False  # a cut or a close is queued: nothing more goes in
        self._tasks: tuple[asyncio.Task[None], ...] = ()

    # -- what goes into the queue ----------------------------------------------------------
    def on_market_event(self, event: MarketEvent, update: TickerUpdate | None) -> None:
        if not self._ending:
            self._carry_out(self.subscriptions.market_event(event, update))

    def on_fill(self, fill: AccountFill) -> None:
        """One of the connection's account's executions (for the ``fill`` channel)."""
        if self._ending:
            return
        instructions = self.subscriptions.fill_event(fill)
        if not instructions:
            return  # not subscribed to fills here
        self.fill_messages += 1
        if FaultKind.DROP_FILL in self.faults.get(self.fill_messages, {}):
            # The cut goes where this fill would have: the client never receives it.
            self.cut_at_fill = True
            self._ending = True
            self.queue.put_drop()
            return
        self._carry_out(instructions)

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "exchange closing") -> None:
        """Close after everything already queued has been sent."""
        if not self._ending:
            self._ending = True
            self.queue.put_close(code, reason)

    def _carry_out(self, instructions: list[Instruction]) -> None:
        try:
            for instruction in instructions:
                if self._ending:
                    return
                if isinstance(instruction, Forget):
                    self.queue.forget(instruction.sid, instruction.tickers)
                elif instruction.sid is None:
                    self.queue.put_control(_text(instruction.message))
                elif self.subscriptions.get(instruction.sid) is None:
                    continue  # dropped for overflow earlier in this batch
                elif instruction.is_book:
                    self._queue_book_message(instruction)
                elif not self.queue.put_data(_text(instruction.message), instruction.sid, instruction.ticker or ""):
                    self._overflow(instruction.sid)
        except SendQueueFull:
            # The client sends commands and reads no replies: cut it off now (a cut queued
            # behind the replies would wait for it to read them).
            self.abandon()

    def _queue_book_message(self, send: Send) -> None:
        assert send.sid is not None and send.ticker is not None
        sub = self.subscriptions.get(send.sid)
        assert sub is not None
        self.book_messages += 1
        faults = self.faults.get(self.book_messages, {})
        message = send.message
        message["seq"] = sub.take_seq(skip=FaultKind.SKIP_SEQ in faults)
        text = _text(message)
        stall = faults.get(FaultKind.STALL)
        if stall is not None:
            self.queue.put_stall(stall.seconds)
        if FaultKind.MALFORMED in faults:
            self.queue.put_control(torn_frame(text))
        if FaultKind.DROP_CONNECTION in faults:
            self._ending = True
            self.queue.put_drop()
            return
        for _ in range(2 if FaultKind.DUPLICATE in faults else 1):
            if not self.queue.put_data(text, send.sid, send.ticker):
                self._overflow(send.sid)
                return

    def _overflow(self, sid: int) -> None:
        sub = self.subscriptions.drop(sid)
        if sub is None:
            return
        self.overflows += 1
        self.queue.forget(sid)
        self.queue.put_control(_text(overflow_message(sid, sub.channel)))

    # -- the two tasks -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until the client leaves, the exchange closes it or a fault cuts it.

        Returning without a close frame cuts the TCP connection (that is how ``drop`` works):
        the ASGI server closes the transport when the handler returns."""
        reader = asyncio.create_task(self._read(), name=f"exchange-connection-{self.number}-reader")
        writer = asyncio.create_task(self._write(), name=f"exchange-connection-{self.number}-writer")
        self._tasks = (reader, writer)
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError, RuntimeError):
                    await task

    def abandon(self) -> None:
        """Cut the connection now, whatever is still queued or unread (a client that stopped
        reading would otherwise hold its socket open until it drained)."""
        self._ending = True
        abort = self.websocket.scope.get("extensions", {}).get(ABORT_EXTENSION, {}).get("abort")
        if abort is not None:
            abort()
        for task in self._tasks:
            task.cancel()

    async def _read(self) -> None:
        websocket = self.websocket
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            if not self._ending:
                self._carry_out(self.subscriptions.handle_command(frame))

    async def _write(self) -> None:
        websocket, queue = self.websocket, self.queue
        send_frames = websocket.scope.get("extensions", {}).get(SEND_FRAMES_EXTENSION, {}).get("send_frames")
        while True:
            item = await queue.get()
            kind = item.kind
            if kind is ItemKind.FRAME:
                if send_frames is None:
                    await websocket.send_text(item.value)  # type: ignore[arg-type]
                else:
                    # The frames queued behind this one share its write: one system call per
                    # burst instead of one per message, which is most of a fast client's cost.
                    await send_frames([item.value, *queue.take_frames(BURST_FRAMES - 1)])
            elif kind is ItemKind.STALL:
                await asyncio.sleep(item.value)  # type: ignore[arg-type]
            elif kind is ItemKind.DROP:
                return
            else:
                code, reason = item.value  # type: ignore[misc]
                await websocket.close(code, reason)
                return
