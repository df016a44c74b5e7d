"""Greedy candidates are scored by a per-step recorder instead of ``output_scores``: the same mean
token log-probabilities as transformers' ``compute_transition_scores`` on the kept scores, with the
padding after an early EOS excluded, and no [rows x vocabulary] scores kept per step."""

from __future__ import annotations

import pytest
import torch

from lightning_summ.decoding.generate import sequence_scores
from lightning_summ.models.settings import GenerationSettings
from tests.models.test_causal import DIALOGUE, feats, tiny

PAIRS = [(DIALOGUE, None), ("#Person1#: 네.", None), ("#Person1#: 내일 봐요.\n#Person2#: 네, 내일 만나요.", None)]


def _spy_generate(model, calls: list):
    original = model.model.generate

    def generate(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)
    model.model.generate = generate


def _reference_scores(model, batch, eos: list[int]) -> list[float]:
    """The old path: keep output_scores, normalise them with compute_transition_scores."""
    out = model.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=True,
                               return_dict_in_generate=True, output_scores=True, **model.generation.generate_kwargs(),
                               pad_token_id=model.tokenizer.pad_token_id, eos_token_id=eos)
    return sequence_scores(model.model, out, model.tokenizer.pad_token_id), out


@pytest.mark.parametrize("penalty", [1.0, 1.3], ids=["plain", "repetition-penalty"])
def test_greedy_scores_equal_the_output_scores_path_with_early_eos(penalty, monkeypatch):
    model = tiny(generation=GenerationSettings(num_beams=1, max_new_tokens=6, repetition_penalty=penalty)).eval()
    batch = model.processor.collator(True)(feats(model, PAIRS, True))
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.model.parameters():  # random weights repeat one token: perturbed, rows differ
            param.add_(torch.randn_like(param) * 0.3)
        _, probe = _reference_scores(model, batch, model.eos_token_ids())
        # a token the first row generates second: as EOS, that row stops early and is padded after it
        eos = [int(probe.sequences[0, batch["input_ids"].shape[1] + 1])]
        monkeypatch.setattr(model, "eos_token_ids", lambda: eos)
        expected, out = _reference_scores(model, batch, eos)
        generated = out.sequences[:, batch["input_ids"].shape[1]:]
        assert (generated == model.tokenizer.pad_token_id).any(), "some row must finish early"
        calls = []
        _spy_generate(model, calls)
        ours = [score for row in model.generate_candidates(batch) for _, score in row]
    assert calls[0]["output_scores"] is False  # no per-step vocabulary scores kept
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_beam_search_and_sampling_still_ask_for_output_scores():
    for generation in (GenerationSettings(num_beams=2, max_new_tokens=3),
                       GenerationSettings(num_beams=1, do_sample=True, max_new_tokens=3)):
        model = tiny(generation=generation).eval()
        batch = model.processor.collator(True)(feats(model, PAIRS[:2], True))
        calls = []
        _spy_generate(model, calls)
        with torch.no_grad():
            cands = model.generate_candidates(batch)
        assert calls[0]["output_scores"] is True and all(score <= 0 for row in cands for _, score in row)
