"""Meaning-preserving rewrites of dialogues, for test-time augmentation (``decoding.tta``).

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

from lightning_summ.errors import ConfigError
from lightning_summ.paths import resolve_path
from lightning_summ.tags import TAG_PATTERN

Augmented = tuple[str, Callable[[str], str]]  # (rewritten dialogue, map a summary back to the original's terms)
Augmenter = Callable[[str, random.Random], Augmented]
_identity = lambda text: text  # noqa: E731
_FILLER = re.compile(r"(?:(?<=: )|(?<=\s)|^)(?:음+|어+|아+|흠+|에이|저기|그러니까|뭐|있잖아|그게)(?:\.{2,}|…|,)\s*")
_SENTENCE_END = re.compile(r"(?<=[^.][.?!])\s+(?=\S)")  # not after an ellipsis
_TURN = re.compile(rf"^({TAG_PATTERN.pattern}):\s*(.*)$")


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
    masks = sorted(t for t in TAG_PATTERN.findall(dialogue) if not t.startswith("#Person"))
    return speakers, masks


def make_llm_paraphrase(api: dict) -> Callable[[str, random.Random], Augmented]:
    from lightning_summ.api.client import ApiClient

    client = ApiClient(**{"instruction": PARAPHRASE_INSTRUCTION, "system_prompt": None, "few_shot": 0,
                          "max_tokens": 1024, **api})

    def llm_paraphrase(dialogue: str, rng: random.Random) -> Augmented:
        text = client.complete(client.messages(dialogue)).strip()
        return (text if _structure(text) == _structure(dialogue) else dialogue), _identity

    return llm_paraphrase


def build_augmenters(names: list[str], lexicon: str, paraphrase_api: Optional[dict] = None) -> list[Augmenter]:
    known = {"speaker_swap": speaker_swap, "filler_removal": filler_removal, "sentence_split": sentence_split,
             "synonym": make_synonym(lexicon)}
    if "llm_paraphrase" in names:
        if not paraphrase_api:
            raise ConfigError("the llm_paraphrase augmenter needs paraphrase_api (base_url, model, api_key_env, ...)")
        known["llm_paraphrase"] = make_llm_paraphrase(paraphrase_api)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown augmenters {unknown}; choose from {sorted(known)}")
    return [known[n] for n in names]
