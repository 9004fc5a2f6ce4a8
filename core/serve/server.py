"""OpenAI-compatible HTTP server on FastAPI + uvicorn (`minimind serve`).

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions (both with `stream`: Server-Sent
Events, `data: {...}` chunks ending with `data: [DONE]`), GET /health. Chat requests may carry `tools` (rendered
into the prompt by the chat template), `tool` turns and assistant `tool_calls`, and `open_thinking` /
`chat_template_kwargs.enable_thinking`; answers are split by `core.infer.chat_output` into `content`,
`reasoning_content` and `tool_calls` (finish_reason "tool_calls"). Completions take a batch of prompts (strings or
token ids), `echo`, `logprobs` and `max_tokens: 0` as OpenAI's legacy API does (core/serve/logprobs.py), which is
what lm-evaluation-harness's `local-completions` model sends.

Many clients at once: the event loop only parses, validates and streams; an engine (core/serve/engines.py)
runs the model on its own thread, batching torch requests dynamically and queueing llama.cpp ones.
Every failure is answered with an OpenAI-style JSON error and a 4xx status (a bug of ours: 500); bodies are
read and validated by hand (core/serve/body.py), not by FastAPI's models, so the error shapes and limits stay
exactly ours.

One client cannot hold the server (limits in core/config/serve.py): requests beyond the engine's queue get
429; a client that hangs up has its work cancelled, streamed or not; a completions request with `logprobs`
scores a bounded number of tokens; connections are capped and must send each request within a deadline
(core/serve/connection.py). Only loopback Host names and, with `api_key`, authenticated clients are answered
(core/serve/access.py).

    server = make_server(open_backend("runs/sft-1"), "127.0.0.1", 8998)
    server.serve_forever()
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
import traceback

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.infer.backend_base import Backend
from core.infer.chat_output import ChatOutput, ChatOutputParser
from core.infer.generate import Usage
from core.infer.sampling import SamplingParams
from core.serve import protocol as p
from core.serve.access import AccessGuard, accepted_hosts
from core.serve.body import read_json
from core.serve.connection import h11_protocol
from core.serve.engines import EngineBusy, Generation, make_engine
from core.serve.logprobs import logprobs_body
from core.config.serve import ServerOptions
from core.serve.protocol import APIError

ROUTES = {"/v1/models": "GET", "/health": "GET", "/v1/chat/completions": "POST", "/v1/completions": "POST"}


class ClientGone(Exception):
    """The client hung up before its answer was ready; the work for it has been cancelled."""


# ---------------------------------------------------------------------------------------------- requests
def check_prompt(backend: Backend, prompt_ids: list[int], param: str, room: int = 1) -> None:
    """`room`: tokens the completion needs after the prompt (0: the prompt is only scored)."""
    if not prompt_ids:
        raise APIError(400, "the prompt is empty; send at least one character", param=param, code="invalid_value")
    if len(prompt_ids) + room > backend.max_context:
        raise APIError(400, f"the prompt has {len(prompt_ids)} tokens; this model's context holds "
                            f"{backend.max_context}; shorten it", param=param, code="context_length_exceeded")


def check_scored_tokens(req: p.CompletionRequest, prompt_ids: list[list[int]], sampling: SamplingParams,
                        max_context: int, limit: int) -> None:
    """A completions request with `logprobs` runs every prompt and completion token through the model once more
    and answers 1 + logprobs numbers for each echoed or generated one: bound that work, summed over the batch."""
    if req.logprobs is None:
        return
    room = [min(sampling.max_new_tokens, max_context - len(ids)) if req.generates() else 0 for ids in prompt_ids]
    positions = sum(map(len, prompt_ids)) + sum(room)
    scored = positions * (1 + req.logprobs)
    if scored > limit:
        raise APIError(400, f"this request scores {scored:,} tokens ({len(prompt_ids)} prompts, {positions:,} "
                            f"positions x (1 + logprobs {req.logprobs})), over this server's limit of {limit:,} "
                            "scored tokens per request (--max-scored-tokens); send fewer or shorter prompts, fewer "
                            "logprobs or a smaller max_tokens", param="prompt", code="scored_tokens_exceeded")


def submit(engine, prompts: list[list[int]], sampling: SamplingParams, constraint=None) -> list[Generation]:
    try:
        return engine.submit_all(prompts, sampling, constraint)
    except EngineBusy as exc:
        raise APIError(429, f"the server is busy: {exc}; retry shortly", type_="rate_limit_error",
                       code="queue_full", headers={"Retry-After": "1"}) from None


async def until_disconnected(request: Request) -> None:
    """Returns once the client has hung up. Call it after the body is read: uvicorn's `receive` then waits for
    nothing but the disconnect (or the response's end)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work):
    """`await work` (a coroutine), unless the client hangs up first: then `work` is cancelled, its `finally`
    cancels its generations (the engine drops them between two tokens), and ClientGone is raised. A streamed
    answer needs none of this: Starlette cancels the stream itself when the client leaves."""
    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is cancelled
        watch.cancel()
        task.cancel()  # no-op once finished
    if task in done:
        return task.result()
    raise ClientGone


def chat_prompt(backend: Backend, req: p.ChatCompletionRequest):
    """(the prompt, the constraint its answer is decoded under, or None)."""
    messages = [m.as_template_message() for m in req.messages]
    fmt = req.answer_format()
    try:
        prompt = backend.render_chat(messages, fmt.rendered_tools, req.think())
    except (ValueError, TypeError, LookupError) as exc:  # jinja errors are ValueError/TypeError subclasses
        raise APIError(400, f"messages: this model's chat template cannot render them ({exc})",
                       param="messages", code="invalid_value") from None
    except Exception as exc:
        if type(exc).__module__.startswith("jinja2"):
            raise APIError(400, f"messages: this model's chat template cannot render them ({exc})",
                           param="messages", code="invalid_value") from None
        raise
    if not fmt.constrains:
        return prompt, None
    try:
        return prompt, backend.constraint(fmt, ChatOutputParser.for_prompt(prompt).state == "reasoning")
    except ValueError as exc:
        param = "response_format" if fmt.json_schema is not None and not fmt.callable_tools else "tools"
        raise APIError(400, f"{param}: {exc}", param=param, code="invalid_value") from None


# ---------------------------------------------------------------------------------------------- the app
def create_app(backend: Backend, engine, options: ServerOptions, hosts: frozenset[str] | None) -> FastAPI:
    """`hosts`: the Host names answered (None: any), see core/serve/access.py."""
    app = FastAPI(title="MiniMind", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    app.add_middleware(AccessGuard, hosts=hosts, api_key=options.api_key)

    @app.exception_handler(APIError)
    async def _api_error(request, exc: APIError):
        return exc.response()

    @app.exception_handler(ClientGone)
    async def _gone(request, exc: ClientGone):  # nobody reads it; 499 as nginx logs a client that left
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        path = request.url.path
        if exc.status_code == 405 or (exc.status_code == 404 and path in ROUTES):
            return APIError(405, f"{request.method} is not allowed on {path}", code="method_not_allowed").response()
        if exc.status_code == 404:
            return APIError(404, f"unknown path {path!r}; this server offers /v1/models, /v1/chat/completions "
                                 "and /v1/completions", code="not_found").response()
        return APIError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):  # a bug of ours: answer 500, keep serving
        traceback.print_exception(exc, file=sys.stderr)
        return APIError(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error").response()

    def backend_for(model: str) -> Backend:
        if model != backend.name:
            raise APIError(404, f"the model {model!r} does not exist here; this server serves "
                                f"{backend.name!r} (see GET /v1/models)", param="model", code="model_not_found")
        return backend

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": backend.name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "created": 0,
                                            "owned_by": "minimind"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = p.parse(p.ChatCompletionRequest, await read_json(request))
        backend_for(req.model)
        sampling = req.sampling(backend.max_context)

        def prepare():
            prompt, constraint = chat_prompt(backend, req)
            ids = backend.tokenize(prompt)
            check_prompt(backend, ids, "messages")
            return prompt, ids, constraint

        prompt, prompt_ids, constraint = await run_in_threadpool(prepare)
        [gen] = submit(engine, [prompt_ids], sampling, constraint)
        parser = ChatOutputParser.for_prompt(prompt)
        if req.stream:
            return event_stream(chat_events(gen, parser, req), gen)
        output = await unless_disconnected(request, chat_output(gen, parser))
        return JSONResponse(p.chat_completion(p.new_id("chatcmpl"), backend.name, output, gen.finish_reason,
                                              gen.usage))

    async def chat_output(gen: Generation, parser: ChatOutputParser) -> ChatOutput:
        output = ChatOutput()
        try:
            async for piece in gen.pieces():
                for delta in parser.feed(piece):
                    output.add(delta)
        finally:
            gen.cancel()  # no-op once finished; stops the work when this is cancelled
        for delta in parser.finish():
            output.add(delta)
        return output

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = p.parse(p.CompletionRequest, await read_json(request))
        backend_for(req.model)
        sampling = req.sampling(backend.max_context)
        prompts = req.prompt_values()
        room = 1 if req.generates() else 0
        prompt_ids = [await completion_prompt(prompt, room) for prompt in prompts]
        check_scored_tokens(req, prompt_ids, sampling, backend.max_context, options.max_scored_tokens)
        if req.stream:
            [gen] = submit(engine, prompt_ids[:1], sampling)
            return event_stream(completion_events(gen, req), gen)
        gens = submit(engine, prompt_ids, sampling) if room else [None] * len(prompt_ids)  # batched by the engine
        choices = await unless_disconnected(request, completion_choices(req, prompts, prompt_ids, gens))
        usage = Usage(prompt_tokens=sum(map(len, prompt_ids)),
                      completion_tokens=sum(gen.usage.completion_tokens for gen in gens if gen))
        return JSONResponse(p.text_completions(p.new_id("cmpl"), backend.name, choices, usage))

    async def completion_choices(req, prompts, prompt_ids, gens: list[Generation | None]) -> list[dict]:
        stop = threading.Event()  # set when this is cancelled: the scoring thread stops between two choices

        def choices(texts):
            rows = []
            for row in zip(prompts, prompt_ids, gens, texts):
                if stop.is_set():
                    return rows
                rows.append(completion_choice(req, *row))
            return rows

        try:
            texts = [("".join([piece async for piece in gen.pieces()]) if gen else "") for gen in gens]
            return await run_in_threadpool(choices, texts)
        finally:
            stop.set()
            for gen in gens:
                if gen is not None:
                    gen.cancel()

    async def completion_prompt(prompt: str | list[int], room: int) -> list[int]:
        if isinstance(prompt, list):
            bad = [t for t in prompt if not 0 <= t < backend.vocab_size]
            if bad:
                raise APIError(400, f"prompt: token id {bad[0]} is outside the vocabulary "
                                    f"(0..{backend.vocab_size - 1})", param="prompt", code="invalid_value")
            ids = prompt
        else:
            ids = await run_in_threadpool(backend.tokenize, prompt)
        check_prompt(backend, ids, "prompt", room)
        return ids

    def completion_choice(req, prompt, ids: list[int], gen: Generation | None, text: str) -> dict:
        """One prompt's choice: its text (after the prompt when `echo`) and, when asked, its log-probs."""
        prompt_text = prompt if isinstance(prompt, str) else backend.detokenize(ids)
        choice = {"text": (prompt_text if req.echo else "") + text, "logprobs": None,
                  "finish_reason": gen.finish_reason if gen else "length"}
        if req.logprobs is not None:
            start, offset = (0, 0) if req.echo else (len(ids), len(prompt_text))
            try:
                choice["logprobs"] = engine.run_locked(logprobs_body, backend, ids + completion_ids(gen, text),
                                                       start, req.logprobs, offset)
            except NotImplementedError as exc:
                raise APIError(400, f"logprobs: {exc}", param="logprobs", code="invalid_value") from None
        return choice

    def completion_ids(gen: Generation | None, text: str) -> list[int]:
        """The completion's token ids: as sampled (stop ids dropped) when they spell `text`, else `text` re-read
        (a stop string cut the text, or the engine does not report ids)."""
        if gen is None:
            return []
        ids = list(gen.token_ids or [])
        stops = gen.params.resolved_stop_ids(backend.eos_id)
        while ids and ids[-1] in stops:
            ids.pop()
        return ids if gen.token_ids is not None and backend.detokenize(ids) == text else backend.tokenize(text)

    def include_usage(req) -> bool:
        return req.stream_options is not None and req.stream_options.include_usage

    async def chat_events(gen: Generation, parser: ChatOutputParser, req):
        cid, name, calls = p.new_id("chatcmpl"), backend.name, 0
        yield p.chat_chunk(cid, name, {"role": "assistant", "content": ""})

        def chunks(deltas):
            nonlocal calls
            for delta in deltas:
                yield p.chat_chunk(cid, name, p.chat_delta(delta, calls))
                calls += delta.kind == "tool_call"

        async for piece in gen.pieces():
            for chunk in chunks(parser.feed(piece)):
                yield chunk
        for chunk in chunks(parser.finish()):
            yield chunk
        yield p.chat_chunk(cid, name, {}, p.chat_finish_reason(gen.finish_reason, calls > 0), gen.usage)
        if include_usage(req):
            yield p.chat_chunk(cid, name, {}, usage=gen.usage, no_choices=True)

    async def completion_events(gen: Generation, req):
        cid, name = p.new_id("cmpl"), backend.name
        async for piece in gen.pieces():
            yield p.text_completion(cid, name, piece, None)
        yield p.text_completion(cid, name, "", gen.finish_reason, gen.usage)
        if include_usage(req):
            yield {**p.text_completion(cid, name, "", None, gen.usage), "choices": []}

    def event_stream(events, gen: Generation) -> StreamingResponse:
        async def sse():
            try:
                async for body in events:
                    yield b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"
                yield b"data: [DONE]\n\n"
            except Exception as exc:  # headers are sent: report in-band, as OpenAI does
                traceback.print_exception(exc, file=sys.stderr)
                body = APIError(500, f"generation failed: {exc}", type_="server_error").body()
                yield b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"
            finally:  # also when the client hung up (the task is cancelled): the engine drops the request
                gen.cancel()
                await events.aclose()

        return StreamingResponse(sse(), media_type="text/event-stream; charset=utf-8",
                                 headers={"Cache-Control": "no-cache"})

    return app


# ---------------------------------------------------------------------------------------------- the server
class MiniMindServer:
    """A bound socket, the app, its engine and a uvicorn server; `serve_forever()` or `start_background()`."""

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 8998, verbose: bool = False,
                 max_batch: int = 32, options: ServerOptions | None = None):
        self.backend, self.verbose = backend, verbose
        self.options = options = options or ServerOptions()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(2048)
        except OSError:
            self.socket.close()
            raise
        self.server_address = self.socket.getsockname()
        self.engine = make_engine(backend, max_batch, options.max_queue)
        self.app = create_app(backend, self.engine, options, accepted_hosts(options, host))
        self.http_protocol = h11_protocol(options.read_timeout)
        config = uvicorn.Config(self.app, http=self.http_protocol, ws="none", lifespan="off", loop="asyncio",
                                log_level="info" if verbose else "warning", access_log=verbose,
                                timeout_graceful_shutdown=3, limit_concurrency=options.max_connections,
                                timeout_keep_alive=options.keep_alive_timeout)
        self._uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        """Serve until Ctrl+C / SIGTERM (in the main thread) or `shutdown()`."""
        self._uvicorn.run(sockets=[self.socket])

    def start_background(self) -> threading.Thread:
        """Serve on a daemon thread (tests, the studio); stop with `shutdown()` then `server_close()`."""
        self._thread = threading.Thread(target=self.serve_forever, name="minimind-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._thread

    def shutdown(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(15)

    def server_close(self) -> None:
        self.engine.close()
        self.socket.close()


def make_server(backend: Backend, host: str = "127.0.0.1", port: int = 8998, verbose: bool = False,
                max_batch: int = 32, options: ServerOptions | None = None) -> MiniMindServer:
    """Bind (port 0 picks a free one: read `server.server_address`) without serving yet. `max_batch`: most
    torch requests decoded together (1 = one at a time); `options`: limits and access (core/config/serve.py)."""
    return MiniMindServer(backend, host, port, verbose, max_batch, options)
