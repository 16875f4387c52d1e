"""The framework's ceiling: a bare aiohttp websocket server that re-broadcasts every frame it
receives, byte for byte, to everyone in the sender's room. No authentication, no actors, no
storage, no JSON: whatever the product spends beyond this is the cost of being a product.

    python -m bench.peers.echo --port 0 [--mode raw|send]

A client joins one room at connect time (`/ws?room=<name>`). `--mode raw` (the default) builds
the websocket frame once and writes the same bytes to each member's transport (the technique
the product uses); `--mode send` awaits aiohttp's `send_str` per member (the plain API).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys

from aiohttp import WSMsgType, web

ROOMS = web.AppKey("rooms", dict[str, dict[web.WebSocketResponse, asyncio.Transport]])
MODE = web.AppKey("mode", str)


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


async def websocket(request: web.Request) -> web.WebSocketResponse:
    room = request.query.get("room", "")
    transport = request.transport
    if not room or transport is None:
        raise web.HTTPBadRequest(text="?room= is required")
    ws = web.WebSocketResponse(compress=False, max_msg_size=65536)
    await ws.prepare(request)
    members = request.app[ROOMS].setdefault(room, {})
    members[ws] = transport
    raw = request.app[MODE] == "raw"
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            if raw:
                frame = text_frame(msg.data.encode())
                for member in members.values():
                    if not member.is_closing():
                        member.write(frame)
            else:
                for member_ws in list(members):
                    if not member_ws.closed:
                        await member_ws.send_str(msg.data)
    finally:
        members.pop(ws, None)
    return ws


async def serve(port: int, mode: str) -> None:
    app = web.Application()
    app[ROOMS] = {}
    app[MODE] = mode
    app.router.add_get("/ws", websocket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096, reuse_address=True)
    await site.start()
    sockets = getattr(site._server, "sockets", None)
    bound = sockets[0].getsockname()[1] if sockets else port
    print(f"echo peer ({mode}) listening on http://127.0.0.1:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.echo", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=("raw", "send"), default="raw")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.port, args.mode))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
