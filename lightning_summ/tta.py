"""Test-time augmentation for dialogues: meaning-preserving rewrites, decoded and combined by MBR.

Augmenters (each returns the rewritten dialogue and a function that maps a summary of the
rewritten dialogue back to the original's terms):

* ``speaker_swap``: ``#Person1#`` <-> ``#Person2#`` in the dialogue; swapped back in the summary;
* ``filler_removal``: interjections such as "음," "어..." "그러니까," at the start of a phrase;
* ``sentence_split``: a turn holding several sentences becomes consecutive turns of the same
  speaker (no text moves between speakers);
* ``synonym``: words replaced from a small shipped Korean lexicon (``assets/tta_synonyms_ko.json``);
* ``llm_paraphrase``: an OpenAI-compatible API rewrites the dialogue (``paraphrase_api`` configures
  the client); a rewrite that changes the speaker sequence or the masked tokens is discarded and the
  original is used instead.
"""

from __future__ import annotations

import functools
import json
import random
import re
from typing import Callable, Optional

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import move_data_to_device

from lightning_summ.decoding.mbr import mbr_pick
from lightning_summ.paths import resolve_path

Augmented = tuple[str, Callable[[str], str]]
_identity = lambda text: text  # noqa: E731
_FILLER = re.compile(r"(?:(?<=: )|(?<=\s)|^)(?:음+|어+|아+|흠+|에이|저기|그러니까|뭐|있잖아|그게)(?:\.{2,}|…|,)\s*")
_SENTENCE_END = re.compile(r"(?<=[^.][.?!])\s+(?=\S)")  # not after an ellipsis
_TURN = re.compile(r"^(#\w+#):\s*(.*)$")


def swap_speakers(text: str) -> str:
    return text.replace("#Person1#", "\0").replace("#Person2#", "#Person1#").replace("\0", "#Person2#")


def speaker_swap(dialogue: str, rng: random.Random) -> Augmented:
    return swap_speakers(dialogue), swap_speakers


def filler_removal(dialogue: str, rng: random.Random) -> Augmented:
    return _FILLER.sub("", dialogue), _identity


def sentence_split(dialogue: str, rng: random.Random) -> Augmented:
    lines = []
    for line in dialogue.split("\n"):
        match = _TURN.match(line)
        if not match:
            lines.append(line)
            continue
        speaker, text = match.groups()
        lines += [f"{speaker}: {part}" for part in _SENTENCE_END.split(text) if part]
    return "\n".join(lines), _identity


@functools.lru_cache(maxsize=4)
def _lexicon(path: str) -> dict[str, list[str]]:
    with open(resolve_path(path), encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def make_synonym(lexicon: str) -> Callable[[str, random.Random], Augmented]:
    def synonym(dialogue: str, rng: random.Random) -> Augmented:
        words = _lexicon(lexicon)
        pattern = re.compile(r"(?<![가-힣])(" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")")
        return pattern.sub(lambda m: rng.choice(words[m.group(1)]), dialogue), _identity

    return synonym


PARAPHRASE_INSTRUCTION = (
    "다음 대화를 같은 뜻의 다른 표현으로 바꿔 쓰세요. 각 줄은 원래의 '#PersonN#: ' 화자 태그로 시작하고, 줄 수와 "
    "화자 순서, #PhoneNumber# 같은 가림 토큰은 그대로 두세요. 바꾼 대화만 출력하세요."
)


def _structure(dialogue: str) -> tuple[list[str], list[str]]:
    speakers = [m.group(1) for line in dialogue.split("\n") if (m := _TURN.match(line))]
    masks = sorted(t for t in re.findall(r"#\w+#", dialogue) if not t.startswith("#Person"))
    return speakers, masks


def make_llm_paraphrase(api: dict) -> Callable[[str, random.Random], Augmented]:
    from lightning_summ.api.client import ApiSummarizer

    client = ApiSummarizer(**{"instruction": PARAPHRASE_INSTRUCTION, "system_prompt": None, "few_shot": 0,
                              "max_tokens": 1024, **api})

    def llm_paraphrase(dialogue: str, rng: random.Random) -> Augmented:
        text = client.complete(client.messages(dialogue)).strip()
        return (text if _structure(text) == _structure(dialogue) else dialogue), _identity

    return llm_paraphrase


def build_augmenters(names: list[str], lexicon: str, paraphrase_api: Optional[dict] = None,
                     ) -> list[Callable[[str, random.Random], Augmented]]:
    known = {"speaker_swap": speaker_swap, "filler_removal": filler_removal, "sentence_split": sentence_split,
             "synonym": make_synonym(lexicon)}
    if "llm_paraphrase" in names:
        if not paraphrase_api:
            raise ValueError("the llm_paraphrase augmenter needs paraphrase_api (base_url, model, api_key_env, ...)")
        known["llm_paraphrase"] = make_llm_paraphrase(paraphrase_api)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown augmenters {unknown}; choose from {sorted(known)}")
    return [known[n] for n in names]


class TestTimeAugmentation(Callback):
    """Decode the original and ``num_aug`` rewritten dialogues, and keep the summary with the highest
    expected ROUGE against the others (MBR). Works in validate, test and predict.

    Args:
        augmenters: names, used round-robin for the ``num_aug`` copies: ``speaker_swap``,
            ``filler_removal``, ``sentence_split``, ``synonym``, ``llm_paraphrase`` (default: the first two).
        num_aug: augmented copies per input (0 turns TTA off).
        rouge_tokenizer: tokens for the MBR utility (``morpheme``, ``whitespace``, ``char``).
        lexicon: synonym lexicon (JSON ``{word: [replacements]}``).
        seed: seed of the synonym choices.
        paraphrase_api: ``ApiSummarizer`` arguments for ``llm_paraphrase`` (``base_url``, ``model``,
            ``api_key_env``, ``cache_dir``...); the paraphrases are cached like any API answer.
    """

    def __init__(self, augmenters: Optional[list[str]] = None, num_aug: int = 2, rouge_tokenizer: str = "morpheme",
                 lexicon: str = "pkg://assets/tta_synonyms_ko.json", seed: int = 0,
                 paraphrase_api: Optional[dict] = None):
        self.names = list(augmenters or ["speaker_swap", "filler_removal"])
        self.num_aug, self.rouge_tokenizer, self.seed = num_aug, rouge_tokenizer, seed
        self.augmenters = build_augmenters(self.names, lexicon, paraphrase_api)
        self._original: Optional[Callable] = None

    def _wrap(self, pl_module) -> None:
        if self.num_aug > 0 and self._original is None:
            self._original = pl_module.generate_candidates
            pl_module.generate_candidates = functools.partial(self.generate, pl_module, self._original)

    def _unwrap(self, pl_module) -> None:
        if self._original is not None:
            del pl_module.generate_candidates  # the instance attribute: the class method is back
            self._original = None

    def generate(self, pl_module, original: Callable, batch: dict) -> list[list[tuple[str, float]]]:
        views = [(original(batch), [_identity] * len(batch["fname"]))]
        rng = random.Random(self.seed)
        for i in range(self.num_aug):
            augment = self.augmenters[i % len(self.augmenters)]
            rewritten, inverses = zip(*(augment(d, rng) for d in batch["dialogue"]))
            feats = [dict(pl_module.encode(text, None, for_generation=True), index=int(idx), fname=fname,
                          references=refs, dialogue=text)
                     for text, idx, fname, refs in zip(rewritten, batch["index"], batch["fname"], batch["references"])]
            views.append((original(move_data_to_device(pl_module.collator(True)(feats), pl_module.device)), inverses))
        results = []
        for row in range(len(batch["fname"])):
            pool = [(v, inverses[row](text)) for v, (cands, inverses) in enumerate(views) for text, _ in cands[row][:1]]
            scores = [score for cands, _ in views for _, score in cands[row][:1]]
            best = mbr_pick(pool, [1.0] * len(views), self.rouge_tokenizer)
            ordered = [best] + [i for i in range(len(pool)) if i != best]
            results.append([(pool[i][1], scores[i]) for i in ordered])
        return results

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._wrap(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._unwrap(pl_module)

    def on_test_start(self, trainer, pl_module) -> None:
        self._wrap(pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._unwrap(pl_module)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._wrap(pl_module)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._unwrap(pl_module)
