"""Hugging Face's side of ``speed_vs_hf.py``: what a user of transformers + peft writes.

* seq2seq: ``Seq2SeqTrainer`` (length grouping, fused AdamW, bf16) and ``Seq2SeqTrainer.predict``
  with ``predict_with_generate``;
* causal: ``Trainer`` on a peft model (QLoRA through ``BitsAndBytesConfig`` +
  ``prepare_model_for_kbit_training``, or bf16 LoRA), and a plain batched ``model.generate`` loop
  with left padding for generation (the Trainer has no generation for decoder-only models).

Inputs are the same token ids as ours (the causal side reuses our prompt formatting so that both
models see identical prompts); only the training/generation loop differs.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path

import torch

from common import peak_gb, reset_peak, sync
from lightning_summ.io import read_examples
from lightning_summ.data.datamodule import SummarizationDataModule


def data_tags(train_path: str) -> list[str]:
    """The ``#Tag#`` tokens ours registers for this training file (the DataModule's own rule)."""
    from lightning_summ.processing import SummaryProcessor

    return SummarizationDataModule(SummaryProcessor(), train_path=train_path).fit_processor().tags


def prompt_formatter(args, settings: dict):
    """Our causal processor with the data's tags, used only to turn examples into token ids: both
    sides then see the same prompts (the generation budget is our default max_new_tokens)."""
    from lightning_summ.models.settings import GenerationSettings
    from lightning_summ.processing import CausalProcessor

    formatter = CausalProcessor(args.model_dir, max_length=settings["max_length"],
                                max_new_tokens=GenerationSettings().max_new_tokens)
    formatter.fit_tags(extra=data_tags(args.data))
    return formatter


def length_grouping() -> dict:
    """Length grouping: `group_by_length=True` in older transformers, a sampling strategy in newer ones."""
    from transformers import Seq2SeqTrainingArguments

    if "train_sampling_strategy" in inspect.signature(Seq2SeqTrainingArguments).parameters:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def dataset_order(label_ids, features: list[dict]) -> list[int]:
    """Which dataset row each row of ``Trainer.predict``'s output is, found from the labels it returns
    beside the predictions. In transformers 5, a Trainer with ``train_sampling_strategy=
    "group_by_length"`` length-groups (and shuffles) ``predict``'s rows too, so its outputs are not in
    dataset order (bench/NOTES.md, "Time to quality")."""
    rows_of: dict[tuple, list[int]] = {}
    for i, feature in enumerate(features):
        rows_of.setdefault(tuple(feature["labels"]), []).append(i)
    return [rows_of[tuple(int(t) for t in row if t != -100)].pop(0) for row in label_ids]


def in_dataset_order(items: list, order: list[int]) -> list:
    """``items`` (in ``predict``'s output order) put back in dataset order."""
    position = {row: i for i, row in enumerate(order)}
    return [items[position[row]] for row in range(len(items))]


def _training_args(args, out: str, batch_size: int, accumulate: int = 1, **extra):
    from transformers import Seq2SeqTrainingArguments

    cuda = torch.cuda.is_available()
    grouping = length_grouping()
    steps = args.steps + args.warmup
    return Seq2SeqTrainingArguments(
        output_dir=out, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulate,
        max_steps=steps, bf16=cuda, **grouping, optim="adamw_torch_fused" if cuda else "adamw_torch",
        lr_scheduler_type="cosine", warmup_steps=max(1, steps // 10), max_grad_norm=1.0, logging_steps=10**6,
        save_strategy="no", report_to=[], dataloader_num_workers=0, disable_tqdm=True, **extra)


class _Counter:
    """A collator wrapper that counts real (non-pad) tokens, as ours does."""

    def __init__(self, collate):
        self.collate, self.tokens = collate, 0

    def __call__(self, features):
        batch = self.collate(features)
        # DataCollatorWithFlattening returns no mask: one row of real tokens only
        self.tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        if batch.get("labels") is not None and "decoder_input_ids" in batch:  # seq2seq: target tokens too
            self.tokens += int((batch["labels"] != -100).sum())
        return batch


def _train(trainer, counter: _Counter, args, samples_per_step: int, base: int) -> dict:
    """Run ``trainer.train()`` and time the optimizer steps after warm-up, between step ends, as
    ``SpeedMonitor`` times ours: marks in the CUDA stream, read at the end (no synchronization
    between steps that the Trainer itself would not make)."""
    from transformers import TrainerCallback

    from lightning_summ.callbacks.speed import mark_now, seconds_between

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    class Timer(TrainerCallback):
        def __init__(self):
            self.mark = self.tokens0 = None
            self.spans = []  # (start, end) marks of every timed step

        def on_step_end(self, a, state, control, **kw):
            now = mark_now(device)
            if state.global_step == args.warmup:
                self.mark, self.tokens0 = now, counter.tokens
            elif self.mark is not None:
                self.spans.append((self.mark, now))
                self.mark = now

    timer = Timer()
    trainer.add_callback(timer)
    loss = trainer.train().training_loss  # the mean over every step: NaN if any step's loss was NaN
    sync()
    seconds = sum(seconds_between(start, end) for start, end in timer.spans)
    steps = len(timer.spans)
    samples = steps * samples_per_step
    # tokens: counted at collation, so the last step's batches may be counted one batch ahead
    return {"steps": steps, "samples": samples, "seconds": round(seconds, 3),
            "samples_per_s": round(samples / seconds, 3),
            "tokens_per_s": round((counter.tokens - timer.tokens0) / seconds, 1), "peak_mem_gb": peak_gb(base),
            "train_loss": {"mean": loss, "finite": math.isfinite(loss)}}


# -- workloads 1-2: KoBART architecture -------------------------------------------------------------
def seq2seq(args, mode: str, batch_size: int) -> dict:
    """Fine-tuning or beam-4 generation of ``args.model_dir`` (tokenizer with the tags saved beside it)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer

    examples = read_examples(args.data)
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    base = reset_peak()  # peak memory includes the weights, as ours does
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model_dir, attn_implementation="sdpa")
    data = []
    for ex in examples:
        feature = tok(ex.dialogue, max_length=512, truncation=True, text_target=ex.summaries[0] if ex.summaries else "")
        data.append({"input_ids": feature["input_ids"], "attention_mask": feature["attention_mask"],
                     "labels": feature["labels"][:100]})
    counter = _Counter(DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100))
    train_args = _training_args(args, str(Path(args.scratch) / "hf"), args.batch_size, learning_rate=1e-5,
                                per_device_eval_batch_size=batch_size, predict_with_generate=True)
    trainer = Seq2SeqTrainer(model=model, args=train_args, train_dataset=data, data_collator=counter,
                             processing_class=tok)
    if mode == "train":
        return _train(trainer, counter, args, args.batch_size, base)
    model.to(trainer.args.device)
    sync()
    start = time.perf_counter()
    # Seq2SeqTrainer.predict needs labels here (without them it fails looking up the loss), so the
    # HF side also runs one teacher-forced forward pass per batch that ours does not.
    out = trainer.predict(data, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, num_beams=4)
    sync()
    seconds = time.perf_counter() - start
    ids = out.predictions
    ids[ids < 0] = tok.pad_token_id
    texts = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    order = dataset_order(out.label_ids, data)  # length grouping reorders predict's rows too
    return {"samples": len(data), "seconds": round(seconds, 3), "samples_per_s": round(len(data) / seconds, 3),
            "peak_mem_gb": peak_gb(base), "texts": in_dataset_order(texts, order),
            "rows_in_dataset_order": sum(i == j for i, j in enumerate(order))}


# -- workloads 3-4: Qwen3-4B architecture, LoRA / QLoRA ---------------------------------------------
def _causal_model(args, settings: dict, training: bool):
    """The model a transformers + peft user builds: from_pretrained (4-bit or bf16), new tag rows, LoRA."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    formatter = prompt_formatter(args, settings)
    tok = formatter.tokenizer
    kwargs = {"dtype": torch.bfloat16, "device_map": {"": 0} if torch.cuda.is_available() else None}
    if settings["quantization"]:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, **kwargs)
    if len(tok) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tok))
    checkpointing = training and settings["gradient_checkpointing"]
    if settings["quantization"]:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = settings["lora"]
    new_ids = formatter.new_token_ids()  # the added #Tag# rows, as ours trains them
    config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=lora["target_modules"], task_type="CAUSAL_LM",
                        trainable_token_indices={"embed_tokens": new_ids} if new_ids else None)
    return get_peft_model(model, config), tok, formatter


def causal_train(args, settings: dict, batch_size: int, flatten: bool = False) -> dict:
    """``flatten``: HF's padding-free training, ``DataCollatorWithFlattening`` (each batch one row,
    position ids restarting per example, no mask), with ``use_cache=False``: under SDPA a model that
    builds a cache in training (Qwen3's config has ``use_cache: true``) skips the packed-sequence mask
    and lets the examples attend to each other (checked with transformers 5.24, see bench/NOTES.md)."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer

    base = reset_peak()  # peak memory includes the weights, as ours does
    model, tok, formatter = _causal_model(args, settings, training=True)
    data = [formatter.encode(ex.dialogue, ex.summaries[0], for_generation=False) for ex in read_examples(args.data)]
    tok.padding_side = "right"
    if flatten:
        model.config.use_cache = False
        counter = _Counter(DataCollatorWithFlattening(return_position_ids=True))
    else:
        counter = _Counter(DataCollatorForSeq2Seq(tok, label_pad_token_id=-100))
    extra = {"gradient_checkpointing": settings["gradient_checkpointing"],
             "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    train_args = _training_args(args, str(Path(args.scratch) / "hf-causal"), batch_size, settings["accumulate"],
                                learning_rate=2e-4, **extra)
    trainer = Trainer(model=model, args=train_args, train_dataset=data, data_collator=counter)
    try:
        return _train(trainer, counter, args, batch_size * settings["accumulate"], base)
    finally:
        del trainer, model


def causal_generate(args, settings: dict, batch_size: int, num_beams: int) -> dict:
    """Batches in input order, left padding, ``model.generate`` with forced length."""
    base = reset_peak()  # peak memory includes the weights, as ours does
    model, tok, formatter = _causal_model(args, settings, training=False)
    model.eval()
    prompts = [formatter.encode(ex.dialogue, None, for_generation=True)["input_ids"]
               for ex in read_examples(args.gen_data)]
    tok.padding_side = "left"
    texts, batches = [], []
    sync()
    start = mark = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            batch = tok.pad([{"input_ids": p} for p in prompts[i:i + batch_size]], return_tensors="pt").to(model.device)
            out = model.generate(**batch, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                 num_beams=num_beams, do_sample=False, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
            new = out[:, batch["input_ids"].shape[1]:]
            assert new.shape[1] == args.new_tokens, new.shape  # forced length really happened
            texts += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
            sync()
            now = time.perf_counter()
            batches.append((len(new), round(now - mark, 4)))
            mark = now
    seconds = time.perf_counter() - start
    result = {"samples": len(prompts), "seconds": round(seconds, 3), "samples_per_s": round(len(prompts) / seconds, 3),
              "peak_mem_gb": peak_gb(base), "texts": texts, "batches": batches}
    del model
    return result
