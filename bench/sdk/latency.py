"""A TCP proxy that adds a round trip's latency to every request, as a remote object store has.

HTTP/1.1 clients send a request, then wait for its response. So on one connection, client bytes
that come after the server has answered begin a new request: the proxy holds that request's
first bytes back ``latency`` seconds (and the rest of it after them, in order). Responses pass at
once. Each request/response exchange then costs one ``latency`` more, however many bytes it
carries and however long its body takes to send, which is what 10-50 ms to a real object store
means to a client.
"""

from __future__ import annotations

import asyncio
import threading


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
        answered = [True]  # the server has sent bytes since the client's last: next client bytes are a request
        await asyncio.gather(
            self._requests(client_r, server_w, answered),
            self._responses(server_r, client_w, answered),
            return_exceptions=True,
        )
        for w in (client_w, server_w):
            w.close()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: list[bool]) -> None:
        while chunk := await reader.read(1 << 16):
            if answered[0]:
                answered[0] = False
                await asyncio.sleep(self.latency)
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()

    @staticmethod
    async def _responses(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answered: list[bool]) -> None:
        while chunk := await reader.read(1 << 16):
            answered[0] = True
            writer.write(chunk)
            await writer.drain()
        writer.close()
