"""A small OpenAI-compatible server for tests: the real `openai` SDK talks to it via base_url.

It answers /v1/chat/completions (JSON, or server-sent events with `stream: true`, ending with
a usage chunk when asked for one), /v1/moderations and /v1/models/{id}, and records what it was
sent. Tests switch its behaviour with `mode` (ok, error, unauthorized, slow, cut, no_finish) and
`moderation_mode` (ok, error, slow); `models_down` makes the health probe's lookup fail.

The default answer is made from the request so tests can check what the server was told: it
repeats the question, cites every source label ([1], [2], ...) the system prompt offers, and
asks a guiding question when told to act as a Socratic tutor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from typing import Any

from aiohttp import web

CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.moderation_inputs: list[str] = []
        self.mode = "ok"
        self.moderation_mode = "ok"
        # seconds every moderation call takes, and per word in the text (slow upstreams)
        self.moderation_delay = 0.0
        self.moderation_delays: dict[str, float] = {}
        self.moderation_answered = 0  # moderation calls answered so far
        self.models_down = False
        self.reply: str | None = None
        self.slow_seconds = 5.0
        self.chunk_delay = 0.0
        self.include_usage = True
        # moderation flags any input containing one of these (case-insensitive)
        self.flag_words: dict[str, str] = {"flagme": "harassment", "hurtthem": "violence"}
        self.port = _free_port()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_get("/v1/models/{model}", self._model)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stall(self) -> None:
        """Sleep `slow_seconds`, or less if the server is closing (tests end promptly)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.slow_seconds)

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what it answers --------------------------------------------------------------------

    @staticmethod
    def system_prompt(body: dict[str, Any]) -> str:
        return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")

    def answer_for(self, body: dict[str, Any]) -> str:
        if self.reply is not None:
            return self.reply
        question = body["messages"][-1]["content"]
        system = self.system_prompt(body)
        if "flashcard writer" in system:
            return self.flashcards(system, question)
        if "Socratic tutor" in system:
            return f"Good question. What do you already know about {question[:40]}?"
        labels = re.findall(r"^\[(\d+)\] ", system, re.MULTILINE)
        answer = f"Here is what I can tell you about {question[:60]}."
        if labels:
            answer += " See " + " and ".join(f"[{n}]" for n in labels) + "."
        return answer

    @staticmethod
    def flashcards(system: str, material: str) -> str:
        """Deck generation: one card per "term: definition" line of the material (at most the
        number asked for), as a JSON array wrapped in a code fence, as models often answer."""
        wanted = re.search(r"at most (\d+) flashcards", system)
        limit = int(wanted.group(1)) if wanted else 10
        cards = []
        for line in material.splitlines():
            term, sep, meaning = line.partition(": ")
            if sep and term.strip() and meaning.strip():
                cards.append({"front": f"What is {term.strip()}?", "back": meaning.strip(),
                              "tags": ["generated", "Generated"]})  # fmt: skip
        if not cards:
            cards = [{"front": f"Summarise: {material[:40]}", "back": material[:200], "tags": []}]
        return "Here are your cards:\n```json\n" + json.dumps(cards[:limit]) + "\n```"

    def _usage(self, body: dict[str, Any], answer: str) -> dict[str, int]:
        prompt = sum(tokens(m["content"]) for m in body["messages"])
        completion = tokens(answer)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def _failure(self, request: web.Request) -> web.StreamResponse | None:
        if self.mode == "error":
            return web.json_response(
                {"error": {"message": "the model is overloaded", "type": "server_error"}},
                status=500,
            )
        if self.mode == "unauthorized":
            return web.json_response(
                {"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401
            )
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        failed = await self._failure(request)
        if failed is not None:
            return failed
        answer = self.answer_for(body)
        if self.mode == "slow" and not body.get("stream"):
            await self._stall()
        if not body.get("stream"):
            if self.mode == "cut":
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            return web.json_response(
                {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": self._usage(body, answer),
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = re.findall(r"\S+\s*", answer)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": ""}))
        for i, piece in enumerate(pieces):
            if self.mode == "cut" and i == 2:
                assert request.transport is not None
                request.transport.close()
                return response
            if self.mode == "slow" and i == 1:
                await self._stall()
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await response.write(chunk({"content": piece}))
        if self.mode != "no_finish":
            await response.write(chunk({}, "stop"))
            options = body.get("stream_options") or {}
            if self.include_usage and options.get("include_usage"):
                usage = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [],
                    "usage": self._usage(body, answer),
                }
                await response.write(f"data: {json.dumps(usage)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _moderations(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = body["input"] if isinstance(body["input"], str) else " ".join(body["input"])
        self.moderation_inputs.append(text)
        if self.moderation_mode == "error":
            return web.json_response({"error": {"message": "down", "type": "x"}}, status=503)
        if self.moderation_mode == "slow":
            await self._stall()
        delay = max(
            [self.moderation_delay]
            + [d for word, d in self.moderation_delays.items() if word in text.lower()]
        )
        if delay > 0:
            await asyncio.sleep(delay)
        self.moderation_answered += 1
        flagged = {cat for word, cat in self.flag_words.items() if word in text.lower()}
        return web.json_response(
            {
                "id": "modr-test",
                "model": "omni-moderation-latest",
                "results": [
                    {
                        "flagged": bool(flagged),
                        "categories": {c: c in flagged for c in CATEGORIES},
                        "category_scores": {c: 0.99 if c in flagged else 0.01 for c in CATEGORIES},
                        "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
                    }
                ],
            }
        )

    async def _model(self, request: web.Request) -> web.Response:
        if self.models_down:
            return web.json_response({"error": {"message": "down", "type": "x"}}, status=503)
        return web.json_response(
            {"id": request.match_info["model"], "object": "model", "created": 0, "owned_by": "t"}
        )
