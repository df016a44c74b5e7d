"""Decoding strategies for trained models: transformers' ``generate`` and soft voting.

A decoder is any callable ``decoder(module, batch) -> list[Candidates]``: per input row, scored
candidate summaries, best first. The module supplies the network(s), the processor's tokenizer and
its generation settings; the decoder decides how summaries are searched. Test-time augmentation
(``decoding.tta``) wraps any decoder, and the API summarizer has its own.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional, Protocol

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lightning_summ.decoding.attention import packed_gqa_decoding
from lightning_summ.decoding.soft_voting import soft_voting_beam_search
from lightning_summ.errors import ConfigError

# (text, score) pairs, best first. ``score``: beam search's length-penalised sum of token
# log-probabilities (sum / length ** length_penalty, so the mean log-probability per token when
# length_penalty is 1); greedy and sampling: the mean log-probability per generated token; API: 0.
Candidates = list[tuple[str, float]]


class Decoder(Protocol):
    name: str

    def __call__(self, module, batch: dict) -> list[Candidates]: ...


class GreedyTokenLogProbs(LogitsProcessor):
    """At each greedy step, the log-probability of the token greedy search picks: the highest
    processed score minus their log-sum-exp, i.e. what ``compute_transition_scores(...,
    normalize_logits=True)`` computes from ``output_scores``, without keeping every step's
    [rows x vocabulary] fp32 scores (7.8 GB for 128 rows x 100 steps of a 152k vocabulary, then as
    much again to normalise them). Appended after transformers' own processors (generate puts
    custom ones after them for greedy search; only a final log-softmax, which changes neither the
    pick nor this value, or a watermarking processor may follow: with a watermark the decoder keeps
    ``output_scores``). Greedy only: sampling does not pick the highest score."""

    def __init__(self):
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(scores.max(-1).values - torch.logsumexp(scores, -1))
        return scores


def _mean_over_generated(steps: torch.Tensor, sequences: torch.Tensor, pad_id: Optional[int]) -> list[float]:
    """Mean of per-step log-probabilities over each row's generated tokens (padding after EOS excluded)."""
    generated = sequences[:, -steps.shape[1]:]
    mask = generated != pad_id if pad_id is not None else torch.ones_like(generated, dtype=torch.bool)
    steps = steps.float().masked_fill(~mask, 0.0)
    return (steps.sum(1) / mask.sum(1).clamp(min=1)).tolist()


def sequence_scores(model, out, pad_id: Optional[int], greedy: Optional[GreedyTokenLogProbs] = None) -> list[float]:
    """Each returned sequence's score: beam search reports its length-penalised score; greedy and
    sampling are scored by the mean log-probability of their generated tokens (greedy: from the
    ``greedy`` recorder; sampling: from ``output_scores``)."""
    if getattr(out, "sequences_scores", None) is not None:
        return out.sequences_scores.float().tolist()
    if greedy is not None:
        return _mean_over_generated(torch.stack(greedy.steps, 1), out.sequences, pad_id)
    steps = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    return _mean_over_generated(steps, out.sequences, pad_id)


def compiles_static_decoding(model) -> bool:
    """Whether transformers compiles the static-cache decoding step of ``model`` (its own rule in
    ``_valid_auto_compile_criteria``: a CUDA/XPU device or a ``compile_config`` for every device, and
    no quantizer, which a dequantized QLoRA base keeps)."""
    config = model.generation_config
    compile_config = getattr(config, "compile_config", None)
    on_device = model.device.type in ("cuda", "xpu") or bool(getattr(compile_config, "_compile_all_devices", False))
    return on_device and not getattr(config, "disable_compile", False) and getattr(model, "hf_quantizer", None) is None


class Generate:
    """transformers' ``model.generate`` with the module's generation settings."""

    name = "generate"

    def __init__(self):
        self.static_rows = 0  # rows of the largest batch of the current stage decoded with a static cache
        self._stage: Optional[tuple] = None

    def _inputs(self, module, batch: dict) -> dict:
        """The batch's ids and mask. When transformers compiles the static-cache decoding step, a batch
        of a Trainer stage smaller than the stage's largest so far (the last one: validate/test/predict
        batches come longest first) is filled up with copies of its last row, so that the compiled step
        is reused: a new batch size fails dynamo's guards and recompiles it (tens of seconds on a GPU).
        The copies are dropped after. Batches outside a Trainer stage (``serve``'s, of any size) are
        left as they are."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        trainer = getattr(module, "_trainer", None)
        if module.generation.static_cache and trainer is not None and compiles_static_decoding(module.model):
            stage = (id(trainer), trainer.state.stage)
            if stage != self._stage:  # a new stage starts again from its own largest batch
                self._stage, self.static_rows = stage, 0
            self.static_rows = max(self.static_rows, len(ids))
            fill = self.static_rows - len(ids)
            if fill:
                ids, mask = (torch.cat([t, t[-1:].expand(fill, -1)]) for t in (ids, mask))
        return {"input_ids": ids, "attention_mask": mask}

    def __call__(self, module, batch: dict) -> list[Candidates]:
        kwargs = module.generation.generate_kwargs()
        n = kwargs["num_return_sequences"]
        # greedy search: scored by a recorder instead of output_scores (beam search needs those for
        # its sequences_scores, sampling for the sampled tokens' probabilities)
        watermark = getattr(module.model.generation_config, "watermarking_config", None) is not None
        greedy = GreedyTokenLogProbs() if kwargs["num_beams"] == 1 and not kwargs["do_sample"] and not watermark \
            else None
        # a static cache's decoding step is compiled by transformers: its attention is left as it is
        packed = module.generation.packed_gqa and not module.generation.static_cache
        with packed_gqa_decoding([module.model]) if packed else nullcontext():
            out = module.model.generate(**self._inputs(module, batch),
                                        use_cache=True, return_dict_in_generate=True, output_scores=greedy is None,
                                        logits_processor=LogitsProcessorList([greedy] if greedy else []),
                                        **module.extra_generate_kwargs(), **kwargs)
        decoded = module.tokenizer.batch_decode(module.generated_tokens(out, batch), skip_special_tokens=True)
        texts = [t.strip() for t in decoded]
        scores = sequence_scores(module.model, out, module.tokenizer.pad_token_id, greedy)
        rows = len(batch["input_ids"])  # without the static cache's filler rows
        return [list(zip(texts[i * n:(i + 1) * n], scores[i * n:(i + 1) * n])) for i in range(rows)]


class SoftVoting:
    """One beam search over the mean next-token log-probabilities of the module's model and ``members``
    (other checkpoints of the same config, e.g. the k-fold models)."""

    name = "soft_voting"

    def __init__(self, members: list[torch.nn.Module]):
        self.members = members

    def __call__(self, module, batch: dict) -> list[Candidates]:
        g = module.generation
        if g.do_sample or not g.early_stopping or g.static_cache:
            raise ConfigError("soft voting (model.ensemble_checkpoints) supports beam search / greedy with "
                              "generation.early_stopping: true only (not do_sample, static_cache)")
        for member in self.members:  # not submodules, so Lightning does not move them
            member.to(device=module.device)
        with packed_gqa_decoding([module.model, *self.members]) if g.packed_gqa else nullcontext():
            results = self._search(module, batch)
        decode = lambda ids: module.tokenizer.decode(ids, skip_special_tokens=True).strip()  # noqa: E731
        return [[(decode(ids), score) for ids, score in row] for row in results]

    def _search(self, module, batch: dict) -> list:
        g, config = module.generation, module.model.generation_config
        return soft_voting_beam_search(
            [module.model, *self.members], batch["input_ids"], batch["attention_mask"],
            decoder_start_token_id=module.decoder_start_token_id, eos_token_id=module.eos_token_ids(),
            num_beams=max(g.num_beams, 1), max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens,
            length_penalty=g.length_penalty, repetition_penalty=g.repetition_penalty,
            no_repeat_ngram_size=g.no_repeat_ngram_size, num_return_sequences=g.num_return_sequences,
            forced_bos_token_id=config.forced_bos_token_id, forced_eos_token_id=config.forced_eos_token_id)
