"""Who runs the model for the server: requests from many clients, one model.

- `BatchedTorchEngine` (torch checkpoints): a simple dynamic batcher. One worker thread owns the model; it takes
  every request waiting (up to `max_batch`), runs them as one batch (left-padded prefill, then one batched
  forward per token on a shared KV cache, rows leaving the batch as they finish), and requests that arrive
  meanwhile form the next batch. Each row keeps its own sampling settings, seed, stop strings and incremental
  detokenizer, so a request's text does not depend on what it was batched with.
- `SerialEngine` (llama.cpp, any other backend): a queue; one request at a time, in arrival order, on the
  backend's own `stream_ids` (a llama.cpp context holds one sequence).

Both hand text pieces to a `Generation`, which the server's event loop reads asynchronously. `model_lock` is held
while a batch runs, so other work on the same model (scoring for `logprobs`: `run_locked`) waits its turn.

The queue is bounded: at most `max_queue` requests are in an engine (waiting or generating); `submit` beyond
that raises `EngineBusy` (the server answers 429). A cancelled request (its client went away) is dropped before
it starts, or between two tokens once it runs; `cancelled_requests` counts them.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time

import torch

from core.infer.generate import Usage, left_pad
from core.infer.sampling import SamplingParams, choose_tokens, make_generator
from core.infer.text import TextStream

_END = object()


class EngineBusy(Exception):
    """The engine holds `max_queue` requests already."""


class Generation:
    """One request's output: filled by an engine thread, read by the event loop (`async for p in g.pieces()`)."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, loop: asyncio.AbstractEventLoop,
                 constraint=None):
        self.prompt_ids, self.params = prompt_ids, params
        self.constraint = constraint  # core.infer.constraint: the grammar its tokens are drawn under, or None
        self.usage = Usage(prompt_tokens=len(prompt_ids))
        self.finish_reason: str | None = None
        self.error: BaseException | None = None
        self.token_ids: list[int] | None = None  # the sampled ids, where the engine sees them (torch)
        self._loop, self._queue = loop, asyncio.Queue()
        self._cancelled = threading.Event()

    # ---- engine side (any thread) ---------------------------------------------------------------------
    def put(self, piece: str) -> None:
        if piece:
            self._post(piece)

    def end(self, reason: str) -> None:
        self.finish_reason = reason
        self._post(_END)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._post(_END)

    def _post(self, item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server stopping): nobody is listening any more
            self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # ---- server side (event loop) -----------------------------------------------------------------------
    def cancel(self) -> None:
        """The client went away: the engine drops this request at its next step."""
        self._cancelled.set()

    async def pieces(self):
        while (item := await self._queue.get()) is not _END:
            yield item
        if self.error is not None:
            raise self.error


class _WorkerEngine:
    """A queue of Generations and one daemon thread working through it."""

    def __init__(self, backend, max_queue: int = 512):
        self.backend, self.max_queue = backend, max_queue
        self.largest_batch = 0  # most requests decoded together so far (tests, benchmarks)
        self.pending = 0  # requests submitted and not finished (waiting or generating)
        self.cancelled_requests = 0  # requests that ended because their client went away
        self.model_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=f"{type(self).__name__}", daemon=True)
        self._thread.start()

    def submit(self, prompt_ids: list[int], params: SamplingParams, constraint=None) -> Generation:
        return self.submit_all([prompt_ids], params, constraint)[0]

    def submit_all(self, prompts: list[list[int]], params: SamplingParams, constraint=None) -> list[Generation]:
        """All of them or none: EngineBusy when they do not all fit in the queue. A `constraint` holds one answer,
        so it goes with a single prompt."""
        if constraint is not None and len(prompts) != 1:
            raise ValueError("a constraint holds one answer: submit its prompt alone")
        loop = asyncio.get_running_loop()
        with self._count_lock:
            if self.pending + len(prompts) > self.max_queue:
                raise EngineBusy(f"{self.pending} requests are waiting or generating; this server takes "
                                 f"{self.max_queue} at most")
            self.pending += len(prompts)
        jobs = [Generation(ids, params, loop, constraint) for ids in prompts]
        for job in jobs:
            self._jobs.put(job)
        return jobs

    def run_locked(self, fn, *args):
        """`fn(*args)` while no batch runs (call it from a worker thread, not the event loop)."""
        with self.model_lock:
            return fn(*args)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(10)

    def _loop(self) -> None:
        while (first := self._jobs.get()) is not None:
            batch, closing = [first], False
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    closing = True
                    break
                batch.append(job)
            live = [job for job in batch if not job.cancelled]
            for job in batch:
                if job.cancelled:
                    job.end("cancelled")
            self.largest_batch = max(self.largest_batch, len(live))
            try:
                if live:
                    with self.model_lock:
                        self._run(live)
            except Exception as exc:  # reported to each waiting client; the engine keeps serving
                for job in live:
                    if job.finish_reason is None:
                        job.fail(exc)
            with self._count_lock:
                self.pending -= len(batch)
                self.cancelled_requests += sum(job.finish_reason == "cancelled" for job in batch)
            if closing:
                break

    max_batch = 1

    def _run(self, jobs: list[Generation]) -> None:
        raise NotImplementedError


class SerialEngine(_WorkerEngine):
    """One request at a time on the backend's own decoding loop (llama.cpp: one KV cache per context)."""

    def _run(self, jobs: list[Generation]) -> None:
        [job] = jobs
        stream = self.backend.stream_ids(job.prompt_ids, job.params, job.constraint)
        try:
            for piece in stream:
                if job.cancelled:
                    break
                job.put(piece)
        finally:
            stream.close()
        job.usage = self.backend.usage
        job.end(self.backend.finish_reason or ("cancelled" if job.cancelled else "length"))


class _Row:
    """Per-request decoding state inside a batch."""

    def __init__(self, job: Generation, backend, vocab_size: int):
        p = job.params
        self.job = job
        job.token_ids = []
        self.stream = TextStream(backend.detokenize, stop=p.stop, stop_ids=p.resolved_stop_ids(backend.eos_id))
        self.budget = min(p.max_new_tokens, backend.max_context - len(job.prompt_ids))
        self.generator = make_generator(p.seed)
        self.seen = None
        if p.repetition_penalty != 1.0:
            self.seen = torch.zeros(1, vocab_size, dtype=torch.bool)
            self.seen[0, torch.tensor(job.prompt_ids)] = True
        self.started = time.perf_counter()

    def push(self, logits: torch.Tensor) -> int | None:
        """Sample from this row's logits (1, V); returns the token, or None when the row is finished."""
        job, usage = self.job, self.job.usage
        if job.constraint is not None:
            logits = job.constraint.mask(logits[0].cpu())[None]
        token = int(choose_tokens(logits.cpu(), job.params, self.seen, self.generator)[0])
        usage.completion_tokens += 1
        job.token_ids.append(token)
        job.put(self.stream.push(token))
        if job.constraint is not None and not self.stream.done:
            job.constraint.accept(token)
        if self.seen is not None:
            self.seen[0, token] = True
        if not self.stream.done and usage.completion_tokens >= self.budget:
            job.put(self.stream.finish("length"))
        if self.stream.done or job.cancelled:
            usage.decode_s = time.perf_counter() - self.started
            job.end(self.stream.finish_reason or "cancelled")
            return None
        return token


class BatchedTorchEngine(_WorkerEngine):
    """Dynamic batching for a TorchBackend: requests waiting when a batch starts run together."""

    def __init__(self, backend, max_batch: int = 32, max_queue: int = 512):
        self.max_batch = max_batch
        super().__init__(backend, max_queue)

    @torch.inference_mode()
    def _run(self, jobs: list[Generation]) -> None:
        model = self.backend.model
        device = next(model.parameters()).device
        rows = [_Row(job, self.backend, model.config.vocab_size) for job in jobs]
        prompts = [job.prompt_ids for job in jobs]
        # Equal lengths need no mask: the unmasked causal path is the one single-request decoding takes, so a
        # request alone gives exactly the text `Backend.chat` gives.
        ids, mask = left_pad(prompts, 0, device)
        if all(len(p) == len(prompts[0]) for p in prompts):
            mask = None
        t0 = time.perf_counter()
        out = model(ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
        past, logits = out.past_key_values, out.logits[:, -1].float()
        for row in rows:
            row.job.usage.prefill_s = time.perf_counter() - t0
            row.started = time.perf_counter()
        while rows:
            tokens = [row.push(logits[i:i + 1]) for i, row in enumerate(rows)]
            keep = [i for i, t in enumerate(tokens) if t is not None]
            if not keep:
                return
            if len(keep) < len(rows):  # finished rows leave the batch and its KV cache
                index = torch.tensor(keep, device=device)
                past = [(k[index], v[index]) for k, v in past]
                mask = mask[index] if mask is not None else None
                rows = [rows[i] for i in keep]
            step = torch.tensor([[tokens[i]] for i in keep], dtype=torch.long, device=device)
            if mask is not None:
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
            out = model(step, past_key_values=past, use_cache=True, attention_mask=mask)
            past, logits = out.past_key_values, out.logits[:, -1].float()


def make_engine(backend, max_batch: int = 32, max_queue: int = 512) -> _WorkerEngine:
    """Batched for torch checkpoints, a one-at-a-time queue for everything else (llama.cpp)."""
    from core.infer.backend import TorchBackend

    if isinstance(backend, TorchBackend) and max_batch > 1:
        return BatchedTorchEngine(backend, max_batch, max_queue)
    return SerialEngine(backend, max_queue)
