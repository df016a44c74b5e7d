"""CausalLMSummarizer: each rule of DESIGN.md's decoder-only section, checked directly on tiny models."""

from __future__ import annotations

from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer

from lightning_summ.data.collate import position_ids_for
from lightning_summ.errors import ConfigError
from lightning_summ.models.causal import CausalLMSummarizer
from lightning_summ.models.settings import GenerationSettings, LoraSettings, QuantizationSettings

TOKENIZER = "pkg://assets/quickstart-tokenizer"
FAMILIES = {
    "llama": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True},
    "qwen3": {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "tie_word_embeddings": True},
    "gpt_neox": {"model_type": "gpt_neox", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "rotary_pct": 0.5, "tie_word_embeddings": False},
}
DIALOGUE = "#Person1#: 오늘 저녁에 뭐 먹을까요?\n#Person2#: 비가 오니까 따뜻한 국수 어때요?"
SUMMARY = "#Person2#는 #Person1#에게 저녁으로 국수를 제안합니다."


def tiny(family="llama", **kwargs) -> CausalLMSummarizer:
    kwargs.setdefault("lora", LoraSettings(r=4, alpha=8, dropout=0.0))
    kwargs.setdefault("max_length", 256)
    torch.manual_seed(0)  # the same weights whichever tests ran before
    model = CausalLMSummarizer(tokenizer=TOKENIZER, model_config=FAMILIES[family], dtype="float32", **kwargs)
    model.processor.fit_tags()
    model.configure_model()
    return model


def assert_same_candidates(ours, expected):
    """The same texts, and scores equal up to fp32 rounding (other shapes or cache layouts may sum in
    another order: the 7th digit moved between static and dynamic caches for some weights)."""
    assert [[text for text, _ in row] for row in ours] == [[text for text, _ in row] for row in expected]
    torch.testing.assert_close(torch.tensor([[s for _, s in row] for row in ours]),
                               torch.tensor([[s for _, s in row] for row in expected]), rtol=1e-5, atol=1e-6)


def feats(model, pairs, for_generation):
    return [dict(model.processor.encode(d, s, for_generation), index=i, fname=f"f{i}", references=[s])
            for i, (d, s) in enumerate(pairs)]


def test_loss_only_on_summary_and_eos_and_pad_is_not_eos():
    model = tiny()
    tok = model.tokenizer
    assert tok.pad_token_id != tok.eos_token_id
    f = model.processor.encode(DIALOGUE, SUMMARY, for_generation=False)
    target = [t for t in f["labels"] if t != -100]
    assert target[-1] == tok.eos_token_id, "EOS must be trained, or the model never stops"
    assert tok.decode(target, skip_special_tokens=True) == SUMMARY
    n_prompt = f["labels"].count(-100)
    assert f["input_ids"][n_prompt:] == target and all(t == -100 for t in f["labels"][:n_prompt])


def test_dialogue_is_truncated_never_the_instruction_or_summary():
    model = tiny(max_length=120)
    long_dialogue = DIALOGUE * 40
    f = model.processor.encode(long_dialogue, SUMMARY, for_generation=False)
    fmt = model.processor.formatter
    assert len(f["input_ids"]) <= 120
    assert f["input_ids"][: len(fmt.prefix_ids)] == fmt.prefix_ids
    target = fmt.summary(SUMMARY)
    assert f["input_ids"][-len(target):] == target
    assert f["input_ids"][-len(target) - len(fmt.suffix_ids):-len(target)] == fmt.suffix_ids
    with pytest.raises(ValueError, match="no room for the dialogue"):
        tiny(max_length=fmt.overhead + 3).processor.encode(DIALOGUE, SUMMARY, for_generation=False)


def test_generation_inputs_are_prompt_only_and_left_padded():
    model = tiny()
    gen = model.processor.encode(DIALOGUE, SUMMARY, for_generation=True)
    train = model.processor.encode(DIALOGUE, SUMMARY, for_generation=False)
    assert gen["input_ids"] == train["input_ids"][: train["labels"].count(-100)]
    summary_ids = model.processor.formatter.summary(SUMMARY)[:-1]
    assert not any(gen["input_ids"][i:i + len(summary_ids)] == summary_ids for i in range(len(gen["input_ids"])))
    batch = model.processor.collator(for_generation=True)(feats(model, [(DIALOGUE, SUMMARY), ("#Person1#: 네.", "짧음")], True))
    assert (batch["attention_mask"][:, -1] == 1).all(), "generation rows must end with real tokens"
    assert batch["attention_mask"][1, 0] == 0 and batch["input_ids"][1, 0] == model.tokenizer.pad_token_id
    assert "token_type_ids" not in batch and "labels" not in batch  # loss tensors live under loss_*


def test_no_token_type_ids_even_when_the_tokenizer_emits_them():
    model = tiny("gpt_neox")
    model.tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]  # as GPT-NeoX's do
    assert "token_type_ids" in model.tokenizer("가나다")
    model.processor._formatter = None
    batch = model.processor.collator(False)(feats(model, [(DIALOGUE, SUMMARY)], False))
    assert "token_type_ids" not in batch and torch.isfinite(model.compute_loss(batch))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_head_on_last_positions_equals_the_full_loss_and_padding_changes_nothing(family):
    """Our loss keeps only the summary's logits; it must equal the textbook full-sequence loss."""
    torch.manual_seed(0)
    model = tiny(family).eval()
    pairs = [(DIALOGUE, SUMMARY), ("#Person1#: 네.\n#Person2#: 좋아요.", "두 사람은 동의합니다.")]
    batch = model.processor.collator(False)(feats(model, pairs, False))
    with torch.no_grad():
        ours = model.compute_loss(batch)
        logits = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             position_ids=position_ids_for(batch["attention_mask"])).logits
        full = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=-100)
        alone = model.compute_loss(model.processor.collator(False)(feats(model, pairs[1:], False)))
        padded_row = model.processor.collator(False)(feats(model, pairs, False))
        padded_row = {k: v[1:] if isinstance(v, (torch.Tensor, list)) else v for k, v in padded_row.items()}
        assert padded_row["attention_mask"][0, 0] == 0  # really left-padded
        padded = model.compute_loss(padded_row)
    assert torch.allclose(ours, full, atol=1e-5)
    assert torch.allclose(alone, padded, atol=1e-4)


def test_the_collator_gives_the_summary_start_on_the_host_and_the_loss_uses_it(monkeypatch):
    """Read from the device in compute_loss, the start would wait for the GPU at every step."""
    from lightning_summ.data import collate
    from lightning_summ.models import causal

    torch.manual_seed(0)
    model = tiny().eval()
    pairs = [(DIALOGUE, SUMMARY), ("#Person1#: 네.\n#Person2#: 좋아요.", "두 사람은 동의합니다.")]
    batch = model.processor.collator(False)(feats(model, pairs, False))
    start = batch.pop("summary_start")
    assert isinstance(start, int) and start == causal.summary_start(batch["labels"]) > 0
    with torch.no_grad():
        expected = model.compute_loss(batch)  # a batch made by hand: computed from the labels
        monkeypatch.setattr(causal, "summary_start", lambda labels: pytest.fail("read in compute_loss"))
        assert torch.equal(model.compute_loss({**batch, "summary_start": start}), expected)
        # the given start is what the loss uses: a later one drops summary tokens
        assert not torch.equal(model.compute_loss({**batch, "summary_start": start + 3}), expected)
    validation = model.processor.collator(True)(feats(model, pairs, True))  # generation + a loss on the gold
    assert "summary_start" not in validation
    assert validation["loss_summary_start"] == collate.summary_start(validation["loss_labels"]) > 0


def test_only_new_tokens_are_decoded():
    model = tiny(generation=GenerationSettings(num_beams=1, max_new_tokens=3, min_new_tokens=3)).eval()
    batch = model.processor.collator(True)(feats(model, [(DIALOGUE, None), ("#Person1#: 네.", None)], True))
    cands = model.generate_candidates(batch)
    for (text, score), in cands:
        assert "### 대화" not in text and "지시" not in text
        assert len(model.tokenizer(text, add_special_tokens=False).input_ids) <= 3 + 1
        assert score <= 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lora_trains_adapters_and_new_tag_rows_in_fp32_and_checkpoints_only_them(family):
    model = tiny(family)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(p.dtype == torch.float32 for p in trainable.values())
    assert any("lora_A" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in trainable.values()) < total / 5
    ckpt = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(ckpt)
    assert set(ckpt["state_dict"]) == set(trainable)
    model.on_load_checkpoint(ckpt)  # round trip passes the completeness check
    with pytest.raises(ConfigError, match="lacks"):
        model.on_load_checkpoint({"state_dict": {}, "lightning_summ": {"processor": model.processor.state()}})


def test_qlora_loads_4bit_nf4_double_quant_with_compute_dtype(tmp_path):
    source = tiny(lora=None)
    source.model.save_pretrained(tmp_path / "m")
    source.tokenizer.save_pretrained(tmp_path / "m")
    model = CausalLMSummarizer(pretrained=str(tmp_path / "m"), lora=LoraSettings(r=4, alpha=8),
                               quantization=QuantizationSettings(), max_length=256)
    model.processor.fit_tags()
    model.configure_model()
    import bitsandbytes as bnb

    linear = [m for m in model.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear, "the base's linear layers must be 4-bit"
    q = linear[0].weight.quant_state
    assert q.quant_type == "nf4" and q.nested, "nf4 with double quantization"
    assert linear[0].compute_dtype == torch.float32  # no trainer: 32-true; bf16-mixed gives bfloat16
    batch = model.processor.collator(False)(feats(model, [(DIALOGUE, SUMMARY)], False))
    loss = model.compute_loss(batch)
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n)


@pytest.mark.parametrize("lora", [None, LoraSettings()], ids=["full", "lora"])
def test_gradient_checkpointing_reaches_the_network_with_or_without_lora(lora):
    assert tiny(lora=lora, gradient_checkpointing=True).model.is_gradient_checkpointing
    assert not tiny(lora=lora).model.is_gradient_checkpointing


def test_quantization_without_lora_is_refused():
    with pytest.raises(ValueError, match="QLoRA"):
        CausalLMSummarizer(tokenizer=TOKENIZER, lora=None, quantization=QuantizationSettings())


def test_soft_voting_with_one_decoder_only_model_is_exactly_hf_beam_search():
    from lightning_summ.decoding.soft_voting import soft_voting_beam_search

    torch.manual_seed(0)
    model = tiny("llama", lora=None).eval()
    with torch.no_grad():  # a sharper random model: beams actually diverge
        for p in model.model.parameters():
            p.mul_(3)
    batch = model.processor.collator(True)(feats(model, [(DIALOGUE, None), ("#Person1#: 네.", None)], True))
    assert batch["attention_mask"][1, 0] == 0  # left-padded rows are part of the check
    eos = model.eos_token_ids()
    for kw in [dict(num_beams=3, max_new_tokens=8), dict(num_beams=4, max_new_tokens=6, num_return_sequences=2,
                                                         min_new_tokens=2, no_repeat_ngram_size=2),
               dict(num_beams=3, max_new_tokens=8, repetition_penalty=1.5)]:
        hf = model.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  pad_token_id=model.tokenizer.pad_token_id, eos_token_id=eos, early_stopping=True,
                                  return_dict_in_generate=True, output_scores=True, **kw)
        ours = soft_voting_beam_search([model.model], batch["input_ids"], batch["attention_mask"],
                                       eos_token_id=eos, **kw)
        prompt = batch["input_ids"].shape[1]
        pad = model.tokenizer.pad_token_id
        assert [[t for t in s[prompt:].tolist() if t != pad] for s in hf.sequences] == [ids for row in ours for ids, _ in row]
        assert torch.allclose(hf.sequences_scores, torch.tensor([s for row in ours for _, s in row]), atol=1e-4)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_static_cache_reaches_generate_and_gives_the_same_candidates(num_beams):
    settings = dict(num_beams=num_beams, max_new_tokens=6, min_new_tokens=6)
    dynamic = tiny("qwen3", generation=GenerationSettings(**settings)).eval()
    static = tiny("qwen3", generation=GenerationSettings(**settings, static_cache=True)).eval()
    static.load_state_dict(dynamic.state_dict())
    batch = dynamic.processor.collator(True)(feats(dynamic, [(DIALOGUE, None), ("#Person1#: 네.", None)], True))
    seen = []
    original = static.model.generate
    static.model.generate = lambda **kw: seen.append(kw.get("cache_implementation")) or original(**kw)
    assert_same_candidates(static.generate_candidates(batch), dynamic.generate_candidates(batch))
    assert seen == ["static"]


def test_a_smaller_last_batch_reuses_the_static_cache_decoding_graph():
    """transformers compiles the static-cache decoding step (on CUDA; forced here on the CPU with the
    eager backend): in a Trainer stage the last, smaller batch is filled up to the batch size already
    compiled for, so dynamo does not recompile, and its candidates are those of the batch decoded
    alone; outside a stage (serve) batches are decoded as they come."""
    from torch._dynamo.utils import counters
    from transformers.generation.configuration_utils import CompileConfig

    settings = dict(num_beams=1, max_new_tokens=4, min_new_tokens=4)
    dynamic = tiny("qwen3", generation=GenerationSettings(**settings)).eval()
    static = tiny("qwen3", generation=GenerationSettings(**settings, static_cache=True)).eval()
    static.load_state_dict(dynamic.state_dict())
    config = CompileConfig(backend="eager")
    config._compile_all_devices = True  # transformers compiles on CUDA only by default
    static.model.generation_config.compile_config = config
    rows = [(DIALOGUE, None), ("#Person1#: 네.", None), ("#Person1#: 내일 봐요.", None)]
    full, last = (dynamic.processor.collator(True)(feats(dynamic, part, True)) for part in (rows, rows[:2]))
    torch._dynamo.reset()
    counters.clear()
    try:
        with patch.object(static, "_trainer", Trainer(logger=False, enable_progress_bar=False), create=True):
            static.generate_candidates(full)
            assert counters["frames"]["total"] > 0  # the decoding step really was compiled
            counters.clear()
            filled = static.generate_candidates(last)
        assert counters["frames"]["total"] == 0  # nothing compiled again
        assert_same_candidates(filled, dynamic.generate_candidates(last))
        counters.clear()
        static.generate_candidates(last)  # outside a Trainer stage (serve): not filled, so compiled anew
        assert counters["frames"]["total"] > 0
    finally:
        torch._dynamo.reset()  # compiled frames would linger into later tests


def test_padding_to_a_multiple_changes_shapes_not_the_loss_or_the_summaries():
    model = tiny("qwen3", generation=GenerationSettings(num_beams=2, max_new_tokens=4, min_new_tokens=4)).eval()
    pairs = [(DIALOGUE, SUMMARY), ("#Person1#: 네.", "#Person1#는 대답합니다.")]
    train, padded_train = (model.processor.collator(False, m)(feats(model, pairs, False)) for m in (1, 64))
    assert padded_train["input_ids"].shape[1] % 64 == 0 < padded_train["input_ids"].shape[1] - train["input_ids"].shape[1]
    assert torch.allclose(model.compute_loss(train), model.compute_loss(padded_train), atol=1e-5)
    gen, padded_gen = (model.processor.collator(True, m)(feats(model, pairs, True)) for m in (1, 64))
    assert padded_gen["input_ids"].shape[1] % 64 == 0
    assert_same_candidates(model.generate_candidates(gen), model.generate_candidates(padded_gen))
