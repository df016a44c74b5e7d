"""``speed_vs_hf.py --group kobart``: workloads 1 (fine-tuning) and 2 (beam-4 generation) on the
KoBART architecture (BART-base with the tokenizer's vocabulary and the data's ``#Tag#`` tokens).

Both sides load one saved random-weight model. Training alternates ours/HF for ``--rounds`` timed
rounds after a warm-up round; ``--seq2seq_options`` adds rows of ours with speed options against the
same HF mean. Generation compares each of our settings with HF at the same batch size, text for text.
"""

from __future__ import annotations

from pathlib import Path

import torch

import hf_side
import ours_side
from lightning_summ.io import read_examples
from report import Report, attempt, first_batch, forced_tokens_per_s, linear_params, same_texts, with_rates

BART_BASE = {"model_type": "bart", "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
             "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
             "decoder_ffn_dim": 3072, "max_position_embeddings": 1026}
TINY_BART = {"model_type": "bart", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 1026}
WORKLOAD_TRAIN, WORKLOAD_GENERATE = "1 KoBART fine-tuning", "2 KoBART beam-4 generation"


def seq2seq_options(args) -> dict[str, list[str]]:
    """Our speed options under test for KoBART training, by name (``--seq2seq_options``)."""
    compile_ = ["--model.init_args.compile=true"]
    budget = [f"--data.max_tokens_per_batch={args.seq2seq_token_budget}"]
    step = compile_ + ["--model.init_args.compile_scope=step"]  # the whole loss (graph breaks per layer on 5.17)
    graphs = ["--model.init_args.compile_mode=reduce-overhead"]  # inductor's CUDA graphs
    fill = ["--data.last_batch=fill"]  # every batch 32 rows: one batch shape fewer for the graphs to record
    return {"compile": compile_, "token-budget": budget, "all": compile_ + budget, "step": step,
            "step+graphs": step + graphs, "blocks+graphs": compile_ + graphs, "step+graphs+token-budget": step + graphs + budget,
            "blocks+graphs+fill": compile_ + graphs + fill,
            "unpinned": ["--data.pin_memory=false"]}  # batches from ordinary memory: each copy waits for the GPU


def materialize_seq2seq(args, config: dict) -> dict:
    """One random-weight BART (the tokenizer's vocabulary plus the data's ``#Tag#`` tokens) saved to
    disk, so both sides load identical weights and can be compared text for text."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    from lightning_summ.tags import add_tags_to_tokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    add_tags_to_tokenizer(tok, hf_side.data_tags(args.data))
    spec = dict(config)
    spec.update(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None)
    args.model_dir = str(Path(args.scratch) / "random-bart")
    torch.manual_seed(0)
    model_type = spec.pop("model_type")
    AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model(model_type, **spec)).save_pretrained(args.model_dir)
    tok.save_pretrained(args.model_dir)
    return dict(spec, model_type=model_type)


def flops_per_sample(args, spec: dict) -> tuple[float, float]:
    """Matmul FLOPs per training sample (6 per weight per token, mean truncated lengths of ``--data``)
    and per beam-4 generation of ``--new_tokens`` tokens (2 per weight per token)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    params = linear_params(spec, {"encoder": ("model.encoder",), "decoder": ()})
    examples = read_examples(args.data)
    src = sum(min(len(tok(ex.dialogue).input_ids), 512) for ex in examples) / len(examples)
    tgt = sum(min(len(tok(ex.summaries[0]).input_ids), 100) for ex in examples) / len(examples)
    train_flops = 6 * (params["encoder"] * src + params["decoder"] * tgt)
    gen_flops = 2 * (params["encoder"] * src + params["decoder"] * args.new_tokens * 4)
    return train_flops, gen_flops


def _alternating_rounds(args, train_flops: float) -> dict:
    """Ours and HF trained by turns; round 0 warms up both sides and is not reported; the row is the
    mean of the timed rounds (peak memory: their maximum)."""
    runs = {"ours": [], "hf": []}
    for round_ in range(args.rounds + 1):
        for side, fn in (("ours", ours_side.seq2seq), ("hf", hf_side.seq2seq)):
            result = fn(args, "train", args.batch_size)
            if round_:
                runs[side].append(result)
    mean = {side: {k: sum(r[k] for r in rs) / len(rs) for k in ("samples_per_s", "tokens_per_s")} | {
        "peak_mem_gb": max(r["peak_mem_gb"] or 0 for r in rs), "rounds": [with_rates(r, train_flops) for r in rs]}
        for side, rs in runs.items()}
    return {"ours": with_rates(mean["ours"], train_flops), "hf": with_rates(mean["hf"], train_flops),
            "ratio": round(mean["ours"]["samples_per_s"] / mean["hf"]["samples_per_s"], 2)}


def training_rows(args, report: Report, train_flops: float) -> None:
    """Workload 1: the shipped settings on both sides, then ours with each of ``--seq2seq_options``
    against the same HF mean (no ratio when the HF row failed)."""
    hf_mean = {}

    def train_and_keep() -> dict:
        row = _alternating_rounds(args, train_flops)
        hf_mean.update(row["hf"])
        return row

    attempt(report, WORKLOAD_TRAIN, f"batch {args.batch_size}, bf16, mean of {args.rounds} rounds", train_and_keep)
    for name in args.seq2seq_options:
        def train_with(options=tuple(seq2seq_options(args)[name])) -> dict:
            ours = with_rates(ours_side.seq2seq(args, "train", args.batch_size, options=options), train_flops)
            ratio = round(ours["samples_per_s"] / hf_mean["samples_per_s"], 2) if hf_mean else None  # no HF row
            return {"ours": ours, "hf": hf_mean, "ratio": ratio}
        attempt(report, WORKLOAD_TRAIN, f"ours + {name} ({' '.join(seq2seq_options(args)[name])}); "
                f"HF batch {args.batch_size} as above", train_with)


def generation_rows(args, report: Report, gen_flops: float) -> None:
    """Workload 2: beam 4 at ``--eval_batch_size`` and ``--big_eval_batch_size`` (dynamic, then static
    cache); HF runs once per batch size, before ours (it pays the cold start a user pays)."""
    hf_runs = {}

    def generate(batch: int, static: bool) -> dict:
        if batch not in hf_runs:
            hf_runs[batch] = hf_side.seq2seq(args, "generate", batch)
        hf = hf_runs[batch]
        ours = ours_side.seq2seq(args, "generate", batch, static_cache=static)
        forced_tokens_per_s(args.new_tokens, ours, hf)
        return {"ours": with_rates(ours, gen_flops) | first_batch(ours), "hf": with_rates(hf, gen_flops),
                "ratio": round(ours["samples_per_s"] / hf["samples_per_s"], 2), "same_texts": same_texts(ours, hf)}

    for batch, static in ((args.eval_batch_size, False), (args.big_eval_batch_size, False),
                          (args.big_eval_batch_size, True)):
        attempt(report, WORKLOAD_GENERATE, f"batch {batch}" + (", static cache" if static else ""),
                lambda: generate(batch, static))


def kobart(args, report: Report) -> None:
    """The group: a fresh random-weight model in ``--scratch``, then the parts in ``--kobart_parts``
    (``--seq2seq_options`` needs ``train``: the command line refuses it otherwise)."""
    spec = materialize_seq2seq(args, TINY_BART if args.tiny else BART_BASE)
    train_flops, gen_flops = flops_per_sample(args, spec)
    if "train" in args.kobart_parts:
        training_rows(args, report, train_flops)
    if "generate" in args.kobart_parts:
        generation_rows(args, report, gen_flops)
