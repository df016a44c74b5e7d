"""Train-time augmentation (``data.augment``): seeded per epoch, tags intact, training rows only,
the right number of steps in add mode (through a real Lightning fit)."""

from __future__ import annotations

import json
import math

import pytest
from fastapi import FastAPI, Request  # module level: FastAPI resolves the string annotations here

from lightning_summ.data.augment import TARGET_MAPS, AugmentedTrainSet, AugmentSettings, training_rows
from lightning_summ.data.collate import collate_metadata
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import ConfigError
from lightning_summ.io import Example, read_examples
from lightning_summ.paths import PACKAGE_DIR
from lightning_summ.processing import SummaryProcessor
from lightning_summ.tags import find_tags

TRAIN = PACKAGE_DIR / "sample_data" / "train.csv"
ALL = ["speaker_swap", "filler_removal", "sentence_split", "synonym"]


class CharProcessor(SummaryProcessor):
    """Tokens are code points: enough to see which dialogue a feature was built from."""

    family = "chars"

    def encode(self, dialogue, summary, for_generation):
        target = [ord(c) for c in summary] if summary is not None else []
        return {"input_ids": [ord(c) for c in dialogue] + ([] if for_generation else target), "labels": target}

    def collator(self, for_generation, pad_to_multiple_of=1):
        return collate_metadata


def dataset(settings: AugmentSettings, seed: int = 1) -> AugmentedTrainSet:
    processor = CharProcessor()
    return AugmentedTrainSet(training_rows(read_examples(TRAIN)), lambda rows: processor.features(rows, "train"),
                             settings, seed)


def texts(ds: AugmentedTrainSet) -> list[tuple[str, str]]:
    return [(f["dialogue"], f["references"][0]) for f in ds.items]


def test_draws_are_seeded_per_epoch():
    settings = AugmentSettings(augmenters=ALL, ratio=0.5)
    a, b = dataset(settings), dataset(settings)
    assert texts(a) == texts(b)  # same seed, same epoch
    epoch0 = texts(a)
    a.set_epoch(1)
    assert texts(a) != epoch0  # a new draw each epoch ...
    b.set_epoch(1)
    assert texts(a) == texts(b)  # ... the same in every process
    a.set_epoch(0)
    assert texts(a) == epoch0
    assert texts(dataset(settings, seed=2)) != epoch0
    rows = training_rows(read_examples(TRAIN))
    changed = sum(t != (r.dialogue, r.summaries[0]) for t, r in zip(epoch0, rows))
    assert 0.9 * round(0.5 * len(rows)) < changed <= round(0.5 * len(rows))


def test_masked_tags_kept_and_speaker_swap_maps_the_summary():
    ds = dataset(AugmentSettings(augmenters=ALL, ratio=1.0))
    rows = training_rows(read_examples(TRAIN))
    masks = lambda text: {t for t in find_tags([text]) if not t.startswith("#Person")}  # noqa: E731
    swapped = 0
    for row, feat in zip(rows, ds.items):
        dialogue, summary = feat["dialogue"], feat["references"][0]
        assert masks(dialogue) == masks(row.dialogue) and masks(summary) == masks(row.summaries[0])
        if dialogue != row.dialogue and TARGET_MAPS["speaker_swap"](row.dialogue) == dialogue:
            swapped += 1
            assert summary == TARGET_MAPS["speaker_swap"](row.summaries[0])
        else:
            assert summary == row.summaries[0]
    assert swapped > 10 and len(ds.augmented) > 0.8 * len(rows)


def test_a_rewrite_that_breaks_a_tag_is_dropped(tmp_path):
    lexicon = tmp_path / "lexicon.json"
    lexicon.write_text(json.dumps({"사람": ["인간"], "회의": ["미팅"]}, ensure_ascii=False), encoding="utf-8")
    processor = CharProcessor()
    rows = [Example("a", "#Person1#: #사람# 씨와 회의해요.", ["#Person1#이 #사람#과 회의한다."]),
            Example("b", "#Person1#: 사람이 많은 회의예요.", ["회의에 사람이 많다."])]
    ds = AugmentedTrainSet(rows, lambda r: processor.features(r, "train"),
                           AugmentSettings(augmenters=["synonym"], ratio=1.0, lexicon=str(lexicon)), seed=0)
    assert [f["dialogue"] for f in ds.items] == [rows[0].dialogue, "#Person1#: 인간이 많은 미팅예요."]


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="back_translate.*cannot be used for training"):
        AugmentSettings(augmenters=["back_translate"])
    with pytest.raises(ConfigError, match="ratio must be in"):
        AugmentSettings(ratio=1.5)
    with pytest.raises(ConfigError, match="mode must be one of"):
        AugmentSettings(mode="double")
    with pytest.raises(ConfigError, match="llm_paraphrase augmenter needs paraphrase_api"):
        dataset(AugmentSettings(augmenters=["llm_paraphrase"]))


def test_never_on_validation_test_or_predict():
    data = SummarizationDataModule(CharProcessor(), train_path=str(TRAIN), val_path=str(TRAIN), test_path=str(TRAIN),
                                   predict_path=str(TRAIN), batch_size=8,
                                   augment=AugmentSettings(augmenters=["speaker_swap"], ratio=1.0))
    data.setup("fit")
    assert "train" not in data.features  # not encoded twice: the augmented set encodes the training rows
    original = {ex.dialogue for ex in read_examples(TRAIN)}
    train = [d for batch in data.train_dataloader() for d in batch["dialogue"]]
    assert sum(d not in original for d in train) > 100
    for loader in (data.val_dataloader(), data.test_dataloader(), data.predict_dataloader()):
        assert {d for batch in loader for d in batch["dialogue"]} == original


def test_steps_per_epoch_in_add_mode_through_a_real_fit(cli_run):
    mode = "add"
    cli = cli_run("fit", "--trainer.max_epochs=2", "--trainer.limit_val_batches=1", "--trainer.logger=false",
                  "--trainer.enable_checkpointing=false", "--trainer.callbacks=[]",
                  '--data.augment={"augmenters": ["speaker_swap", "sentence_split"], "ratio": 0.5, "mode": "%s"}' % mode)
    rows = len(read_examples(TRAIN))
    per_epoch = math.ceil((rows + (round(0.5 * rows) if mode == "add" else 0)) / cli.datamodule.batch_size)
    assert cli.trainer.num_training_batches == per_epoch
    assert cli.trainer.global_step == 2 * per_epoch
    assert cli.trainer.train_dataloader.batch_sampler.dataset.epoch == 1  # Lightning re-drew for epoch 1


def test_llm_paraphrase_rewrites_dialogues_only_through_the_cached_api(tmp_path, monkeypatch):
    """A stand-in paraphrasing endpoint on loopback (real HTTP, the real API client): training rows get the
    paraphrased dialogue with their summary unchanged; a second run is answered from the client's cache."""
    import time

    from test_api import serving

    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    async def paraphrase(request: Request):
        dialogue = (await request.json())["messages"][-1]["content"].split("\n\n", 1)[1]
        seen.append(dialogue)
        return {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": "p",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": dialogue.replace("?", "?!")}}]}

    monkeypatch.setenv("LS_PARA_KEY", "k")
    rows = [r for r in training_rows(read_examples(TRAIN)) if "?" in r.dialogue][:4]
    processor = CharProcessor()
    with serving(app) as url:
        settings = AugmentSettings(augmenters=["llm_paraphrase"], ratio=1.0, paraphrase_api={
            "base_url": url, "model": "p", "api_key_env": "LS_PARA_KEY", "cache_dir": str(tmp_path / "cache")})
        first = AugmentedTrainSet(rows, lambda r: processor.features(r, "train"), settings, seed=0)
        again = AugmentedTrainSet(rows, lambda r: processor.features(r, "train"), settings, seed=0)
    assert len(seen) == 4  # the second set came from the cache
    for row, feat, other in zip(rows, first.items, again.items):
        assert feat["dialogue"] == row.dialogue.replace("?", "?!") == other["dialogue"]
        assert feat["references"] == row.summaries
