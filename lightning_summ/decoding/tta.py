"""Test-time augmentation as a decoder wrapper: decode the original and rewritten dialogues, keep
the summary with the highest expected ROUGE against the others (MBR).

``TestTimeAugmentation`` wraps any decoder (``generate``, soft voting, the API): the rewritten
dialogues are encoded by the module's processor, the one feature-building path, and decoded by the
wrapped decoder. Each augmenter returns the rewritten dialogue and a function mapping a summary of it
back to the original's terms (speaker swap swaps the tags back). ``stats`` counts what it did, so
the callback can say that it ran and what changed.
"""

from __future__ import annotations

import random
from collections import Counter

from lightning.pytorch.utilities import move_data_to_device

from lightning_summ.augmenters import Augmenter
from lightning_summ.decoding.generate import Candidates, Decoder
from lightning_summ.decoding.mbr import mbr_pick


class TestTimeAugmentation:
    """``num_aug`` rewritten copies per input (augmenters used round-robin), decoded by ``inner``."""

    name = "tta"

    def __init__(self, inner: Decoder, augmenters: list[Augmenter], names: list[str], num_aug: int,
                 rouge_tokenizer: str = "morpheme", seed: int = 0):
        self.inner, self.augmenters, self.names = inner, augmenters, names
        self.num_aug, self.rouge_tokenizer, self.seed = num_aug, rouge_tokenizer, seed
        self.stats: Counter = Counter()

    def __call__(self, module, batch: dict) -> list[Candidates]:
        n = len(batch["fname"])
        views = [(self.inner(module, batch), [lambda text: text] * n)]
        rng = random.Random(self.seed)
        for i in range(self.num_aug):
            augment, name = self.augmenters[i % len(self.augmenters)], self.names[i % len(self.names)]
            rewritten, inverses = zip(*(augment(d, rng) for d in batch["dialogue"]))
            self.stats[f"rewritten:{name}"] += sum(a != b for a, b in zip(rewritten, batch["dialogue"]))
            view = module.processor.generation_batch(rewritten, batch["index"].tolist(), batch["fname"])
            views.append((self.inner(module, move_data_to_device(view, module.device)), inverses))
        results = []
        for row in range(n):
            pool = [(v, inverses[row](cands[row][0][0])) for v, (cands, inverses) in enumerate(views)]
            scores = [cands[row][0][1] for cands, _ in views]
            best = mbr_pick(pool, [1.0] * len(views), self.rouge_tokenizer)
            self.stats["picked_augmented"] += best != 0 and pool[best][1] != pool[0][1]
            ordered = [best] + [i for i in range(len(pool)) if i != best]
            results.append([(pool[i][1], scores[i]) for i in ordered])
        self.stats["rows"] += n
        self.stats["views"] += n * len(views)
        return results

    def summary(self) -> str:
        """One line for the log: what was decoded and what changed."""
        rows = self.stats["rows"]
        rewrites = ", ".join(f"{name} rewrote {self.stats[f'rewritten:{name}']}/{rows * self._uses(name)}"
                             for name in dict.fromkeys(self.names[:self.num_aug]))
        return (f"test-time augmentation: decoded {self.stats['views']} views of {rows} dialogues ({rewrites}); "
                f"MBR chose a summary that differs from the plain one for {self.stats['picked_augmented']} of {rows}")

    def _uses(self, name: str) -> int:
        return sum(self.names[i % len(self.names)] == name for i in range(self.num_aug))
