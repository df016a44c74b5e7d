"""SummarizationDataModule with a stand-in processor: folds, stage files, features, loaders, tag registration."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lightning_summ.data.collate import collate_metadata, pad_left, pad_right
from lightning_summ.data.datamodule import SummarizationDataModule, fold_split
from lightning_summ.errors import ConfigError
from lightning_summ.io import DataError, Example, read_examples
from lightning_summ.tags import KNOWN_TAGS
from lightning_summ.paths import PACKAGE_DIR
from lightning_summ.processing import SummaryProcessor

# Small Korean dialogues written for these tests; lengths vary so that length bucketing matters.
PHRASES = ["안녕하세요.", "내일 회의는 몇 시예요?", "오후 세 시에 시작해요.", "자료는 미리 보내 주세요.",
           "점심은 비빔밥으로 할까요?", "좋아요, 같이 가요.", "택시를 부를게요.", "주말에 영화 볼래요?"]


def dialogue(i: int) -> str:
    turns = [f"#Person{1 + t % 2}#: {PHRASES[(i + t) % len(PHRASES)]}" for t in range(1 + i % 6)]
    return "\n".join(turns)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_jsonl(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


class FakeProcessor(SummaryProcessor):
    """A processor without a tokenizer: tokens are the characters' code points."""

    family = "fake"

    def __init__(self):
        super().__init__()
        self.encode_calls = 0

    @property
    def registered(self):
        return self.tags

    def encode(self, dialogue, summary, for_generation):
        self.encode_calls += 1
        source = [ord(c) for c in dialogue]
        target = [ord(c) for c in summary] if summary is not None else []
        return {"input_ids": source if for_generation else source + target, "labels": target,
                "for_generation": for_generation}

    def collator(self, for_generation, pad_to_multiple_of=1):
        pad = pad_left if for_generation else pad_right

        def collate(features):
            batch = collate_metadata(features)
            batch["input_ids"] = pad([f["input_ids"] for f in features], 0, pad_to_multiple_of)
            batch["for_generation"] = [f["for_generation"] for f in features]
            return batch

        return collate


@pytest.fixture
def files(tmp_path):
    n_train = 40
    train_rows = [[f"train_{i}", dialogue(i), f"#Person1#이 {PHRASES[i % 8]} 라고 말한다.", "일상"] for i in range(n_train)]
    train_rows[3][1] += "\n#Person2#: 제 주소는 #Email#로 보낼게요."
    train_rows[7][2] = "#Person2#는 #Foo#를 언급한다."
    val_rows = [[f"dev_{i}", dialogue(i + 1), f"요약 {i}", "일상"] for i in range(12)]
    val_rows[0][1] += "\n#Person1#: #OnlyInVal# 확인해 주세요."
    test_rows = [[f"test_{i}", dialogue(i + 2), f"시험 요약 {i}"] for i in range(9)]
    predict_rows = [[f"pred_{i}", dialogue(i * 5 % 17)] for i in range(17)]
    predict_rows[2][1] += "\n#Person2#: #OnlyInPredict# 입니다."
    multi = [{"fname": f"m_{i}", "dialogue": dialogue(i),
              **{f"summary{k}": f"참고 요약 {k}-{i}" for k in range(1, 4 if i % 4 else 3)},
              "topic1": "일상"} for i in range(12)]
    return SimpleNamespace(
        train=write_csv(tmp_path / "train.csv", ["fname", "dialogue", "summary", "topic"], train_rows),
        val=write_csv(tmp_path / "dev.csv", ["fname", "dialogue", "summary", "topic"], val_rows),
        test=write_csv(tmp_path / "test.csv", ["fname", "dialogue", "summary"], test_rows),
        predict=write_csv(tmp_path / "predict.csv", ["fname", "dialogue"], predict_rows),
        multi=write_jsonl(tmp_path / "multi.jsonl", multi),
        n_train=n_train,
    )


def connected(processor=None, **kwargs) -> tuple[SummarizationDataModule, FakeProcessor]:
    processor = processor or FakeProcessor()
    dm = SummarizationDataModule(processor, **kwargs)
    dm.fit_processor()
    return dm, processor


# -- fold_split -------------------------------------------------------------------------------------

def examples(n: int) -> list[Example]:
    return [Example(f"f{i}", f"대화 {i}", [f"요약 {i}"]) for i in range(n)]


@pytest.mark.parametrize("n, k", [(23, 5), (10, 2), (7, 7), (50, 3)])
def test_fold_split_disjoint_and_covering(n, k):
    data = examples(n)
    held_out = []
    for fold in range(k):
        train, val = fold_split(data, fold, k, seed=42)
        assert {e.fname for e in train}.isdisjoint(e.fname for e in val)
        assert len(train) + len(val) == n
        assert n // k <= len(val) <= -(-n // k)
        # Both sides keep file order.
        assert [e.fname for e in train] == [e.fname for e in data if e in train]
        assert [e.fname for e in val] == [e.fname for e in data if e in val]
        held_out += [e.fname for e in val]
    assert sorted(held_out) == sorted(e.fname for e in data)  # every row validates exactly once


def test_fold_split_is_deterministic_and_seeded():
    data = examples(30)
    assert fold_split(data, 1, 5, seed=7) == fold_split(data, 1, 5, seed=7)
    assert fold_split(data, 1, 5, seed=7)[1] != fold_split(data, 1, 5, seed=8)[1]
    assert fold_split(data, 1, 5, seed=7)[1] != fold_split(data, 2, 5, seed=7)[1]


@pytest.mark.parametrize("fold, k, option", [(-1, 5, "data.fold"), (5, 5, "data.fold"), (0, 0, "data.num_folds"),
                                             (0, 1, "data.num_folds")])
def test_fold_split_rejects_bad_fold(fold, k, option):
    with pytest.raises(ConfigError, match=option):
        fold_split(examples(10), fold, k, seed=0)
    with pytest.raises(ConfigError, match=option):  # at construction, not mid-run
        SummarizationDataModule(FakeProcessor(), fold=fold, num_folds=k)


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("batch_size", -4), ("eval_batch_size", -1),
                                           ("num_workers", -1), ("pool_factor", 0), ("pad_to_multiple_of", 0)])
def test_bad_numbers_are_refused_naming_the_option(option, value):
    with pytest.raises(ConfigError, match=f"data.{option} must be >= "):
        SummarizationDataModule(FakeProcessor(), **{option: value})


def test_a_datamodule_without_processor_says_how_to_get_one(files):
    with pytest.raises(ConfigError, match="processor=model.processor"):
        SummarizationDataModule(train_path=files.train).setup("fit")


# -- configuration errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"fold": 0}, {"num_folds": 5}])
def test_fold_and_num_folds_go_together(kwargs, files):
    with pytest.raises(ConfigError, match="num_folds"):
        SummarizationDataModule(train_path=files.train, **kwargs)


@pytest.mark.parametrize("stage, configured, option", [
    ("test", {"train_path": "train"}, "data.test_path"),
    ("predict", {"train_path": "train", "test_path": "test"}, "data.predict_path"),
    ("validate", {"train_path": "train"}, "data.val_path"),
    ("fit", {"train_path": "train"}, "data.val_path"),
    ("fit", {"val_path": "val"}, "data.train_path"),
])
def test_missing_path_for_a_stage_names_the_option(files, stage, configured, option):
    dm, _ = connected(**{key: getattr(files, value) for key, value in configured.items()})
    with pytest.raises(DataError) as info:
        dm.setup(stage)
    assert option in str(info.value) and "\n" not in str(info.value)


def test_folds_without_train_path(files):
    dm = SummarizationDataModule(FakeProcessor(), val_path=files.val, fold=0, num_folds=3)
    with pytest.raises(DataError, match="data.train_path"):
        dm.setup("fit")


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="nope.csv"):
        connected(train_path=missing)


def test_pkg_paths_resolve_into_the_package():
    dm = SummarizationDataModule(train_path="pkg://sample_data/train.csv", predict_path="relative/x.csv")
    assert Path(dm.train_path) == PACKAGE_DIR / "sample_data" / "train.csv"
    assert dm.predict_path == "relative/x.csv"


@pytest.mark.parametrize("name, with_summary", [("train.csv", True), ("dev.csv", True), ("test.csv", False)])
def test_shipped_sample_data_loads(name, with_summary):
    path = PACKAGE_DIR / "sample_data" / name
    if not path.is_file():
        pytest.skip(f"{path} is not shipped (yet)")
    rows = read_examples(path, require_summary=with_summary)
    assert rows and all(e.dialogue for e in rows)


# -- folds in the DataModule --------------------------------------------------------------------------

def test_fold_validates_on_held_out_part_of_train_file(files, caplog):
    with caplog.at_level(logging.WARNING):
        dm, model = connected(train_path=files.train, val_path=files.val, fold=2, num_folds=4, seed=5)
        dm.setup("fit")
    train, val = fold_split(read_examples(files.train, require_summary=True), 2, 4, seed=5)
    assert dm.examples["train"] == train and dm.examples["val"] == val
    assert {f["fname"] for f in dm.features["val"]} == {e.fname for e in val}
    assert not {f["fname"] for f in dm.features["train"]} & {e.fname for e in val}
    assert not any(f["fname"].startswith("dev_") for split in ("train", "val") for f in dm.features[split])
    assert "val_path" in caplog.text  # the ignored val_path is said out loud
    # Another fold holds out other rows.
    other, _ = connected(train_path=files.train, fold=3, num_folds=4, seed=5)
    other.setup("validate")
    assert {e.fname for e in other.examples["val"]}.isdisjoint(e.fname for e in val)


# -- features and loaders ----------------------------------------------------------------------------

def test_fit_features_single_reference(files):
    dm, model = connected(train_path=files.train, val_path=files.val, batch_size=4)
    dm.setup("fit")
    train, val = dm.features["train"], dm.features["val"]
    assert len(train) == files.n_train and len(val) == 12
    for split, feats in (("train", train), ("val", val)):
        rows = read_examples(getattr(files, "train" if split == "train" else "val"))
        assert [f["index"] for f in feats] == list(range(len(rows)))
        assert [f["fname"] for f in feats] == [e.fname for e in rows]
        assert [f["references"] for f in feats] == [e.summaries for e in rows]
        assert all(f["for_generation"] is (split == "val") for f in feats)
    assert all(f["labels"] for f in train)
    calls = model.encode_calls
    dm.setup("fit")  # features are cached, not encoded again
    assert model.encode_calls == calls


def test_multi_reference_training_expands_and_eval_keeps_all(files):
    dm, _ = connected(train_path=files.multi, val_path=files.multi, test_path=files.multi)
    dm.setup("fit")
    dm.setup("test")
    rows = read_examples(files.multi)
    n_refs = [len(e.summaries) for e in rows]
    assert set(n_refs) == {2, 3}
    train = dm.features["train"]
    assert len(train) == sum(n_refs)
    # One feature per (example, reference), each with its own target but all references attached.
    for i, example in enumerate(rows):
        mine = [f for f in train if f["index"] == i]
        assert [f["labels"] for f in mine] == [[ord(c) for c in s] for s in example.summaries]
        assert all(f["fname"] == example.fname and f["references"] == example.summaries for f in mine)
    for split in ("val", "test"):
        feats = dm.features[split]
        assert len(feats) == len(rows)
        assert [f["references"] for f in feats] == [e.summaries for e in rows]
        assert [f["index"] for f in feats] == list(range(len(rows)))


def test_train_dataloader_covers_training_set(files):
    dm, _ = connected(train_path=files.multi, val_path=files.val, batch_size=4, pool_factor=2)
    dm.setup("fit")
    seen = Counter()
    for batch in dm.train_dataloader():
        assert batch["input_ids"].shape[0] == len(batch["fname"]) <= 4
        assert not any(batch["for_generation"])
        seen.update(batch["index"].tolist())
    rows = read_examples(files.multi)
    assert seen == Counter({i: len(e.summaries) for i, e in enumerate(rows)})


@pytest.mark.parametrize("last_batch, sizes", [("keep", [7] * 5 + [5]), ("fill", [7] * 6), ("drop", [7] * 5)])
def test_last_batch_reaches_the_training_loader(files, last_batch, sizes):
    dm, _ = connected(train_path=files.train, val_path=files.val, batch_size=7, last_batch=last_batch)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert sorted(len(b["fname"]) for b in batches) == sorted(sizes)
    seen = {i for b in batches for i in b["index"].tolist()}
    assert len(seen) == (35 if last_batch == "drop" else files.n_train)


@pytest.mark.parametrize("kwargs, message", [
    ({"last_batch": "pad"}, "data.last_batch must be one of keep, fill, drop, got 'pad'"),
    ({"last_batch": "fill", "max_tokens_per_batch": 512}, "data.last_batch 'fill' applies to batches of data.batch_size")])
def test_last_batch_is_checked_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SummarizationDataModule(FakeProcessor(), **kwargs)


@pytest.mark.parametrize("setting, device, pinned", [(None, "cpu", False), (None, "cuda", True), (False, "cuda", False),
                                                    (True, "cpu", True)])
def test_pin_memory_follows_the_trainer_device_unless_set(files, setting, device, pinned):
    dm, _ = connected(train_path=files.train, val_path=files.val, batch_size=4, pin_memory=setting)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), world_size=1,
                                 global_rank=0)
    dm.setup("fit")
    assert dm.train_dataloader().pin_memory is pinned and dm.val_dataloader().pin_memory is pinned


def test_batch_transfer_moves_tensors_only_and_keeps_the_metadata_lists(files):
    dm, _ = connected(train_path=files.multi, val_path=files.val, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    moved = dm.transfer_batch_to_device(batch, torch.device("meta"), 0)
    inputs = {k for k, v in batch.items() if isinstance(v, torch.Tensor)} - {"index"}
    assert "input_ids" in inputs and all(moved[k].device.type == "meta" for k in inputs)
    # the very same lists and row index (Lightning's default rebuilds each list, element by element,
    # and moves the index, which predict then reads back row by row)
    assert all(moved[k] is batch[k] for k in set(batch) - inputs) and set(moved) == set(batch)
    assert isinstance(batch["fname"], list) and moved["index"].device.type == "cpu"


def test_pad_to_multiple_of_reaches_training_and_generation_batches(files):
    dm, _ = connected(train_path=files.train, val_path=files.val, batch_size=4, eval_batch_size=5,
                      pad_to_multiple_of=16)
    dm.setup("fit")
    widths = {b["input_ids"].shape[1] for loader in (dm.train_dataloader(), dm.val_dataloader()) for b in loader}
    assert widths and all(w % 16 == 0 for w in widths)
    with pytest.raises(ConfigError, match="pad_to_multiple_of"):
        SummarizationDataModule(pad_to_multiple_of=0)


def test_val_and_test_dataloaders_cover_their_files(files):
    dm, _ = connected(train_path=files.train, val_path=files.val, test_path=files.test, eval_batch_size=5)
    dm.setup("fit")
    dm.setup("test")
    for loader, n in ((dm.val_dataloader(), 12), (dm.test_dataloader(), 9)):
        indices = [i for batch in loader for i in batch["index"].tolist()]
        assert sorted(indices) == list(range(n))
        assert all(all(batch["for_generation"]) for batch in loader)


def test_predict_results_sorted_by_index_give_input_order(files):
    dm, _ = connected(predict_path=files.predict, eval_batch_size=4)
    dm.setup("predict")
    results = []
    lengths = []
    for batch in dm.predict_dataloader():
        assert batch["input_ids"].shape[0] <= 4
        lengths.append(batch["input_ids"].shape[1])
        # A "prediction" per row, as a prediction writer would collect it.
        results += [(i, f, f"요약: {f}") for i, f in zip(batch["index"].tolist(), batch["fname"])]
    assert lengths == sorted(lengths, reverse=True)  # longest batch first
    input_order = [e.fname for e in read_examples(files.predict)]
    assert [f for _, f, _ in results] != input_order  # the batches did run out of order
    assert [f for _, f, _ in sorted(results)] == input_order
    assert all(f["references"] == [] for f in dm.features["predict"])


def test_setup_fits_the_processor_and_splits_over_ranks(files):
    per_rank = []
    for rank in (0, 1):
        processor = FakeProcessor()
        dm = SummarizationDataModule(processor, train_path=files.train, val_path=files.val, batch_size=3)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank,
                                     strategy=SimpleNamespace(root_device=torch.device("cpu")))
        dm.setup("fit")
        assert processor.registered[:len(KNOWN_TAGS)] == list(KNOWN_TAGS)
        per_rank.append([batch["index"].tolist() for batch in dm.train_dataloader()])
        val = [i for batch in dm.val_dataloader() for i in batch["index"].tolist()]
        assert len(dm.val_dataloader()) == -(-12 // 3) // 2
        assert len(val) > 0
    assert len(per_rank[0]) == len(per_rank[1])
    assert {i for batches in per_rank for b in batches for i in b} == set(range(files.n_train))


# -- tags ---------------------------------------------------------------------------------------------

def test_tags_from_training_file_only(files):
    dm, model = connected(train_path=files.train, val_path=files.val, predict_path=files.predict,
                          extra_tags=["#Extra#"])
    dm.setup("fit")
    dm.setup("predict")
    tags = model.registered
    assert tags[: len(KNOWN_TAGS)] == list(KNOWN_TAGS)
    assert "#Email#" in tags and "#Foo#" in tags and "#Extra#" in tags
    assert "#OnlyInPredict#" not in tags and "#OnlyInVal#" not in tags
    assert len(tags) == len(set(tags))
    assert dm.fit_processor().tags == tags  # fitting again finds the same vocabulary


def test_tags_without_training_file_are_the_known_ones(files):
    _, model = connected(predict_path=files.predict)
    assert model.registered == list(KNOWN_TAGS)
