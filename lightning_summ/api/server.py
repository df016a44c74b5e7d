"""``lightning_summ serve``: a trained summarizer behind an OpenAI-compatible ``/v1/chat/completions``.

    lightning_summ serve --config configs/quickstart.yaml --ckpt_path <ckpt> [--serve.port 8000]

The last user message of a request is the dialogue; the answer is its summary. Concurrent requests
are collected into batches (up to ``max_batch_size``, waiting at most ``max_wait_ms`` for more) and
decoded together. Past ``max_queue`` waiting requests the server answers 429 with ``Retry-After``.
It listens on loopback unless told otherwise; with ``api_key_env`` set it requires that key as a
Bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Optional

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from lightning.pytorch.utilities import move_data_to_device


class BatchingSummarizer:
    """Queues requests and decodes them in batches on one model."""

    def __init__(self, module, max_batch_size: int = 16, max_wait_ms: float = 10.0, max_queue: int = 256):
        self.module, self.max_batch_size, self.max_wait = module, max_batch_size, max_wait_ms / 1000
        self.max_queue, self.waiting = max_queue, 0
        self.queue: Optional[asyncio.Queue] = None
        self.stats = {"requests": 0, "rejected_429": 0, "batches": 0}

    def summarize_batch(self, dialogues: list[str]) -> list[str]:
        module = self.module
        feats = [dict(module.encode(d, None, for_generation=True), index=i, fname=str(i), references=[], dialogue=d)
                 for i, d in enumerate(dialogues)]
        batch = move_data_to_device(module.collator(for_generation=True)(feats), module.device)
        with torch.no_grad():
            return [cands[0][0] for cands in module.generate_candidates(batch)]

    async def summarize(self, dialogue: str, retry_after: float) -> str:
        if self.waiting >= self.max_queue:
            self.stats["rejected_429"] += 1
            raise HTTPException(429, "too many requests waiting", headers={"Retry-After": f"{retry_after:g}"})
        self.stats["requests"] += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting += 1
        try:
            await self.queue.put((dialogue, future))
            return await future
        finally:
            self.waiting -= 1

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch_size and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout=left))
                except asyncio.TimeoutError:
                    break
            self.stats["batches"] += 1
            try:
                summaries = await loop.run_in_executor(None, self.summarize_batch, [d for d, _ in batch])
            except Exception as e:  # every caller of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), summary in zip(batch, summaries):
                if not future.done():
                    future.set_result(summary)


def create_app(module, model_name: str = "lightning_summ", max_batch_size: int = 16, max_wait_ms: float = 10.0,
               max_queue: int = 256, retry_after: float = 1.0, api_key: Optional[str] = None) -> FastAPI:
    batcher = BatchingSummarizer(module, max_batch_size, max_wait_ms, max_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.queue = asyncio.Queue()  # created inside the server's event loop
        worker = asyncio.create_task(batcher.worker())
        yield
        worker.cancel()

    app = FastAPI(title="lightning_summ", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "lightning_summ"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        if api_key is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(given, api_key):
                raise HTTPException(401, "invalid API key")
        body = await request.json()
        if body.get("stream"):
            raise HTTPException(400, "streaming is not supported")
        users = [m for m in body.get("messages", []) if m.get("role") == "user" and isinstance(m.get("content"), str)]
        if not users or not users[-1]["content"].strip():
            raise HTTPException(400, "the last user message must hold the dialogue")
        dialogue = users[-1]["content"].strip()
        summary = await batcher.summarize(dialogue, retry_after)
        tokenizer = getattr(module, "tokenizer", None)
        count = (lambda t: len(tokenizer(t).input_ids)) if tokenizer is not None else (lambda t: len(t.split()))
        prompt_tokens, completion_tokens = count(dialogue), count(summary)
        return JSONResponse({
            "id": f"chatcmpl-{secrets.token_hex(8)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", model_name),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": summary}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    return app

