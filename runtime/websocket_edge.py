"""WebSocket subscriptions: the function behind a path is polled for the frames each connection gets next.

Waitress (the HTTP gateway) cannot hold WebSockets, so `websocket`
triggers have a listener of their own (`listen.<listener>`), served by the
`websockets` library in the main process's event loop; in production a
reverse proxy maps the public URL's path to it. The platform keeps, per
connection, the `state` the function returned last and nothing else: each
poll invokes the function with {rawPath, rawQueryString, requestContext,
state} and it answers {frames: [base64], state, more, close}. `more` asks
for the next poll at once, otherwise it comes after the trigger's
`pollInterval`; `close` ends the connection after the frames. Past the
trigger's `maxConnections` a new connection gets 503, since every open
one costs an invocation per poll.
"""
from __future__ import annotations

import asyncio
import base64
import uuid
from urllib.parse import SplitResult, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from runtime.invoker import FunctionRuntime
from runtime.jsonlog import JsonLog
from runtime.manifest import WebSocketTrigger
from runtime.settings import Settings


class WebSocketEdge:
    def __init__(self, settings: Settings, runtime: FunctionRuntime, log: JsonLog, listener: str) -> None:
        self.settings, self.runtime, self.log, self.listener = settings, runtime, log, listener
        self._server: Server | None = None
        self._open: dict[str, int] = {}

    def _route(self, path: str) -> tuple[str, WebSocketTrigger] | None:
        """The function bound to `path` in the deployment current now (a deploy may add or move it)."""
        for spec in self.runtime.require().manifest.functions.values():
            for trigger in spec.triggers(WebSocketTrigger):
                if trigger.listener == self.listener and trigger.path == path:
                    return spec.name, trigger
        return None

    def bound(self) -> bool:
        return any(t.listener == self.listener for s in self.runtime.require().manifest.functions.values()
                   for t in s.triggers(WebSocketTrigger))

    async def start(self) -> None:
        host, port = getattr(self.settings.listen, self.listener)
        self._server = await serve(self._connection, host, port, process_request=self._admit,
                                   max_size=64 * 1024, ping_interval=20, ping_timeout=20)
        self.log.info("websocket.listening", listener=self.listener, host=host, port=port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        route = self._route(urlsplit(request.path).path)
        if route is None:
            return connection.respond(404, "Not Found\n")
        if self._open.get(route[0], 0) >= route[1].maxConnections:
            self.log.warning("websocket.refused", function=route[0], reason="maxConnections")
            return connection.respond(503, "Too many subscribers\n")
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path)
        connection_id = uuid.uuid4().hex
        peer = ws.remote_address[0] if ws.remote_address else ""
        self.log.info("websocket.connected", path=url.path, peer=peer, connection=connection_id)
        function = (self._route(url.path) or ("", None))[0]
        self._open[function] = self._open.get(function, 0) + 1
        try:
            reason = await self._serve(ws, url, connection_id, peer)
        finally:
            self._open[function] -= 1
        await ws.close()
        self.log.info("websocket.closed", path=url.path, connection=connection_id, reason=reason)

    async def _serve(self, ws: ServerConnection, url: SplitResult, connection_id: str, peer: str) -> str:
        """Poll the function and send what it answers until it, the client or a deploy ends the connection."""
        state, reason = None, "client closed"
        try:
            while True:
                route = self._route(url.path)
                if route is None:
                    reason = "route removed"
                    break
                event = {"rawPath": url.path, "rawQueryString": url.query, "state": state,
                         "requestContext": {"connectionId": connection_id, "routeKey": url.path,
                                            "http": {"path": url.path, "sourceIp": peer}}}
                result = await self.runtime.invoke_async(route[0], event)
                for frame in result.get("frames") or []:
                    await ws.send(base64.b64decode(frame))
                if result.get("close"):
                    reason = "closed by function"
                    break
                state = result.get("state")
                if result.get("more"):
                    continue
                try:
                    await asyncio.wait_for(ws.wait_closed(), route[1].pollInterval)
                    break
                except asyncio.TimeoutError:
                    pass
        except ConnectionClosed:
            pass
        except Exception as exc:
            reason = "error"
            self.log.error("websocket.error", path=url.path, connection=connection_id, error=repr(exc))
            await ws.close(1011, "internal error")
        return reason
