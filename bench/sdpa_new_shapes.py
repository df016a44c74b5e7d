"""Cost of the first call of scaled_dot_product_attention on each new shape, per backend.

Generation with a growing key/value cache meets a new attention shape at every step. If a
backend plans per shape (cuDNN attention builds an execution plan), the first batch of each new
batch size pays that for every step. This prints the mean first-call and repeat-call time over
``--steps`` decode-like shapes ([batch*beams, heads, 1, L] with a padding mask), for the default
backend choice and for each backend alone, and saves JSON.

    python bench/sdpa_new_shapes.py --out results/
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F


def timed(fn) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(backends, rows: int, heads: int, dim: int, steps: int, offset: int) -> dict:
    first, again = [], []
    for length in range(offset + 1, offset + steps + 1):
        q = torch.randn(rows, heads, 1, dim, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(rows, heads, length, dim, device="cuda", dtype=torch.bfloat16)
        mask = torch.ones(rows, 1, 1, length, device="cuda", dtype=torch.bool)
        mask[: rows // 2, ..., :2] = False  # left padding in half the rows

        def call():
            if backends is None:
                F.scaled_dot_product_attention(q, k, k, attn_mask=mask)
            else:
                with sdpa_kernel(backends):
                    F.scaled_dot_product_attention(q, k, k, attn_mask=mask)
        first.append(timed(call))
        again.append(timed(call))
    return {"first_call_ms": round(1000 * sum(first) / steps, 3), "repeat_call_ms": round(1000 * sum(again) / steps, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    choices = {"default": None, "cudnn only": [SDPBackend.CUDNN_ATTENTION],
               "efficient only": [SDPBackend.EFFICIENT_ATTENTION],
               "flash+efficient+math": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]}
    report = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
              "cudnn_sdp_enabled": torch.backends.cuda.cudnn_sdp_enabled(), "rows": {}}
    for i, (name, backends) in enumerate(choices.items()):
        try:  # a fresh range of lengths per choice, so no choice sees shapes another one planned
            report["rows"][name] = measure(backends, 128, 16, 64, args.steps, offset=1000 * (i + 1))
        except RuntimeError as error:
            report["rows"][name] = {"error": str(error).splitlines()[0][:200]}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "sdpa_new_shapes.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
