"""The ``hf`` variants of the time-to-quality workload (``quality.py``): ``Seq2SeqTrainer`` as its docs
show it, stopped by a ``TrainerCallback`` at the time budget, then ``Seq2SeqTrainer.predict`` with
``predict_with_generate``.

The model is ``BartConfig`` with the tokenizer's ids, the collator ``DataCollatorForSeq2Seq(tokenizer,
model=model)``, with the recipe's label smoothing, length grouping and bf16. Options joined to ``hf``
by '+': ``pad64`` (``pad_to_multiple_of=64``), ``tags`` (the ``#Tag#`` tokens added to the tokenizer,
as ours does). Each decode is scored as ``predict`` returns its rows, put back in dataset order
(``-reordered``) and, for ``free``, from a second ``predict`` in sequential order (``free-sequential``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from common import sync
from hf_side import data_tags, dataset_order, in_dataset_order, length_grouping
from lightning_summ.io import read_examples
from quality_score import scored

# The recipe of bench/configs/dialogsum-bart-base.yaml in Seq2SeqTrainer's terms.
RECIPE = {"lr": 3e-4, "batch_size": 32, "warmup_steps": 400, "label_smoothing": 0.1, "source": 512, "target": 128,
          "num_beams": 4, "new_tokens": 100, "max_epochs": 40, "weight_decay": 0.01}
HF_OPTIONS = {"pad64", "tags"}


def _hf_features(tok, path: str) -> list[dict]:
    """``tokenizer(dialogue, text_target=summary)`` with the recipe's truncation (the EOS is kept)."""
    data = []
    for ex in read_examples(path):
        source = tok(ex.dialogue, max_length=RECIPE["source"], truncation=True)
        target = tok(text_target=ex.summaries[0] if ex.summaries else "", max_length=RECIPE["target"], truncation=True)
        data.append({"input_ids": source["input_ids"], "attention_mask": source["attention_mask"],
                     "labels": target["input_ids"]})
    return data


def _time_budget(seconds: float, warmup: int):
    """Stops ``Trainer.train`` at the first step end past ``seconds`` of training, by the wall clock
    and without synchronizing the GPU, as Lightning's ``max_time`` stops ours; times the steps after
    ``warmup`` from step end to step end in the CUDA stream, as ``SpeedMonitor`` times ours."""
    from transformers import TrainerCallback

    from lightning_summ.callbacks.speed import mark_now, seconds_between

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    class TimeBudget(TrainerCallback):
        start = mark = last = None
        timed_steps, timed_s = 0, 0.0

        def on_train_begin(self, a, state, control, **kw):
            sync()
            self.start = time.perf_counter()
            self.mark = mark_now(device) if warmup == 0 else None

        def on_step_end(self, a, state, control, **kw):
            if state.global_step == warmup:
                self.mark = mark_now(device)
            elif self.mark is not None:
                self.timed_steps, self.last = state.global_step - warmup, mark_now(device)
            if time.perf_counter() - self.start >= seconds:
                control.should_training_stop = True

        def on_train_end(self, a, state, control, **kw):
            sync()  # the queued steps are done: their marks can be read
            if self.last is not None:
                self.timed_s = seconds_between(self.mark, self.last)

    return TimeBudget()


def _sequential(train_args):
    """The same arguments with a sequential evaluation order: in transformers 5 a Trainer whose
    ``train_sampling_strategy`` is ``group_by_length`` also length-groups (and shuffles) ``predict``."""
    import dataclasses

    if getattr(train_args, "train_sampling_strategy", None) == "group_by_length":
        return dataclasses.replace(train_args, train_sampling_strategy="random")
    return train_args


def _hf_predict(trainer, test: list[dict], forced: dict, new_tokens: int) -> tuple[list[str], float, list[int]]:
    """``Seq2SeqTrainer.predict`` with generation; returns the texts in the order predict returns them,
    the seconds, and which dataset row each returned row is (its labels, which predict returns in the
    same order, are matched back to the dataset's)."""
    sync()
    t0 = time.perf_counter()
    out = trainer.predict(test, num_beams=RECIPE["num_beams"], max_new_tokens=new_tokens, **forced)
    sync()
    seconds = time.perf_counter() - t0
    tok = trainer.processing_class
    ids = out.predictions
    ids[ids < 0] = tok.pad_token_id  # predict pads across batches with -100
    texts = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
    order = dataset_order(out.label_ids, test)
    return texts, seconds, order


def _tokenizer_and_model(args, options: set[str]):
    """The tokenizer (plus the tags with ``tags``) and a random-init BART of ``args.arch`` on its ids."""
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    from lightning_summ.tags import add_tags_to_tokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    if "tags" in options:
        add_tags_to_tokenizer(tok, data_tags(args.train))
    arch = {k: v for k, v in args.arch.items() if k != "model_type"}
    config = BartConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id,
                        forced_eos_token_id=tok.eos_token_id, **arch)
    torch.manual_seed(42)
    return tok, BartForConditionalGeneration(config)


def _training_arguments(args, work: Path):
    """The recipe as ``Seq2SeqTrainingArguments`` (bf16 and the GPU when there is one)."""
    from transformers import Seq2SeqTrainingArguments

    cuda = torch.cuda.is_available()
    return Seq2SeqTrainingArguments(
        output_dir=str(work / "hf"), per_device_train_batch_size=RECIPE["batch_size"],
        per_device_eval_batch_size=args.eval_batch_size, learning_rate=RECIPE["lr"],
        warmup_steps=RECIPE["warmup_steps"], lr_scheduler_type="linear", num_train_epochs=RECIPE["max_epochs"],
        weight_decay=RECIPE["weight_decay"], label_smoothing_factor=RECIPE["label_smoothing"], bf16=cuda,
        **length_grouping(), predict_with_generate=True, save_strategy="no", report_to=[], logging_steps=200,
        disable_tqdm=True, dataloader_num_workers=0, use_cpu=not cuda)


def run_variant(args, work: Path, options: set[str]) -> dict:
    """``hf`` with ``options``: train by time budget, then every decode of ``args.decodes``; files in ``work``."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer

    tok, model = _tokenizer_and_model(args, options)
    train, test = _hf_features(tok, args.train), _hf_features(tok, args.test)
    collator = DataCollatorForSeq2Seq(tok, model=model, label_pad_token_id=-100,
                                      pad_to_multiple_of=64 if "pad64" in options else None)
    budget = _time_budget(args.budget_s, args.warmup)
    trainer = Seq2SeqTrainer(model=model, args=_training_arguments(args, work), train_dataset=train,
                             data_collator=collator, processing_class=tok, callbacks=[budget])
    start = time.perf_counter()
    state = trainer.train()
    result = {"steps": state.global_step, "train_samples_per_s": round(
        budget.timed_steps * RECIPE["batch_size"] / budget.timed_s, 3) if budget.timed_s else 0.0,
        "fit_wall_s": round(time.perf_counter() - start, 1), "final_train_loss": round(state.training_loss, 4),
        "generation_config": model.generation_config.to_diff_dict(), "decodes": {}}
    result["decodes"], result["returned_rows_in_dataset_order"] = _hf_decodes(args, trainer, test)
    return result


def _hf_decodes(args, trainer, test: list[dict]) -> tuple[dict, int]:
    """Each decode scored as ``predict`` returns the rows and back in dataset order; for ``free`` also a
    second ``predict`` with sequential order (the fix a user can make). Returns the scores and how many
    returned rows were in their dataset position."""
    from transformers import Seq2SeqTrainer

    refs = [ex.summaries for ex in read_examples(args.test)]
    decodes, in_place = {}, None
    for mode in args.decodes:
        forced = {"min_new_tokens": args.new_tokens} if mode == "forced" else {}
        texts, seconds, order = _hf_predict(trainer, test, forced, args.new_tokens)
        decodes[mode] = scored(texts, refs, seconds)  # as returned: what a user writes to a submission
        decodes[f"{mode}-reordered"] = scored(in_dataset_order(texts, order), refs, None)
        in_place = sum(i == j for i, j in enumerate(order))
        if mode == "free":
            fixed = Seq2SeqTrainer(model=trainer.model, args=_sequential(trainer.args),
                                   data_collator=trainer.data_collator, processing_class=trainer.processing_class)
            texts, seconds, order = _hf_predict(fixed, test, forced, args.new_tokens)
            if order != list(range(len(texts))):
                raise RuntimeError("a predict with train_sampling_strategy='random' returned rows out of order")
            decodes["free-sequential"] = scored(texts, refs, seconds)
    return decodes, in_place
