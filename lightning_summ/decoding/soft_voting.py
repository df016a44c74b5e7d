"""Soft voting: one beam search over several models (encoder-decoder or decoder-only) that share a tokenizer.

At every step each model scores the next token with its own encoder states and KV cache; the
ensemble's next-token log-probability is the mean of the models' log-probabilities, and a single
beam search runs on that. The search follows Hugging Face's beam search (``early_stopping=True``):
2K candidates per step, a hypothesis ends when EOS is among the top K, finished hypotheses are
scored ``sum log p / generated_length ** length_penalty``, and a row is done with K finished
hypotheses. With one model it returns what ``generate`` returns (tested).

Constraints on the next token (``repetition_penalty``, ``no_repeat_ngram_size``, ``min_new_tokens``,
forced BOS/EOS) are transformers' own ``LogitsProcessor`` classes, applied to the averaged
log-probabilities exactly as transformers' beam search applies them to one model's. Each model keeps
its own key/value cache (transformers' ``DynamicCache`` / ``EncoderDecoderCache``), reordered with
the beams.
"""

from __future__ import annotations

import inspect
from typing import Optional, Union

import torch
import torch.nn.functional as F
from transformers import (DynamicCache, EncoderDecoderCache, ForcedBOSTokenLogitsProcessor,
                          ForcedEOSTokenLogitsProcessor, LogitsProcessorList, MinNewTokensLengthLogitsProcessor,
                          NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor)

from lightning_summ.data.collate import position_ids_for


def cache_argument(model) -> str:
    """The name of ``forward``'s key/value cache argument: transformers 5.x renames
    ``past_key_values`` to ``cache`` (the old name is deprecated, removed in 5.40); older 5.x
    releases know only ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps it
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def logits_processors(prefix_length: int, eos_ids: list[int], max_new_tokens: int, min_new_tokens: int = 0,
                      repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                      forced_bos_token_id: Optional[int] = None, forced_eos_token_id=None) -> LogitsProcessorList:
    """The processors transformers' ``generate`` builds for these settings, in its order."""
    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    if min_new_tokens > 0:
        processors.append(MinNewTokensLengthLogitsProcessor(prefix_length, min_new_tokens, eos_ids))
    if forced_bos_token_id is not None:
        processors.append(ForcedBOSTokenLogitsProcessor(forced_bos_token_id))
    if forced_eos_token_id is not None:
        processors.append(ForcedEOSTokenLogitsProcessor(prefix_length + max_new_tokens, forced_eos_token_id))
    return processors


class _EncoderDecoder:
    """Scores next tokens for encoder-decoder models: encoder run once, decoder with a KV cache."""

    def __init__(self, models, input_ids, attention_mask, k: int, decoder_start_token_id: int):
        self.models, self.mask = models, attention_mask.repeat_interleave(k, 0)
        self.encoded = []
        for model in models:
            states = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
            states.last_hidden_state = states.last_hidden_state.repeat_interleave(k, 0)
            self.encoded.append(states)
        self.start = torch.full((input_ids.shape[0] * k, 1), decoder_start_token_id, dtype=torch.long,
                                device=input_ids.device)
        self.caches = [EncoderDecoderCache(DynamicCache(), DynamicCache()) for _ in models]
        self.cache_args = [cache_argument(model) for model in models]

    def __call__(self, sequences: torch.Tensor) -> list[torch.Tensor]:
        logits = []
        for i, model in enumerate(self.models):
            first = self.caches[i].get_seq_length() == 0
            out = model(encoder_outputs=self.encoded[i], attention_mask=self.mask, use_cache=True,
                        decoder_input_ids=sequences if first else sequences[:, -1:],
                        **{self.cache_args[i]: self.caches[i]})  # updated in place
            logits.append(out.logits[:, -1])
        return logits

    def reorder(self, beam_idx: torch.Tensor) -> None:
        for cache in self.caches:
            cache.reorder_cache(beam_idx)


class _DecoderOnly:
    """Scores next tokens for decoder-only models from left-padded prompts (positions count from each
    row's first real token, as ``generate`` does)."""

    def __init__(self, models, input_ids, attention_mask, k: int):
        self.models, self.mask = models, attention_mask.repeat_interleave(k, 0)
        self.start = input_ids.repeat_interleave(k, 0)
        self.caches = [DynamicCache() for _ in models]
        self.cache_args = [cache_argument(model) for model in models]

    def __call__(self, sequences: torch.Tensor) -> list[torch.Tensor]:
        if self.mask.shape[1] < sequences.shape[1]:
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        positions = position_ids_for(self.mask)
        logits = []
        for i, model in enumerate(self.models):
            first = self.caches[i].get_seq_length() == 0
            out = model(input_ids=sequences if first else sequences[:, -1:], attention_mask=self.mask,
                        position_ids=positions if first else positions[:, -1:], use_cache=True,
                        **{self.cache_args[i]: self.caches[i]})  # updated in place
            logits.append(out.logits[:, -1])
        return logits

    def reorder(self, beam_idx: torch.Tensor) -> None:
        self.mask = self.mask[beam_idx]
        for cache in self.caches:
            cache.reorder_cache(beam_idx)


@torch.no_grad()
def soft_voting_beam_search(models: list, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                            eos_token_id: Union[int, list[int]], decoder_start_token_id: Optional[int] = None,
                            num_beams: int = 4,
                            max_new_tokens: int = 100, min_new_tokens: int = 0, length_penalty: float = 1.0,
                            repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                            num_return_sequences: int = 1,
                            forced_bos_token_id: Optional[int] = None, forced_eos_token_id: Optional[int] = None,
                            ) -> list[list[tuple[list[int], float]]]:
    """Returns, per input row, ``num_return_sequences`` (generated token ids, score), best first.

    Encoder-decoder models need ``decoder_start_token_id``; without it the models are decoder-only
    and ``input_ids`` are left-padded prompts. ``forced_*_token_id`` follow the models' generation
    config (BART forces EOS at the last step).
    """
    batch, k = input_ids.shape[0], num_beams
    eos_ids = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)
    scorer = (_EncoderDecoder(models, input_ids, attention_mask, k, decoder_start_token_id)
              if decoder_start_token_id is not None else _DecoderOnly(models, input_ids, attention_mask, k))
    sequences = scorer.start  # the prefix (decoder start or prompt) followed by the generated tokens
    prefix = sequences.shape[1]
    processors = logits_processors(prefix, sorted(eos_ids), max_new_tokens, min_new_tokens, repetition_penalty,
                                   no_repeat_ngram_size, forced_bos_token_id, forced_eos_token_id)
    device = input_ids.device
    beam_scores = torch.zeros(batch, k, device=device)
    beam_scores[:, 1:] = -1e9  # all beams start identical: expand only the first one at step 0
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(max_new_tokens):
        log_probs = sum(F.log_softmax(logits.float(), dim=-1) for logits in scorer(sequences)) / len(models)
        log_probs = processors(sequences, log_probs)  # the whole row, prefix included, as HF does
        vocab = log_probs.shape[-1]
        scores = (beam_scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top_ids = scores.topk(2 * k, dim=1)
        next_beams, next_tokens, next_scores = [], [], []
        for b in range(batch):
            kept = _advance_row(b, k, vocab, top_scores[b].tolist(), top_ids[b].tolist(), sequences, prefix, eos_ids,
                                (step + 1) ** length_penalty, finished[b], done[b])
            next_beams += [b * k + beam for beam, _, _ in kept]
            next_tokens += [token for _, token, _ in kept]
            next_scores += [score for _, _, score in kept]
            done[b] = len(finished[b]) >= k
        if all(done):
            break
        beam_idx = torch.tensor(next_beams, device=device)
        sequences = torch.cat([sequences[beam_idx], torch.tensor(next_tokens, device=device)[:, None]], 1)
        beam_scores = torch.tensor(next_scores, device=device).view(batch, k)
        scorer.reorder(beam_idx)
    results = []
    for b in range(batch):
        if not done[b]:  # ran out of length: the open beams compete as they are
            for j in range(k):
                finished[b].append((beam_scores[b, j].item() / (sequences.shape[1] - prefix) ** length_penalty,
                                    sequences[b * k + j, prefix:].tolist()))
        best = sorted(finished[b], key=lambda x: x[0], reverse=True)[:num_return_sequences]
        results.append([(seq, score) for score, seq in best])
    return results


def _advance_row(b: int, k: int, vocab: int, top_scores: list[float], top_ids: list[int], sequences: torch.Tensor,
                 prefix: int, eos_ids: set[int], length_norm: float, finished: list, done: bool
                 ) -> list[tuple[int, int, float]]:
    """One row's step of beam search over its 2K best (beam, token) pairs: an EOS among the top K ends
    a hypothesis (into ``finished``, scored ``sum log p / length ** length_penalty``, as HF does); the
    first K non-EOS pairs continue, returned as (beam, token, score)."""
    kept = []
    for rank, (score, flat) in enumerate(zip(top_scores, top_ids)):
        beam, token = divmod(flat, vocab)
        if token in eos_ids:
            if rank < k and not done:
                finished.append((score / length_norm, sequences[b * k + beam, prefix:].tolist() + [token]))
            continue
        kept.append((beam, token, score))
        if len(kept) == k:
            break
    return kept
