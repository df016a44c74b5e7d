"""``lightning_summ serve``: a trained summarizer behind an OpenAI-compatible ``/v1/chat/completions``.

    lightning_summ serve --config configs/quickstart.yaml --ckpt_path <ckpt> [--serve.port 8000]

The last user message of a request is the dialogue; the answer is its summary. Concurrent requests
are collected into batches (up to ``max_batch_size``, waiting at most ``max_wait_ms`` for more) and
decoded together. Past ``max_queue`` waiting requests the server answers 429 with ``Retry-After``.
It listens on loopback unless told otherwise; with ``api_key_env`` set it requires that key as a
Bearer token. Every option other than ``--serve.*`` and ``--ckpt_path`` configures the model as for
``predict`` (``--config``, ``--model.*``).
"""

from __future__ import annotations

import os
from typing import Optional

from lightning_summ.commands._args import split_options, verb_parser
from lightning_summ.errors import ConfigError


def serve_options(host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 16, max_wait_ms: float = 10.0,
                  max_queue: int = 256, retry_after: float = 1.0, api_key_env: Optional[str] = None,
                  max_body_bytes: int = 1_000_000) -> dict:
    """Options of ``serve`` (``--serve.*``).

    Args:
        host: bind address (loopback by default).
        port: TCP port.
        max_batch_size: most requests decoded together.
        max_wait_ms: longest a request waits for others to join its batch.
        max_queue: waiting requests past which the server answers 429.
        retry_after: seconds a rejected (429) client is told to wait.
        api_key_env: environment variable holding the key clients must send (none: open).
        max_body_bytes: largest request body in bytes (larger: 413).
    """
    return dict(locals())


def load_module(cli_args: list[str], ckpt_path: Optional[str]):
    """The configured model with the checkpoint's weights, in eval mode, on the Trainer's device
    (a GPU when there is one) and for its precision."""
    from lightning_summ.commands.lightning import run_cli
    from lightning_summ.models.base import SummarizerBase, load_checkpoint

    cli = run_cli(cli_args, run=False)
    module, device = cli.model, cli.trainer.strategy.root_device
    if not isinstance(module, SummarizerBase):
        raise ConfigError(f"serve runs a trained model (Seq2SeqSummarizer, CausalLMSummarizer), not a "
                          f"{type(module).__name__}")
    load_checkpoint(module, cli.datamodule, ckpt_path, device=device, precision=str(cli.trainer.precision))
    module = module.to(device).eval()
    module.enter_inference_weights()  # merged adapters / dequantized base, as predict's hooks do
    return module


def main(args: list[str]) -> None:
    own, rest = split_options(args, ("--serve.", "--ckpt_path", "-h", "--help"))
    parser = verb_parser("serve", __doc__)
    parser.add_argument("--ckpt_path", type=Optional[str], help="checkpoint written by fit (omit: the model as configured)")
    parser.add_function_arguments(serve_options, "serve")
    parsed = parser.parse_args(own)
    options = serve_options(**parsed.serve.as_dict())
    key = os.environ.get(options["api_key_env"]) if options["api_key_env"] else None
    if options["api_key_env"] and not key:
        raise ConfigError(f"--serve.api_key_env names {options['api_key_env']}, which is not set")
    import uvicorn

    from lightning_summ.api.server import create_app

    module = load_module(rest, parsed.ckpt_path)
    app = create_app(module, max_batch_size=options["max_batch_size"], max_wait_ms=options["max_wait_ms"],
                     max_queue=options["max_queue"], retry_after=options["retry_after"], api_key=key,
                     max_body_bytes=options["max_body_bytes"])
    uvicorn.run(app, host=options["host"], port=options["port"])
