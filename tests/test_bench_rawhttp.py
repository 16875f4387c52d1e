"""The REST load's lean HTTP client (bench/rawhttp.py): it must read what a server answers, in
whatever pieces it arrives, or the REST figures count the wrong thing."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.rawhttp import HttpClient, HttpError, parse_response

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n"
)


def test_a_response_with_a_length_is_read_whole_and_only_it() -> None:
    parsed = parse_response(OK + b"HTTP/1.1 204", eof=False)
    assert parsed is not None
    response, used, keep = parsed
    assert (response.status, response.body, used, keep) == (200, b'{"a":1}', len(OK), True)


def test_a_response_in_pieces_is_incomplete_until_its_last_byte() -> None:
    for cut in range(1, len(OK)):
        assert parse_response(OK[:cut], eof=False) is None
    for cut in range(1, len(CHUNKED)):
        assert parse_response(CHUNKED[:cut], eof=False) is None
    parsed = parse_response(CHUNKED, eof=False)
    assert parsed is not None
    assert parsed[0].body == b"abcdefg"
    assert parsed[1] == len(CHUNKED)


def test_a_body_to_the_connections_end_and_a_close() -> None:
    raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"
    assert parse_response(raw, eof=False) is None
    parsed = parse_response(raw, eof=True)
    assert parsed is not None
    assert (parsed[0].body, parsed[2]) == (b"all of it", False)


def test_an_answer_cut_short_or_garbled_is_an_error() -> None:
    with pytest.raises(HttpError):
        parse_response(OK[:-2], eof=True)
    with pytest.raises(HttpError):
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", eof=False)
    with pytest.raises(HttpError):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", eof=False)


async def test_requests_reuse_one_connection_and_survive_its_close() -> None:
    peers: list[object] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        if request.path == "/chunked":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(b"part one, ")
            await resp.write(b"part two")
            await resp.write_eof()
            return resp
        if request.path == "/close":
            return web.Response(body=b"bye", headers={"Connection": "close"})
        return web.json_response(
            {"method": request.method, "auth": request.headers.get("Authorization"), "n": len(body)}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = TestServer(app)
    await server.start_server()
    client = HttpClient(str(server.make_url("/")))
    try:
        first = await client.request("GET", "/a", {"Authorization": "Bearer t"})
        second = await client.request("POST", "/b", {}, b'{"x": 1}')
        chunked = await client.request("GET", "/chunked", {})
        closing = await client.request("GET", "/close", {})
        after = await client.request("GET", "/c", {})
    finally:
        client.close()
        await server.close()
    assert first.status == 200
    assert first.body == b'{"method": "GET", "auth": "Bearer t", "n": 0}'
    assert second.body == b'{"method": "POST", "auth": null, "n": 8}'
    assert chunked.body == b"part one, part two"
    assert closing.body == b"bye"
    assert after.status == 200
    # the first four on one connection; the server closed it, the fifth on a new one
    assert len(set(peers[:4])) == 1
    assert peers[4] != peers[0]
