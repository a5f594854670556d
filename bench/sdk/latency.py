"""A TCP proxy that adds a round trip's latency to every request, as a remote object store has.

A request is a burst of bytes from the client after a quiet moment: its first chunk waits
``latency`` seconds before it is forwarded (and the rest of the burst after it, in order). The
responses pass at once. So each request/response exchange costs one ``latency`` more, however
many bytes it carries, which is what 10-50 ms to a real object store means to a client.
"""

from __future__ import annotations

import asyncio
import threading
import time

QUIET = 0.002  # client bytes after this long without any start a new request


class LatencyProxy:
    def __init__(self, target_host: str, target_port: int, latency: float) -> None:
        self.target = (target_host, target_port)
        self.latency = latency
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._requests(client_r, server_w), self._pipe(server_r, client_w), return_exceptions=True)
        for w in (client_w, server_w):
            w.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        last = 0.0
        release = 0.0  # when the current request may be forwarded
        while chunk := await reader.read(1 << 16):
            now = time.monotonic()
            if now - last > QUIET:
                release = now + self.latency
            last = now
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        writer.close()
