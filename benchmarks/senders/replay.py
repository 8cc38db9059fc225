"""The lightest possible sender, for ``benchmarks/ingest.py``: serves one client a file of
ready-made WebSocket frames as fast as the socket takes them, so what limits the rate is the
receiver, not the sender. (Not a benchmark itself: ``make bench`` runs ``benchmarks/*.py`` only.)

    python benchmarks/senders/replay.py FRAMES

prints ``listening ws://127.0.0.1:PORT/trade-api/ws/v2``, waits for one client's first command
(its subscription), writes the whole file to the socket in one go, closes the connection
normally once the socket has taken it all, prints ``stopped: N bytes sent`` and exits. The file
holds server-to-client text frames already framed (unmasked, see ``ingest.frame_text``), the
subscription's acknowledgement first: no per-message work is left for this process. Loopback
only.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

HOST = "127.0.0.1"
PATH = "/trade-api/ws/v2"
CLIENT_TIMEOUT_S = 60.0


async def serve_once(frames: bytes) -> int:
    served = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        await connection.recv()  # the subscribe command, acknowledged by the file's first frame
        transport = connection.transport
        transport.write(frames)  # past the protocol object: it only sees the close that follows
        while transport.get_write_buffer_size():
            await asyncio.sleep(0.005)
        await connection.close()
        if not served.done():
            served.set_result(len(frames))

    async with serve(handler, HOST, 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening ws://{HOST}:{port}{PATH}", flush=True)
        return await asyncio.wait_for(served, CLIENT_TIMEOUT_S)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: replay.py FRAMES")
    sent = asyncio.run(serve_once(Path(sys.argv[1]).read_bytes()))
    print(f"stopped: {sent} bytes sent", flush=True)


if __name__ == "__main__":
    main()
