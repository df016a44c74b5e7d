"""Grouped-query decoding steps without copying the key/value cache (``decoding.attention``): the same
attention as transformers' SDPA path, the same candidates, and ``sdpa`` back after every generation."""

from __future__ import annotations

from unittest.mock import patch

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from lightning_summ.decoding import attention
from lightning_summ.decoding.attention import PACKED_GQA, sdpa_packed_gqa, uses_grouped_query_sdpa
from lightning_summ.models.settings import GenerationSettings
from tests.models.test_causal import DIALOGUE, assert_same_candidates, feats, tiny

ROWS = [(DIALOGUE, None), ("#Person1#: 네.", None), ("#Person1#: 내일 봐요. 비가 온대요.", None)]


class Attention(torch.nn.Module):
    """What transformers' attention functions read from the module calling them."""

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups, self.is_causal = groups, True


def qkv(batch=3, heads=8, kv_heads=2, q_len=1, kv_len=7, dim=16):
    torch.manual_seed(0)
    return (torch.randn(batch, heads, q_len, dim), torch.randn(batch, kv_heads, kv_len, dim),
            torch.randn(batch, kv_heads, kv_len, dim))


@pytest.mark.parametrize("mask", ["padding", "additive", "one-row", "none"])
def test_a_decoding_step_equals_transformers_sdpa_with_repeated_heads(mask):
    query, key, value = qkv()
    module = Attention(groups=4).eval()
    attend = torch.ones(3, 1, 1, 7, dtype=torch.bool)
    attend[1, ..., :3] = False  # a left-padded row
    attend = {"padding": attend, "additive": torch.zeros(3, 1, 1, 7).masked_fill(~attend, float("-inf")),
              "one-row": attend[1:2], "none": None}[mask]  # bool, float, broadcast over the batch, no mask
    with patch("torch.nn.functional.scaled_dot_product_attention", wraps=torch.nn.functional.scaled_dot_product_attention) as sdpa:
        ours, _ = sdpa_packed_gqa(module, query, key, value, attend, scaling=0.25)
        calls = [c.args[0].shape for c in sdpa.call_args_list]
    repeated = [t.repeat_interleave(4, dim=1) for t in (key, value)]  # query head h reads key/value head h // 4
    expected = torch.nn.functional.scaled_dot_product_attention(query, *repeated, attn_mask=attend, scale=0.25)
    expected = expected.transpose(1, 2)
    assert calls == [torch.Size([3, 2, 4, 16])]  # the group's heads as query rows over the 2 key/value heads
    assert ours.shape == expected.shape == (3, 1, 8, 16)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)


def test_other_calls_go_to_transformers_sdpa_unchanged():
    """Prefill (several query tokens), training, and a mask per head are transformers' own path."""
    module = Attention(groups=4).eval()
    prefill = qkv(q_len=5, kv_len=5)
    per_head_mask = torch.ones(3, 8, 1, 7, dtype=torch.bool)
    with patch.object(attention, "sdpa_attention_forward", wraps=sdpa_attention_forward) as stock:
        sdpa_packed_gqa(module, *prefill, None)
        sdpa_packed_gqa(module, *qkv(), per_head_mask)
        sdpa_packed_gqa(module.train(), *qkv(), None)
    assert stock.call_count == 3


def counting_packed_steps():
    """A spy on the packed path: how many attention calls took it."""
    taken = []
    original = attention._packs

    def spy(*args):
        taken.append(original(*args))
        return taken[-1]
    return taken, patch.object(attention, "_packs", spy)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_gives_the_same_candidates_with_packed_decoding_steps(num_beams):
    model = tiny("qwen3", generation=GenerationSettings(num_beams=num_beams, max_new_tokens=6, min_new_tokens=6)).eval()
    with torch.no_grad():  # a sharper random model: greedy and beam picks are not near-ties
        for p in model.model.parameters():
            p.mul_(3)
    batch = model.processor.collator(True)(feats(model, ROWS, True))
    assert batch["attention_mask"][:, 0].eq(0).any()  # left-padded rows are part of the check
    taken, spy = counting_packed_steps()
    with spy:
        packed = model.generate_candidates(batch)
    assert sum(taken) == 2 * 5  # 2 layers x 5 decoding steps after the prefill
    lm = model.model.get_base_model()
    assert lm.config._attn_implementation == "sdpa"
    lm.set_attn_implementation("eager")  # the reference: every query head over its repeated key/value head
    assert_same_candidates(packed, model.generate_candidates(batch))


def test_sdpa_is_back_after_a_failing_generation_and_training_never_sees_the_packed_layout():
    model = tiny("qwen3")
    lm = model.model.get_base_model()
    assert uses_grouped_query_sdpa(model.model)
    seen = []
    with patch.object(type(lm), "generate", lambda self, **kw: seen.append(self.config._attn_implementation) or 1 / 0):
        with pytest.raises(ZeroDivisionError):
            model.eval().generate_candidates(model.processor.collator(True)(feats(model, ROWS[:1], True)))
    assert seen == [PACKED_GQA] and lm.config._attn_implementation == "sdpa"
    batch = model.processor.collator(False)(feats(model, [(DIALOGUE, "요약.")], False))
    implementations = []
    hook = lm.model.layers[0].self_attn.register_forward_hook(
        lambda module, args, output: implementations.append(module.config._attn_implementation))
    model.train().compute_loss(batch).backward()
    hook.remove()
    assert implementations == ["sdpa"]  # training runs transformers' own attention


def test_models_without_grouped_query_heads_are_left_alone():
    neox = tiny("gpt_neox")  # as many key/value heads as query heads
    assert not uses_grouped_query_sdpa(neox.model)
    with attention.packed_gqa_decoding([neox.model]):
        assert neox.model.get_base_model().config._attn_implementation == "sdpa"


def test_generation_packed_gqa_false_keeps_transformers_path():
    model = tiny("qwen3", generation=GenerationSettings(num_beams=1, max_new_tokens=3, packed_gqa=False)).eval()
    taken, spy = counting_packed_steps()
    with spy:
        model.generate_candidates(model.processor.collator(True)(feats(model, ROWS, True)))
    assert not taken  # never switched to sdpa_packed_gqa, so never asked


def test_soft_voting_decodes_with_packed_steps_and_the_same_candidates():
    from lightning_summ.decoding.generate import SoftVoting

    model = tiny("qwen3", generation=GenerationSettings(num_beams=3, max_new_tokens=5, min_new_tokens=5)).eval()
    member = tiny("qwen3", generation=GenerationSettings(num_beams=3, max_new_tokens=5, min_new_tokens=5)).eval()
    with torch.no_grad():  # two different, sharper models
        for p, q in zip(model.model.parameters(), member.model.parameters()):
            p.mul_(3)
            q.mul_(-2)
    model.decoder = SoftVoting([member.model])
    batch = model.processor.collator(True)(feats(model, ROWS, True))
    taken, spy = counting_packed_steps()
    with spy:
        packed = model.generate_candidates(batch)
    assert sum(taken) == 2 * 2 * 4  # two models x 2 layers x 4 steps after the prefill
    for m in (model.model, member.model):
        m.get_base_model().set_attn_implementation("eager")
    assert_same_candidates(packed, model.generate_candidates(batch))
