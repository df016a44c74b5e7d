"""data.packing: several prompt + summary examples per row give the unpacked batch's loss and gradients."""

from __future__ import annotations

import pytest
import torch

from conftest import QUICKSTART, TINY
from lightning_summ.commands import main
from lightning_summ.data.collate import PackingCollator
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import ConfigError
from lightning_summ.processing import Seq2SeqProcessor
from tests.models.test_causal import DIALOGUE, SUMMARY, feats
from tests.models.test_chunked_loss import _loss_and_grads, _perturbed, assert_same_loss_and_grads

PAIRS = [(DIALOGUE, SUMMARY), ("#Person1#: 네.", "짧은 대답."), ("#Person2#: 내일 봐요.", "인사합니다."),
         (DIALOGUE + "\n#Person1#: 좋아요, 가요!", "#Person1#과 #Person2#는 국수를 먹으러 갑니다.")]


def _both(model, row_length):
    features = feats(model, PAIRS, False)
    unpacked = model.processor.collator(for_generation=False)(features)
    packed = PackingCollator(model.tokenizer.pad_token_id, row_length, pad_to_multiple_of=8)(features)
    return features, unpacked, packed


@pytest.mark.parametrize("family", ["llama", "qwen3", "gpt_neox"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_loss_and_gradients_equal_the_unpacked_batch(family, attention):
    model = _perturbed(family)
    model.model.get_base_model().set_attn_implementation(attention)
    sizes = [len(f["input_ids"]) for f in feats(model, PAIRS, False)]
    features, unpacked, packed = _both(model, row_length=max(sizes) + min(sizes) + 2)  # two per row
    assert 1 < packed["input_ids"].shape[0] < len(PAIRS) and "attention_mask" not in packed
    # the loss counts the same tokens: every summary token (and EOS) of the batch, once
    assert int((packed["labels"] != -100).sum()) == int((unpacked["labels"] != -100).sum())
    reference_loss, reference_grads = _loss_and_grads(model, unpacked)
    for chunk in (None, 5):
        model.loss_chunk_size = chunk
        assert_same_loss_and_grads(model, packed, reference_loss, reference_grads)


def test_rows_restart_positions_per_example_and_never_target_the_next_example():
    model = _perturbed("llama")
    features, _, packed = _both(model, row_length=400)
    ids, labels, positions = packed["input_ids"], packed["labels"], packed["position_ids"]
    assert ids.shape[0] == 1 and ids.shape[1] % 8 == 0  # all four fit in one row, padded to a multiple of 8
    starts = (positions[0] == 0).nonzero().flatten().tolist()
    sizes = sorted(len(f["input_ids"]) for f in features)
    assert len(starts) == len(PAIRS) + 1  # four examples and the padding block
    assert sorted(b - a for a, b in zip(starts, starts[1:])) == sizes
    assert all(labels[0, s] == -100 for s in starts)
    assert (labels[0, starts[-1]:] == -100).all() and (ids[0, starts[-1]:] == model.tokenizer.pad_token_id).all()


def test_without_use_cache_false_the_packed_examples_would_see_each_other():
    """Why the packed loss passes use_cache=False: with a cache transformers skips the packed mask."""
    model = _perturbed("qwen3")
    _, _, packed = _both(model, row_length=400)
    backbone, _ = model._backbone_and_head()
    kwargs = {"input_ids": packed["input_ids"], "position_ids": packed["position_ids"]}
    with torch.no_grad():
        separate = backbone(**kwargs, use_cache=False).last_hidden_state
        mixed = backbone(**kwargs, use_cache=True).last_hidden_state
    assert not torch.allclose(separate, mixed, atol=1e-4)


def test_packing_reaches_the_training_loader():
    model = _perturbed("llama")
    dm = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                 val_path="pkg://sample_data/dev.csv", batch_size=8,
                                 packing=True)
    dm.setup("fit")
    seen = []
    for batch in dm.train_dataloader():
        assert "position_ids" in batch and "attention_mask" not in batch
        assert batch["input_ids"].shape[1] <= model.processor.max_length
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(dm.features["train"])))


def test_packing_is_refused_for_seq2seq_models(tmp_path, monkeypatch, capsys):
    dm = SummarizationDataModule(Seq2SeqProcessor("pkg://assets/quickstart-tokenizer"),
                                 train_path="pkg://sample_data/train.csv", val_path="pkg://sample_data/dev.csv",
                                 packing=True)
    with pytest.raises(ConfigError, match="data.packing is for decoder-only models"):
        dm.setup("fit")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(QUICKSTART), *TINY, "--data.packing=true"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.packing is for decoder-only models" in err


def test_a_packed_fit_trains(tmp_path):
    from lightning.pytorch import Trainer

    model = _perturbed("gpt_neox")
    dm = SummarizationDataModule(model.processor, train_path="pkg://sample_data/train.csv",
                                 val_path="pkg://sample_data/dev.csv", batch_size=16, packing=True,
                                 max_tokens_per_batch=2048)
    trainer = Trainer(max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3 and torch.isfinite(trainer.callback_metrics["train/loss"])
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)
