"""Samplers and collate helpers: every index once, reproducible shuffles, little padding, ranks in step."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from lightning_summ.data.batching import LengthBucketBatchSampler, SortedBatchSampler
from lightning_summ.data.collate import collate_metadata, pad_left, pad_right
from lightning_summ.errors import ConfigError


def make_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 500) for _ in range(n)]


def padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


# -- LengthBucketBatchSampler ----------------------------------------------------------------------

@pytest.mark.parametrize("n, batch_size, pool_factor", [(103, 8, 4), (64, 8, 50), (5, 8, 2), (1, 1, 1), (97, 1, 3)])
def test_bucket_sampler_yields_every_index_once(n, batch_size, pool_factor):
    sampler = LengthBucketBatchSampler(make_lengths(n), batch_size, seed=3, pool_factor=pool_factor)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        pool = batch_size * pool_factor
        pools = [min(pool, n - start) for start in range(0, n, pool)]
        assert len(batches) == len(sampler) == sum(-(-size // batch_size) for size in pools)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)


def test_bucket_sampler_len_matches_iteration():
    for n, bs, pf in [(103, 8, 4), (200, 16, 1), (7, 3, 1)]:
        sampler = LengthBucketBatchSampler(make_lengths(n), bs, pool_factor=pf)
        assert len(sampler) == len(list(sampler))


def test_bucket_sampler_is_reproducible_and_changes_with_epoch():
    lengths = make_lengths(300)
    a = LengthBucketBatchSampler(lengths, 8, seed=7, pool_factor=5)
    b = LengthBucketBatchSampler(lengths, 8, seed=7, pool_factor=5)
    assert list(a) == list(b)
    assert list(a) == list(a)  # iterating again does not advance anything by itself
    epoch0 = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) != epoch0
    assert list(a) == list(b)
    a.set_epoch(0)
    assert list(a) == epoch0
    other_seed = LengthBucketBatchSampler(lengths, 8, seed=8, pool_factor=5)
    assert list(other_seed) != epoch0


def test_bucket_sampler_without_shuffle_is_fixed_across_epochs():
    lengths = make_lengths(50)
    sampler = LengthBucketBatchSampler(lengths, 4, shuffle=False, pool_factor=100)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first
    # One pool holding everything: batches are the indices sorted by length, longest first.
    assert [i for b in first for i in b] == sorted(range(50), key=lambda i: lengths[i], reverse=True)


def test_bucket_sampler_pads_less_than_random_batches():
    lengths = make_lengths(2000, seed=1)
    batch_size = 16
    sampler = LengthBucketBatchSampler(lengths, batch_size, seed=0, pool_factor=20)
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    random_batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    assert padding(list(sampler), lengths) < 0.25 * padding(random_batches, lengths)


def test_bucket_sampler_shuffles_batch_order():
    # Batches are not simply longest-first: the bucketed batches are shuffled.
    lengths = list(range(400))
    sampler = LengthBucketBatchSampler(lengths, 8, seed=0, pool_factor=100)
    maxima = [max(lengths[i] for i in b) for b in sampler]
    assert maxima != sorted(maxima, reverse=True)


@pytest.mark.parametrize("pool_factor", [100, 3])
def test_bucket_sampler_drop_last_drops_other_rows_each_epoch(pool_factor):
    lengths = make_lengths(103)
    sampler = LengthBucketBatchSampler(lengths, 10, seed=2, pool_factor=pool_factor, last_batch="drop")
    left_out = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 10 and all(len(b) == 10 for b in batches)
        seen = {i for b in batches for i in b}
        assert len(seen) == 100
        left_out.append(set(range(103)) - seen)
    assert left_out[0] != left_out[1]  # not always the shortest rows of a pool


def test_bucket_sampler_drop_last_refuses_fewer_rows_than_a_batch():
    with pytest.raises(ConfigError, match="data.last_batch drop leaves no training batch: 7 training rows < data.batch_size 10"):
        LengthBucketBatchSampler(make_lengths(7), 10, last_batch="drop")


@pytest.mark.parametrize("n, batch_size, pool_factor", [(103, 10, 100), (103, 10, 3), (103, 10, 10), (7, 10, 100),
                                                        (40, 10, 2)])
def test_bucket_sampler_fill_last(n, batch_size, pool_factor):
    """Every batch full, as many batches as with ``keep``, every row in each epoch, and as few repeats
    as fill the last batch: other rows each epoch."""
    lengths = make_lengths(n)
    kept = LengthBucketBatchSampler(lengths, batch_size, seed=1, pool_factor=pool_factor)
    filled = LengthBucketBatchSampler(lengths, batch_size, seed=1, pool_factor=pool_factor, last_batch="fill")
    repeated = []
    for epoch in range(2):
        kept.set_epoch(epoch)
        filled.set_epoch(epoch)
        batches = list(filled)
        assert len(batches) == len(filled) == len(list(kept)) and all(len(b) == batch_size for b in batches)
        counts = Counter(i for b in batches for i in b)
        assert set(counts) == set(range(n))
        assert sum(counts.values()) - n == (-n) % batch_size
        assert max(counts.values()) <= (2 if n >= batch_size else -(-batch_size // n))
        repeated.append({i for i, c in counts.items() if c > 1})
    if n % batch_size and n > batch_size:
        assert repeated[0] != repeated[1]


def test_bucket_sampler_rejects_an_unknown_last_batch():
    with pytest.raises(ConfigError, match="data.last_batch must be one of keep, fill, drop"):
        LengthBucketBatchSampler([1, 2], 1, last_batch="pad")


@pytest.mark.parametrize("n, batch_size, replicas", [(103, 8, 2), (100, 10, 2), (37, 4, 3), (3, 8, 2), (50, 7, 4)])
def test_bucket_sampler_ranks_stay_in_step_and_cover_everything(n, batch_size, replicas):
    lengths = make_lengths(n)
    for epoch in range(2):
        per_rank = []
        for rank in range(replicas):
            sampler = LengthBucketBatchSampler(lengths, batch_size, seed=11, pool_factor=3,
                                               num_replicas=replicas, rank=rank)
            sampler.set_epoch(epoch)
            per_rank.append(list(sampler))
            assert len(per_rank[-1]) == len(sampler)
        assert len({len(batches) for batches in per_rank}) == 1
        assert {i for batches in per_rank for b in batches for i in b} == set(range(n))
        # Only the padding batches are repeated: fewer than one batch per rank.
        total = Counter(i for batches in per_rank for b in batches for i in b)
        assert sum(total.values()) - n < replicas * batch_size


def test_bucket_sampler_ranks_get_disjoint_batches_when_divisible():
    lengths = make_lengths(160)
    ranks = [list(LengthBucketBatchSampler(lengths, 8, seed=2, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 10
    flat = [i for batches in ranks for b in batches for i in b]
    assert sorted(flat) == list(range(160))


# -- SortedBatchSampler ------------------------------------------------------------------------------

def test_sorted_sampler_is_longest_first_and_complete():
    lengths = make_lengths(53)
    sampler = SortedBatchSampler(lengths, 8)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(53))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert len(batches[0]) == 8 and len(batches[-1]) == 53 - 6 * 8


def test_sorted_sampler_is_stable_for_equal_lengths():
    batches = list(SortedBatchSampler([3] * 10, 4))
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize("n, batch_size, replicas", [(53, 8, 2), (48, 8, 2), (10, 3, 3), (1, 4, 2)])
def test_sorted_sampler_ranks_equal_length_and_cover_everything(n, batch_size, replicas):
    lengths = make_lengths(n)
    per_rank = [list(SortedBatchSampler(lengths, batch_size, num_replicas=replicas, rank=r)) for r in range(replicas)]
    assert len({len(batches) for batches in per_rank}) == 1
    assert {i for batches in per_rank for b in batches for i in b} == set(range(n))
    # The longest example runs first (on rank 0), so an out-of-memory error shows at once.
    assert max(range(n), key=lambda i: lengths[i]) in per_rank[0][0]


def test_samplers_on_empty_input():
    assert list(SortedBatchSampler([], 4)) == [] and len(SortedBatchSampler([], 4, num_replicas=2)) == 0
    assert list(LengthBucketBatchSampler([], 4)) == [] and len(LengthBucketBatchSampler([], 4, num_replicas=2)) == 0


# -- padding and metadata ---------------------------------------------------------------------------

def test_pad_right():
    out = pad_right([[1, 2, 3], [4], [5, 6]], value=0)
    assert out.dtype == torch.long and out.shape == (3, 3)
    assert out.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]]


def test_pad_left():
    out = pad_left([[1, 2, 3], [4], [5, 6]], value=-100)
    assert out.dtype == torch.long and out.shape == (3, 3)
    assert out.tolist() == [[1, 2, 3], [-100, -100, 4], [-100, 5, 6]]


def test_pad_equal_lengths_and_tuples():
    assert pad_left([(7, 8), (9, 10)], 0).tolist() == [[7, 8], [9, 10]]
    assert pad_right([(7, 8), (9, 10)], 0).tolist() == [[7, 8], [9, 10]]
    assert pad_right([[1]], 0).shape == (1, 1)


def test_collate_metadata():
    features = [
        {"index": 4, "fname": "dev_4", "references": ["요약 하나"], "input_ids": [1, 2], "dialogue": "#Person1#: 네."},
        {"index": 0, "fname": "dev_0", "references": ["첫째", "둘째", "셋째"], "input_ids": [3]},
        {"index": 2, "fname": "test_2", "references": [], "input_ids": [5]},
    ]
    meta = collate_metadata(features)
    assert set(meta) == {"index", "fname", "references", "dialogue"}
    assert meta["dialogue"] == ["#Person1#: 네.", "", ""]  # the text travels for test-time augmentation
    assert meta["index"].dtype == torch.long and meta["index"].tolist() == [4, 0, 2]
    assert meta["fname"] == ["dev_4", "dev_0", "test_2"]
    assert meta["references"] == [["요약 하나"], ["첫째", "둘째", "셋째"], []]


def test_padding_to_a_multiple_rounds_the_width_up_and_keeps_rows():
    from lightning_summ.data.collate import pad_left, pad_right

    assert pad_right([[1, 2, 3], [4]], 0, multiple=4).tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]]
    assert pad_left([[1, 2, 3], [4]], 0, multiple=4).tolist() == [[0, 1, 2, 3], [0, 0, 0, 4]]
    assert pad_left([[1, 2, 3, 4]], 0, multiple=4).tolist() == [[1, 2, 3, 4]]
    assert pad_right([[1, 2]], 9).tolist() == [[1, 2]]
