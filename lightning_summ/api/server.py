"""``lightning_summ serve``: a trained summarizer behind an OpenAI-compatible ``/v1/chat/completions``.

    lightning_summ serve --config configs/quickstart.yaml --ckpt_path <ckpt> [--serve.port 8000]

A request holds one user message, the dialogue; the answer is its summary (``max_tokens`` caps its
length below the model's ``generation.max_new_tokens``). Concurrent requests are collected into
batches (up to ``max_batch_size``, waiting at most ``max_wait_ms`` for more) and decoded together
on one worker thread, so tokenisation and generation never block the event loop. Past ``max_queue``
waiting requests the server answers 429 with ``Retry-After``; bodies over ``max_body_bytes`` get
413. Every refusal is a 4xx in OpenAI's error shape naming the field. It listens on loopback unless
told otherwise; with ``api_key_env`` set it requires ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from lightning.pytorch.utilities import move_data_to_device
from starlette.exceptions import HTTPException as StarletteHTTPException

from lightning_summ.api.chat_request import ChatRequest, RequestError, error_body, parse_body, validate

log = logging.getLogger("lightning_summ.serve")


@dataclasses.dataclass
class Answer:
    summary: str
    prompt_tokens: int
    completion_tokens: int


class BatchingSummarizer:
    """Queues requests and decodes them in batches on one model, on one worker thread."""

    def __init__(self, module, max_batch_size: int = 16, max_wait_ms: float = 10.0, max_queue: int = 256):
        self.module, self.max_batch_size, self.max_wait = module, max_batch_size, max_wait_ms / 1000
        self.max_queue, self.waiting = max_queue, 0
        self.queue: Optional[asyncio.Queue] = None
        # One thread: batches are decoded one after another (the model's generation settings are
        # swapped per batch), and the event loop only waits for them.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="lightning_summ-generate")
        self.stats = {"requests": 0, "rejected_429": 0, "batches": 0}

    def make_batch(self, dialogues: list[str]) -> dict:
        """The model batch for ``dialogues``: the one place the server builds features."""
        module = self.module
        return move_data_to_device(module.processor.generation_batch(dialogues), module.device)

    def summarize_batch(self, dialogues: list[str], settings: tuple = ()) -> list[Answer]:
        """Summaries of ``dialogues`` decoded together with the model's generation settings updated
        by ``settings`` (``ChatRequest.settings``: e.g. a smaller ``max_new_tokens``)."""
        module, batch = self.module, self.make_batch(dialogues)
        with self._generation(dict(settings)), module.inference_context(), torch.no_grad():
            summaries = [cands[0][0] for cands in module.generate_candidates(batch)]
        prompt_tokens = batch["attention_mask"].sum(1).tolist()
        tokenizer = module.tokenizer
        return [Answer(s, int(p), len(tokenizer(s, add_special_tokens=False).input_ids))
                for s, p in zip(summaries, prompt_tokens)]

    @contextlib.contextmanager
    def _generation(self, overrides: dict):
        original = self.module.generation
        if "max_new_tokens" in overrides:  # a shorter cap than min_new_tokens would be contradictory
            overrides.setdefault("min_new_tokens", min(original.min_new_tokens, overrides["max_new_tokens"]))
        self.module.generation = dataclasses.replace(original, **overrides)
        try:
            yield
        finally:
            self.module.generation = original

    async def summarize(self, request: ChatRequest, retry_after: float) -> Answer:
        if self.waiting >= self.max_queue:
            self.stats["rejected_429"] += 1
            raise RequestError(429, "too many requests waiting; retry later", code="rate_limit_exceeded",
                               kind="rate_limit_error", headers={"Retry-After": f"{retry_after:g}"})
        self.stats["requests"] += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting += 1
        try:
            await self.queue.put((request, future))
            return await future
        finally:
            self.waiting -= 1

    async def _collect(self) -> list:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch_size and (left := deadline - loop.time()) > 0:
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), timeout=left))
            except asyncio.TimeoutError:
                break
        return batch

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            groups: dict[tuple, list] = {}  # requests asking for different settings are decoded apart
            for request, future in batch:
                groups.setdefault(request.settings, []).append((request, future))
            for settings, group in groups.items():
                self.stats["batches"] += 1
                try:
                    answers = await loop.run_in_executor(self.executor, self.summarize_batch,
                                                         [r.dialogue for r, _ in group], settings)
                except Exception as e:  # every caller of the batch gets the error (a 500)
                    log.error("generation failed for a batch of %d: %s: %s", len(group), type(e).__name__, e)
                    answers = [e] * len(group)
                for (_, future), answer in zip(group, answers):
                    if future.done():  # the client went away
                        continue
                    future.set_exception(answer) if isinstance(answer, Exception) else future.set_result(answer)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before reading them when the length is declared."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        status = 413 if declared.isdigit() else 400
        raise RequestError(status, f"Content-Length: the body may hold at most {limit} bytes, got {declared[:20]}",
                           param="Content-Length", code="request_too_large" if status == 413 else None)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request body may hold at most {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def check_key(header: Optional[str], api_key: str) -> None:
    """Accept only ``Authorization: Bearer <key>`` (any case of the scheme), compared in constant time."""
    scheme, _, given = (header or "").strip().partition(" ")
    # Starlette decodes header bytes as latin-1: re-encoding gives the bytes the client sent.
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode("latin-1"),
                                                                api_key.encode("utf-8")):
        raise RequestError(401, "Authorization: send 'Authorization: Bearer <key>' with a valid key",
                           param="Authorization", code="invalid_api_key")


def completion(model_name: str, answer: Answer) -> dict:
    return {
        "id": f"chatcmpl-{secrets.token_hex(8)}", "object": "chat.completion", "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.summary}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
                  "total_tokens": answer.prompt_tokens + answer.completion_tokens},
    }


def add_error_handlers(app: FastAPI) -> None:
    """Every error leaves in OpenAI's shape: refusals as their 4xx, anything unexpected as a logged 500."""

    @app.exception_handler(RequestError)
    async def refused(request: Request, e: RequestError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)  # unknown paths, wrong methods
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {e.detail}", "invalid_request_error"),
                            status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.error("internal error on %s: %s: %s", request.url.path, type(e).__name__, e)
        return JSONResponse(error_body("internal server error (logged on the server)", "server_error"),
                            status_code=500)


def max_tokens_limit(module) -> int:
    """The most tokens any request may ask for: the model's context when it says one."""
    config = getattr(getattr(module, "model", None), "config", None)
    return int(getattr(config, "max_position_embeddings", None) or 2 ** 31 - 1)


def create_app(module, model_name: str = "lightning_summ", max_batch_size: int = 16, max_wait_ms: float = 10.0,
               max_queue: int = 256, retry_after: float = 1.0, api_key: Optional[str] = None,
               max_body_bytes: int = 1_000_000) -> FastAPI:
    batcher = BatchingSummarizer(module, max_batch_size, max_wait_ms, max_queue)
    # Read once: the worker thread swaps module.generation per batch, the caps must not follow it.
    generation, limit = module.generation, max_tokens_limit(module)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.queue = asyncio.Queue()  # created inside the server's event loop
        worker = asyncio.create_task(batcher.worker())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="lightning_summ", lifespan=lifespan)
    app.state.batcher = batcher
    add_error_handlers(app)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "lightning_summ"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        if api_key is not None:
            check_key(request.headers.get("authorization"), api_key)
        body = parse_body(await read_body(request, max_body_bytes))
        chat = validate(body, model_name, generation, limit)
        try:
            answer = await batcher.summarize(chat, retry_after)
        except RequestError:
            raise
        except Exception:  # already logged by the worker; the client learns no internals
            return JSONResponse(error_body("internal server error (logged on the server)", "server_error"),
                                status_code=500)
        return JSONResponse(completion(model_name, answer))

    return app

