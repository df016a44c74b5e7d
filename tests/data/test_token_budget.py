"""data.max_tokens_per_batch: batches filled to a padded-token budget (TokenBudgetBatchSampler)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lightning_summ.data.batching import TokenBudgetBatchSampler
from lightning_summ.data.datamodule import SummarizationDataModule
from lightning_summ.errors import ConfigError
from lightning_summ.processing import CausalProcessor, Seq2SeqProcessor

TOKENIZER = "pkg://assets/quickstart-tokenizer"


def make_lengths(n: int, parts: int = 1, seed: int = 0) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    return [tuple(rng.randint(5, 300) for _ in range(parts)) for _ in range(n)]


def cost(batch, lengths, multiple=1):
    widths = [max(lengths[i][k] for i in batch) for k in range(len(lengths[batch[0]]))]
    return len(batch) * sum(-(-w // multiple) * multiple for w in widths)


@pytest.mark.parametrize("parts, multiple", [(1, 1), (2, 1), (2, 64)])
def test_budget_holds_every_index_once_and_over_long_rows_stand_alone(parts, multiple):
    lengths = make_lengths(500, parts) + [(2500,) * parts, (3000,) * parts]  # two rows over the budget
    sampler = TokenBudgetBatchSampler(lengths, 2000, seed=3, multiple=multiple)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert Counter(i for b in batches for i in b) == Counter(range(len(lengths)))
        for batch in batches:
            assert cost(batch, lengths, multiple) <= 2000 or len(batch) == 1
        assert [500] in batches and [501] in batches  # alone, not dropped


def test_batches_are_nearly_full_and_little_padded():
    lengths = make_lengths(1000)
    batches = list(TokenBudgetBatchSampler(lengths, 4096, seed=0))
    used = sum(cost(b, lengths) for b in batches)
    assert used / (len(batches) * 4096) > 0.9  # few tokens of the budget left unused
    assert sum(lengths[i][0] for b in batches for i in b) / used > 0.95  # little padding


@pytest.mark.parametrize("multiple", [1, 16])
def test_deterministic_per_seed_and_epoch_with_the_same_count_every_epoch(multiple):
    lengths = make_lengths(400, parts=2)

    def epoch_batches(seed, epoch):
        sampler = TokenBudgetBatchSampler(lengths, 3000, seed=seed, multiple=multiple)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(1, 0) == epoch_batches(1, 0)
    assert epoch_batches(1, 0) != epoch_batches(1, 1) != epoch_batches(2, 1)
    counts = {len(epoch_batches(seed, epoch)) for seed in (1, 2) for epoch in range(5)}
    assert len(counts) == 1, "the number of batches must not change between epochs (the schedule counts on it)"
    if multiple > 1:  # rows of equal padded widths trade places: the contents change, not only the order
        assert {frozenset(b) for b in epoch_batches(1, 0)} != {frozenset(b) for b in epoch_batches(1, 1)}


def test_ranks_stay_in_step_and_cover_everything():
    lengths = make_lengths(301)
    ranks = [TokenBudgetBatchSampler(lengths, 2500, seed=5, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and len({len(s) for s in ranks}) == 1
    assert {i for batches in per_rank for b in batches for i in b} == set(range(301))


def test_generation_order_is_longest_first_without_shuffle():
    lengths = make_lengths(200)
    batches = list(TokenBudgetBatchSampler(lengths, 2000, shuffle=False))
    firsts = [lengths[b[0]][0] for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    assert [i for b in batches for i in b] == sorted(range(200), key=lambda i: lengths[i], reverse=True)


@pytest.mark.parametrize("processor", [Seq2SeqProcessor(TOKENIZER, 384, 64), CausalProcessor(TOKENIZER, 256, 32)],
                         ids=["seq2seq", "causal"])
def test_datamodule_batches_as_collated_stay_within_the_budget(processor):
    dm = SummarizationDataModule(processor, train_path="pkg://sample_data/train.csv",
                                 val_path="pkg://sample_data/dev.csv", max_tokens_per_batch=3000,
                                 pad_to_multiple_of=8)
    dm.setup("fit")
    for loader, split in ((dm.train_dataloader(), "train"), (dm.val_dataloader(), "val")):
        seen = Counter()
        for batch in loader:
            padded = sum(batch[k].numel() for k in ("input_ids", "labels", "loss_input_ids")
                         if k in batch and not (k == "labels" and isinstance(processor, CausalProcessor)))
            assert padded <= 3000 or len(batch["fname"]) == 1
            seen.update(batch["index"].tolist())
        assert sum(seen.values()) == len(dm.features[split])


@pytest.mark.parametrize("option", ["max_tokens_per_batch", "eval_max_tokens_per_batch"])
@pytest.mark.parametrize("value", [0, -5])
def test_budget_must_be_positive(option, value):
    with pytest.raises(ConfigError, match=f"data.{option} must be >= 1, got {value}"):
        SummarizationDataModule(**{option: value})


def test_schedule_steps_match_the_batches_trained(cli_run):
    cli = cli_run("fit", "--trainer.max_epochs=3", "--data.max_tokens_per_batch=1500",
                  "--trainer.limit_val_batches=0", "--model.init_args.optimizer.warmup_ratio=0.0")
    trainer = cli.trainer
    per_epoch = len(trainer.datamodule.train_dataloader().batch_sampler)
    assert per_epoch > -(-len(trainer.datamodule.features["train"]) // 16)  # not the quickstart's 16-row batches
    assert trainer.global_step == trainer.estimated_stepping_batches == 3 * per_epoch
    assert trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0] == pytest.approx(0.0)  # ended on time
