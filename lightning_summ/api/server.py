"""``lightning_summ serve``: a trained summarizer behind an OpenAI-compatible ``/v1/chat/completions``.

    lightning_summ serve --config configs/quickstart.yaml --ckpt_path <ckpt> [--serve.port 8000]

The last user message of a request is the dialogue; the answer is its summary. Concurrent requests
are collected into batches (up to ``max_batch_size``, waiting at most ``max_wait_ms`` for more) and
decoded together. Past ``max_queue`` waiting requests the server answers 429 with ``Retry-After``.
It listens on loopback unless told otherwise; with ``api_key_env`` set it requires that key as a
Bearer token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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
        batch = move_data_to_device(module.processor.generation_batch(dialogues), module.device)
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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lightning_summ serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt_path", help="checkpoint written by fit (omit for a pretrained model as configured)")
    parser.add_argument("--serve.host", dest="host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--serve.port", dest="port", type=int, default=8000)
    parser.add_argument("--serve.max_batch_size", dest="max_batch_size", type=int, default=16)
    parser.add_argument("--serve.max_wait_ms", dest="max_wait_ms", type=float, default=10.0)
    parser.add_argument("--serve.max_queue", dest="max_queue", type=int, default=256)
    parser.add_argument("--serve.retry_after", dest="retry_after", type=float, default=1.0,
                        help="seconds a rejected (429) client is told to wait")
    parser.add_argument("--serve.api_key_env", dest="api_key_env",
                        help="environment variable holding the key clients must send (no key: open)")
    args, rest = parser.parse_known_args(argv)
    import uvicorn

    module = load_module(rest, args.ckpt_path)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        parser.error(f"--serve.api_key_env names {args.api_key_env}, which is not set")
    app = create_app(module, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                     max_queue=args.max_queue, retry_after=args.retry_after, api_key=key)
    uvicorn.run(app, host=args.host, port=args.port)


def load_module(cli_args: list[str], ckpt_path: Optional[str]):
    """The configured model with the checkpoint's weights, in eval mode, on a GPU when there is one."""
    from lightning_summ.cli import run_cli
    from lightning_summ.export import load_checkpoint

    cli = run_cli(cli_args, run=False)
    module, device = cli.model, cli.trainer.strategy.root_device
    load_checkpoint(module, cli.datamodule, ckpt_path, device=device, precision=str(cli.trainer.precision))
    return module.to(device).eval()
