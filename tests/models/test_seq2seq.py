"""Seq2SeqSummarizer pieces, checked directly on a tiny BART built from a config."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_summ import GenerationSettings, Seq2SeqSummarizer, SummarizationDataModule
from lightning_summ.decoding.generate import SoftVoting
from lightning_summ.processing import with_eos
from lightning_summ.precision import PrecisionError

TOKENIZER = "pkg://assets/quickstart-tokenizer"
TINY_BART = {"model_type": "bart", "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
             "decoder_ffn_dim": 64, "max_position_embeddings": 128}
DIALOGUE = "#Person1#: 내일 몇 시에 만날까요?\n#Person2#: 오후 세 시 어때요? 제 번호는 #PhoneNumber#예요."


def tiny_model(**kwargs) -> Seq2SeqSummarizer:
    kwargs.setdefault("model_config", TINY_BART)
    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, max_source_length=24, max_target_length=8, **kwargs)
    model.processor.fit_tags()
    model.configure_model()
    return model


def test_with_eos_truncates_but_keeps_the_end_marker():
    assert with_eos([5, 6, 7, 8, 2], 2, 3) == [5, 6, 2]
    assert with_eos([5, 6], 2, 10) == [5, 6, 2]
    assert with_eos([5, 6, 7], None, 2) == [5, 6]


def test_encode_truncates_the_dialogue_and_summary_to_their_limits():
    model = tiny_model()
    feat = model.processor.encode(DIALOGUE * 5, "#Person1#과 #Person2#는 약속 시간을 정합니다. " * 4, for_generation=False)
    eos = model.tokenizer.eos_token_id
    assert len(feat["input_ids"]) == 24 and feat["input_ids"][-1] == eos
    assert len(feat["labels"]) == 8 and feat["labels"][-1] == eos
    assert "labels" not in model.processor.encode(DIALOGUE, None, for_generation=True)


def test_tags_are_single_tokens_and_survive_decoding():
    model = tiny_model()
    ids = model.tokenizer(DIALOGUE).input_ids
    pieces = model.tokenizer.convert_ids_to_tokens(ids)
    assert "#PhoneNumber#" in pieces and "#Person2#" in pieces
    assert model.tokenizer.decode(ids, skip_special_tokens=True) == DIALOGUE
    assert model.model.get_input_embeddings().num_embeddings == len(model.tokenizer)


TRAINING_PAIRS = [(DIALOGUE, "요약"), ("#Person1#: 네.", "더 긴 요약 문장입니다.")]  # (dialogue, summary)


def training_batch(model):
    """``TRAINING_PAIRS`` collated for training: two rows of different lengths (padding in both fields)."""
    feats = [dict(model.processor.encode(d, s, False), index=i, fname=f"f{i}", references=[s])
             for i, (d, s) in enumerate(TRAINING_PAIRS)]
    return model.processor.collator(for_generation=False)(feats)


def test_collator_pads_labels_with_ignore_index_and_loss_uses_label_smoothing():
    model = tiny_model()
    batch = training_batch(model)
    longest = max(len(model.processor.encode(d, s, False)["labels"]) for d, s in TRAINING_PAIRS)
    assert batch["labels"].shape == batch["input_ids"].shape[:1] + (longest,)
    assert (batch["labels"] == -100).any() and (batch["attention_mask"] == 0).any()
    torch.manual_seed(0)
    plain = model.compute_loss(batch)
    model.label_smoothing = 0.1
    smoothed = model.compute_loss(batch)
    assert torch.isfinite(plain) and not torch.isclose(plain, smoothed)


def test_loss_equals_the_models_own_without_giving_it_the_labels():
    """The model gets the decoder inputs it would shift from the labels, never the labels (it would
    compute a second cross-entropy nobody reads); the loss is the one the model computes from labels."""
    model = tiny_model()
    model.model.eval()  # no dropout: two forwards comparable
    batch = training_batch(model)
    seen = []
    model.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
    labels = batch["labels"].clone()
    ours = model.compute_loss(batch)
    assert "labels" not in seen[0] and "decoder_input_ids" in seen[0] and len(seen) == 1
    assert seen[0]["use_cache"] is False and torch.equal(batch["labels"], labels)  # labels left as they were
    reference = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            labels=batch["labels"]).loss
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)


def test_generate_candidates_returns_scored_candidates_per_input():
    model = tiny_model(generation=GenerationSettings(num_beams=3, num_return_sequences=2, max_new_tokens=5))
    model.eval()
    feats = [dict(model.processor.encode(DIALOGUE, None, True), index=i, fname=f"f{i}", references=["x"]) for i in range(3)]
    batch = model.processor.collator(for_generation=True)(feats)
    cands = model.generate_candidates(batch)
    assert len(cands) == 3 and all(len(c) == 2 for c in cands)
    assert all(isinstance(t, str) and isinstance(s, float) and c[0][1] >= c[1][1] for c in cands for t, s in c)
    greedy = tiny_model(generation=GenerationSettings(num_beams=1, max_new_tokens=5, min_new_tokens=5))
    greedy.eval()
    (text, score), = greedy.generate_candidates(batch)[0]
    assert score <= 0.0


def test_sampling_options_are_refused_without_do_sample():
    with pytest.raises(ValueError, match="do_sample"):
        GenerationSettings(num_beams=1, num_return_sequences=2).generate_kwargs()
    kwargs = GenerationSettings(do_sample=True, top_p=0.9, num_beams=1).generate_kwargs()
    assert kwargs["top_p"] == 0.9 and "length_penalty" not in kwargs


def test_from_pretrained_local_directory_loads_weights_in_train_mode(tmp_path):
    source = tiny_model()
    source.model.save_pretrained(tmp_path / "model")
    source.tokenizer.save_pretrained(tmp_path / "model")
    loaded = Seq2SeqSummarizer(pretrained=str(tmp_path / "model"), model_config={"dropout": 0.3})
    loaded.configure_model()
    assert loaded.model.training, "from_pretrained returns eval mode; we must switch back to train"
    assert loaded.model.config.dropout == 0.3
    for (name, a), (_, b) in zip(source.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_random_init_needs_a_model_type():
    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config={"d_model": 32})
    with pytest.raises(ValueError, match="model_type"):
        model.configure_model()


def test_bf16_weights_with_fp16_grad_scaler_fail_at_fit_start(tmp_path):
    """The seed's crash, reproduced with the real module: refused with one line before any step."""
    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config=TINY_BART, dtype="bfloat16")
    data = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                   val_path="pkg://sample_data/dev.csv",
                                   batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         num_sanity_val_steps=0,
                         plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))])
    with pytest.raises(PrecisionError, match="GradScaler") as err:
        trainer.fit(model, data)
    assert "\n" not in str(err.value)


def _fit_one_step(tmp_path, precision, plugins=None, **optim):
    from lightning_summ import OptimizerSettings

    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config=TINY_BART, optimizer=OptimizerSettings(**optim))
    data = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                   val_path="pkg://sample_data/dev.csv",
                                   batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                         limit_val_batches=0, gradient_clip_val=1e-3, precision=precision, plugins=plugins)
    trainer.fit(model, data)
    return model, trainer


def test_fused_adamw_with_gradient_clipping_under_bf16_mixed(tmp_path):
    """Lightning refuses this combination outright; without a GradScaler it is safe, so we clip ourselves."""
    model, trainer = _fit_one_step(tmp_path, "bf16-mixed", fused=True)
    assert trainer.global_step == 2
    assert trainer.optimizers[0].defaults["fused"] is True


def test_grad_scaler_with_clipping_uses_the_unfused_optimizer_or_refuses_fused(tmp_path):
    scaler = [MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))]
    model, trainer = _fit_one_step(tmp_path, None, plugins=scaler)
    assert not trainer.optimizers[0].defaults["fused"] and trainer.global_step == 2
    with pytest.raises(PrecisionError, match="clip scaled gradients"):
        _fit_one_step(tmp_path, None, plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))],
                      fused=True)


def test_soft_voting_with_one_model_is_exactly_hf_beam_search():
    from lightning_summ.decoding.soft_voting import soft_voting_beam_search

    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():  # a sharper random model: beams actually diverge
        for p in model.model.parameters():
            p.mul_(3)
    feats = [dict(model.processor.encode(d, None, True), index=i, fname=str(i), references=["x"])
             for i, d in enumerate([DIALOGUE, "#Person1#: 네 알겠습니다.", DIALOGUE[:30]])]
    batch = model.processor.collator(True)(feats)
    gen = model.model.generation_config
    for kw in [dict(num_beams=4, max_new_tokens=12), dict(num_beams=4, max_new_tokens=8, num_return_sequences=2),
               dict(num_beams=3, max_new_tokens=10, min_new_tokens=4, length_penalty=1.5, no_repeat_ngram_size=2),
               dict(num_beams=4, max_new_tokens=10, repetition_penalty=1.3)]:
        hf = model.model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  early_stopping=True, return_dict_in_generate=True, output_scores=True, **kw)
        ours = soft_voting_beam_search([model.model], batch["input_ids"], batch["attention_mask"],
                                       decoder_start_token_id=model.model.config.decoder_start_token_id,
                                       eos_token_id=model.tokenizer.eos_token_id,
                                       forced_bos_token_id=gen.forced_bos_token_id,
                                       forced_eos_token_id=gen.forced_eos_token_id, **kw)
        pad = model.tokenizer.pad_token_id
        assert [[t for t in s[1:].tolist() if t != pad] for s in hf.sequences] == [ids for row in ours for ids, _ in row]
        assert torch.allclose(hf.sequences_scores, torch.tensor([s for row in ours for _, s in row]), atol=1e-4)


def test_static_cache_gives_the_same_beam_search_and_is_refused_by_soft_voting():
    dynamic = tiny_model(generation=GenerationSettings(num_beams=4, max_new_tokens=6, min_new_tokens=6)).eval()
    static = tiny_model(generation=GenerationSettings(num_beams=4, max_new_tokens=6, min_new_tokens=6,
                                                      static_cache=True)).eval()
    static.load_state_dict(dynamic.state_dict())
    assert static.generation.generate_kwargs()["cache_implementation"] == "static"
    batch = static.processor.collator(True)([dict(static.processor.encode("#Person1#: 안녕하세요. 오늘 날씨 좋네요.", None, True),
                                        index=0, fname="a", references=[""])])
    assert static.generate_candidates(batch) == dynamic.generate_candidates(batch)
    static.decoder = SoftVoting([dynamic.model])
    with pytest.raises(ValueError, match="static_cache"):
        static.generate_candidates(batch)


def test_dynamic_cache_generation_on_cuda_avoids_cudnn_attention_and_static_keeps_it():
    from lightning_summ.decoding.attention import attention_for_generation

    assert torch.backends.cuda.cudnn_sdp_enabled()
    with attention_for_generation(False, torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()  # a plan per decoding step otherwise
        assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with attention_for_generation(True, torch.device("cuda")), attention_for_generation(False, torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled()


def test_a_t5_from_a_config_gets_a_decoder_start_and_trains():
    """T5's config has no ``decoder_start_token_id`` attribute until one is set (it raised before)."""
    model = tiny_model(model_config={"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 1,
                                     "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16})
    assert model.decoder_start_token_id == model.tokenizer.eos_token_id
    assert torch.isfinite(model.compute_loss(training_batch(model)))
