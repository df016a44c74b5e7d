"""Train-time augmentation (``data.augment``): each epoch, a seeded fraction of the training rows is
rewritten by the augmenters of :mod:`lightning_summ.augmenters` and replaces its original row
(``mode: replace``) or joins the epoch as an extra row (``mode: add``).

A training row is a (dialogue, summary) pair, so the summary must stay true of the rewritten dialogue.
Each augmenter therefore declares here how it maps the *target* (:data:`TARGET_MAPS`):

* ``speaker_swap`` swaps ``#Person1#``/``#Person2#`` in the dialogue, so the summary is swapped too
  (the augmenter's own inverse, which TTA uses to map a summary back, is the same swap; every rewrite
  is checked to round-trip: ``inverse(target_map(summary)) == summary``);
* ``filler_removal``, ``sentence_split``, ``synonym`` and ``llm_paraphrase`` rewrite only the surface of
  the dialogue (who said what is unchanged), so the summary stays valid as it is. ``llm_paraphrase``
  goes through the API client and its disk cache; a paraphrase that changes the speakers or masks is
  discarded by the augmenter itself.

An augmenter without an entry in :data:`TARGET_MAPS` is refused: a rewrite whose effect on the summary
is unknown would teach the model wrong summaries. A rewrite that changes the dialogue's ``#Tag#``
tokens other than as its target map says (e.g. a synonym replaced inside ``#사람#``) is dropped and the
original row kept, so masked tags stay intact. Validation, test and predict rows are never augmented:
only the training loader uses :class:`AugmentedTrainSet`.

Each epoch's draw depends only on ``(seed, epoch)``: Lightning calls ``set_epoch`` on the training
loader's ``batch_sampler.sampler`` before every epoch (also after a resume); that is
:class:`AugmentingBatchSampler` itself, which passes it on to the dataset, which re-encodes the drawn rows through
the processor, the one feature-building path.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Sequence

from torch.utils.data import Dataset, Sampler

from lightning_summ.augmenters import Augmenter, build_augmenters, swap_speakers
from lightning_summ.errors import ConfigError
from lightning_summ.io import Example
from lightning_summ.tags import TAG_PATTERN

_identity: Callable[[str], str] = lambda text: text  # noqa: E731

# How each augmenter maps a summary of the original dialogue to a summary of the rewritten one.
TARGET_MAPS: dict[str, Callable[[str], str]] = {
    "speaker_swap": swap_speakers,
    "filler_removal": _identity,
    "sentence_split": _identity,
    "synonym": _identity,
    "llm_paraphrase": _identity,  # rewrites the dialogue only; the summary stays valid
}


@dataclass
class AugmentSettings:
    """Train-time augmentation (the ``data.augment`` block).

    Args:
        augmenters: names, one drawn at random per augmented row: ``speaker_swap``, ``filler_removal``,
            ``sentence_split``, ``synonym``, ``llm_paraphrase``.
        ratio: fraction of the training rows augmented each epoch (0 < ratio <= 1).
        mode: ``replace`` (an augmented row takes its original's place: same steps per epoch) or
            ``add`` (augmented rows are extra: ``ceil(rows * (1 + ratio) / batch_size)`` steps).
        lexicon: synonym lexicon (JSON ``{word: [replacements]}``).
        paraphrase_api: ``ApiClient`` arguments for ``llm_paraphrase`` (``base_url``, ``model``,
            ``api_key_env``, ``cache_dir``...); paraphrases are cached like any API answer.
    """

    augmenters: list[str] = field(default_factory=lambda: ["speaker_swap", "filler_removal"])
    ratio: float = 0.5
    mode: Literal["replace", "add"] = "replace"
    lexicon: str = "pkg://assets/tta_synonyms_ko.json"
    paraphrase_api: Optional[dict] = None

    def __post_init__(self) -> None:
        if not self.augmenters:
            raise ConfigError("data.augment.augmenters must name at least one augmenter")
        unmapped = [n for n in self.augmenters if n not in TARGET_MAPS]
        if unmapped:
            raise ConfigError(f"data.augment.augmenters: {unmapped} cannot be used for training (how they change "
                              f"the summary is unknown); choose from {sorted(TARGET_MAPS)}")
        if not 0 < self.ratio <= 1:
            raise ConfigError(f"data.augment.ratio must be in (0, 1], got {self.ratio!r}")
        if self.mode not in ("replace", "add"):
            raise ConfigError(f"data.augment.mode must be one of replace, add, got {self.mode!r}")


def training_rows(examples: Sequence[Example]) -> list[Example]:
    """One row per (dialogue, reference): the unit the processor trains on and augmentation draws from."""
    return [Example(ex.fname, ex.dialogue, [s], ex.topic) for ex in examples for s in ex.summaries]


def _tags(text: str) -> Counter:
    return Counter(TAG_PATTERN.findall(text))


class RowAugmenter:
    """Rewrites one training row: the augmenters in a random order, the first usable rewrite wins
    (filler removal finds nothing to remove in many dialogues); ``None`` when none is usable."""

    def __init__(self, settings: AugmentSettings):
        self.names = list(settings.augmenters)
        self.augmenters: list[Augmenter] = build_augmenters(self.names, settings.lexicon, settings.paraphrase_api)

    def __call__(self, row: Example, rng: random.Random) -> Optional[Example]:
        order = list(range(len(self.names)))
        rng.shuffle(order)
        for choice in order:
            rewritten = self._rewrite(choice, row, rng)
            if rewritten is not None:
                return rewritten
        return None

    def _rewrite(self, choice: int, row: Example, rng: random.Random) -> Optional[Example]:
        target_map = TARGET_MAPS[self.names[choice]]
        dialogue, inverse = self.augmenters[choice](row.dialogue, rng)
        summary = target_map(row.summaries[0])
        if inverse(summary) != row.summaries[0]:  # the target map must undo what the augmenter's inverse does
            raise ConfigError(f"augmenter {self.names[choice]}: its target map does not round-trip a summary")
        if dialogue == row.dialogue or _tags(dialogue) != _tags(target_map(row.dialogue)):
            return None  # nothing changed, or a tag was broken: not a usable rewrite
        return Example(row.fname, dialogue, [summary], row.topic)


class AugmentedTrainSet(Dataset):
    """The training rows of one epoch: the base features with a seeded fraction rewritten."""

    def __init__(self, rows: list[Example], encode: Callable[[list[Example]], list[dict]],
                 settings: AugmentSettings, seed: int):
        self.rows, self.encode, self.settings, self.seed = rows, encode, settings, seed
        self.augment = RowAugmenter(settings)
        self.base = self._encode_at(rows, list(range(len(rows))))
        self.count = max(1, round(settings.ratio * len(rows))) if rows else 0
        self.epoch: Optional[int] = None
        self.items: list[dict] = []
        self.augmented: list[Example] = []  # this epoch's rewritten rows (for tests and logging)
        self.set_epoch(0)

    def _encode_at(self, rows: list[Example], positions: list[int]) -> list[dict]:
        feats = self.encode(rows)
        for feat, position in zip(feats, positions):
            feat["index"] = position  # the original row's position, whatever the order of this list
        return feats

    def set_epoch(self, epoch: int) -> None:
        """Draw and encode this epoch's augmented rows (deterministic in ``seed`` and ``epoch``)."""
        if epoch == self.epoch:
            return
        rng = random.Random(f"augment:{self.seed}:{epoch}")
        positions = sorted(rng.sample(range(len(self.rows)), self.count))
        results = [self.augment(self.rows[p], rng) for p in positions]
        kept = [(p, row) for p, row in zip(positions, results) if row is not None]
        self.augmented = [row for _, row in kept]
        encoded = dict(zip((p for p, _ in kept), self._encode_at(self.augmented, [p for p, _ in kept])))
        if self.settings.mode == "add":  # an unusable rewrite adds its original again: the step count stays fixed
            self.items = self.base + [encoded.get(p, self.base[p]) for p in positions]
        else:
            self.items = [encoded.get(p, feat) for p, feat in enumerate(self.base)]
        self.epoch = epoch

    def lengths(self) -> list[int]:
        return [len(f["input_ids"]) for f in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class AugmentingBatchSampler(Sampler[list[int]]):
    """The training batch sampler for an :class:`AugmentedTrainSet`: ``set_epoch`` (which Lightning
    calls before every epoch) re-draws the dataset's rows, then builds the length-bucketed batches
    over the new lengths with ``make_sampler`` (the DataModule's usual sampler)."""

    def __init__(self, dataset: AugmentedTrainSet, make_sampler: Callable[[list[int]], Sampler]):
        self.dataset, self.make_sampler = dataset, make_sampler
        self.inner = make_sampler(dataset.lengths())
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)
        self.inner = self.make_sampler(self.dataset.lengths())
        self.inner.set_epoch(epoch)

    @property
    def sampler(self) -> "AugmentingBatchSampler":
        # Lightning's fit loop calls ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler``,
        # never on the batch sampler itself (lightning.fabric.utilities.data._set_sampler_epoch): this
        # is how the per-epoch call reaches us.
        return self

    def load_state_dict(self, state: dict) -> None:
        """Resume mid-epoch: re-draw the resumed epoch's rows, then resume the rebuilt inner sampler."""
        self.inner.load_state_dict(state)  # checks the data order, finds the epoch to resume
        epoch = self.inner._resume[0]
        self.set_epoch(epoch)
        self.inner.load_state_dict(state)

    def __getattr__(self, name: str):
        # Anything else (the sampler's resume state, ``resuming``) is the inner sampler's.
        if name in ("inner", "dataset", "make_sampler", "epoch"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)
