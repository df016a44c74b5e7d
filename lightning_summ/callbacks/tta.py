"""The test-time augmentation callback: installs the TTA decoder for validate / test / predict."""

from __future__ import annotations

from typing import Optional

from lightning.pytorch.callbacks import Callback
from lightning_summ.augmenters import build_augmenters
from lightning_summ.console import say
from lightning_summ.decoding.tta import TestTimeAugmentation as TTADecoder


class TestTimeAugmentation(Callback):
    """Decode the original and ``num_aug`` rewritten dialogues, and keep the summary with the highest
    expected ROUGE against the others (MBR). Works in validate, test and predict, around whichever
    decoder the model uses (generate, soft voting, API); says in the log what it decoded.

    Args:
        augmenters: names, used round-robin for the ``num_aug`` copies: ``speaker_swap``,
            ``filler_removal``, ``sentence_split``, ``synonym``, ``llm_paraphrase`` (default: the first two).
        num_aug: augmented copies per input (0 turns TTA off).
        rouge_tokenizer: tokens for the MBR utility (``morpheme``, ``whitespace``, ``char``).
        lexicon: synonym lexicon (JSON ``{word: [replacements]}``).
        seed: seed of the synonym choices.
        paraphrase_api: ``ApiClient`` arguments for ``llm_paraphrase`` (``base_url``, ``model``,
            ``api_key_env``, ``cache_dir``...); the paraphrases are cached like any API answer.
    """

    def __init__(self, augmenters: Optional[list[str]] = None, num_aug: int = 2, rouge_tokenizer: str = "morpheme",
                 lexicon: str = "pkg://assets/tta_synonyms_ko.json", seed: int = 0,
                 paraphrase_api: Optional[dict] = None):
        self.names = list(augmenters or ["speaker_swap", "filler_removal"])
        self.num_aug, self.rouge_tokenizer, self.seed = num_aug, rouge_tokenizer, seed
        self.augmenters = build_augmenters(self.names, lexicon, paraphrase_api)
        self.last: Optional[TTADecoder] = None  # the decoder of the last stage, with its stats

    def _install(self, pl_module) -> None:
        if self.num_aug > 0 and not isinstance(pl_module.decoder, TTADecoder):
            pl_module.decoder = TTADecoder(pl_module.decoder, self.augmenters, self.names, self.num_aug,
                                           self.rouge_tokenizer, self.seed)

    def _remove(self, pl_module) -> None:
        if isinstance(pl_module.decoder, TTADecoder):
            self.last, pl_module.decoder = pl_module.decoder, pl_module.decoder.inner
            if self.last.stats["rows"]:
                say(self.last.summary())

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._install(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._remove(pl_module)

    def on_test_start(self, trainer, pl_module) -> None:
        self._install(pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._remove(pl_module)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._install(pl_module)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._remove(pl_module)
