"""SummaryProcessor: the one place where text becomes tokens and tokens become batches.

A processor owns the tokenizer, the ``#Tag#`` vocabulary, the prompt (decoder-only models), how an
example is encoded and how features are collated. The model builds it from its own settings (the
YAML keys stay where they are: ``model.init_args.tokenizer``, ``max_source_length``, ...); the
DataModule receives the same object (the CLI links it) and fits its tag vocabulary once, from the
training file, before the model sizes its embeddings. Validation, TTA and the server build their
features through it, so there is one feature-building path. Its ``state()`` is saved in every
checkpoint, and ``verify`` refuses a checkpoint made with a different processor in one line that
names what differs (vocabulary, tags, prompt, lengths).
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Optional, Sequence

from lightning_summ.data.collate import CausalCollator, PackingCollator, Seq2SeqCollator, collate_metadata
from lightning_summ.data.prompts import DEFAULT_INSTRUCTION, DEFAULT_TEMPLATE, PromptFormatter
from lightning_summ.io import Example
from lightning_summ.tags import add_tags_to_tokenizer, find_tags, tag_vocabulary
from lightning_summ.errors import ConfigError
from lightning_summ.paths import resolve_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """``AutoTokenizer.from_pretrained`` on a hub id, a local directory or a ``pkg://`` path."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_path(name_or_path), trust_remote_code=trust_remote_code)


def with_eos(ids: list[int], eos_id: Optional[int], max_length: int) -> list[int]:
    """Truncate to ``max_length`` keeping a final EOS: the model must see where a text ends."""
    if eos_id is None:
        return ids[:max_length]
    if ids and ids[-1] == eos_id:
        ids = ids[:-1]
    return ids[: max_length - 1] + [eos_id]


class SummaryProcessor:
    """Tokenizer + tag vocabulary + encoding + collation; subclasses say how an example is encoded.

    Args:
        tokenizer: hub id, local directory or ``pkg://`` path of the tokenizer.
        trust_remote_code: allow code from the tokenizer's repository to run.
        atomic_tags: add the ``#Tag#`` vocabulary to the tokenizer as single tokens.
    """

    family = "text"

    def __init__(self, tokenizer: Optional[str] = None, trust_remote_code: bool = False, atomic_tags: bool = True):
        self.tokenizer_name, self.trust_remote_code, self.atomic_tags = tokenizer, trust_remote_code, atomic_tags
        self.tags: Optional[list[str]] = None  # set once by fit_tags, before the model is built
        self._tokenizer = None
        self.base_vocab_size: Optional[int] = None  # before added pad/#Tag# tokens

    # -- vocabulary -------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            tok = load_tokenizer(self.tokenizer_name, self.trust_remote_code)
            self.base_vocab_size = len(tok)
            self._tokenizer = self.prepare_tokenizer(tok)
            if self.tags is not None:
                self._add_tags(self.tags)
        return self._tokenizer

    def prepare_tokenizer(self, tokenizer):
        """Family-specific tokenizer set-up (pad token, padding side)."""
        return tokenizer

    def fit_tags(self, texts: Iterable[str] = (), extra: Iterable[str] = ()) -> list[str]:
        """Fix the tag vocabulary: the known tags plus every tag in ``texts`` (the training file).
        Called once; a second call must find the same vocabulary (every fold model shares one)."""
        tags = tag_vocabulary(find_tags(texts), extra)
        if self.tags is not None and tags != self.tags:
            raise ConfigError(f"the tag vocabulary was already fixed with {len(self.tags)} tags; this data gives "
                              f"{len(tags)} (new: {sorted(set(tags) - set(self.tags))[:5]})")
        if self.tags is None:
            self.tags = tags
            if self._tokenizer is not None:
                self._add_tags(tags)
        return self.tags

    def _add_tags(self, tags: list[str]) -> None:
        if self.atomic_tags:
            add_tags_to_tokenizer(self._tokenizer, tags)

    def new_token_ids(self) -> list[int]:
        """Ids this processor added to the tokenizer (pad, tags): their embedding rows start untrained."""
        return list(range(self.base_vocab_size, len(self.tokenizer)))

    # -- features ---------------------------------------------------------------------------------
    def encode(self, dialogue: str, summary: Optional[str], for_generation: bool) -> dict:
        return {"input_ids": []}

    def collator(self, for_generation: bool, pad_to_multiple_of: int = 1):
        return collate_metadata  # text only: nothing to pad

    def sequence_lengths(self, feature: dict) -> tuple[int, ...]:
        """Lengths of the token sequences a batch pads for ``feature`` (what a token budget counts)."""
        return (len(feature["input_ids"]),)

    def packing_collator(self, pad_to_multiple_of: int = 1):
        """The collator of ``data.packing`` (several training examples per row): decoder-only only."""
        raise ConfigError("data.packing is for decoder-only models (CausalLMSummarizer), not for this model; "
                          "set data.packing to false")

    def features(self, examples: Sequence[Example], split: str) -> list[dict]:
        """Encoded features of ``examples`` for a split: ``train`` uses every reference as its own
        target; ``val``/``test`` compute the loss on the first and score against all; ``predict``
        never sees a summary, even if the file has one."""
        training, feats = split == "train", []
        for i, ex in enumerate(examples):
            targets = ex.summaries if training else ex.summaries[:1] if split != "predict" else []
            for target in targets or [None]:
                feat = self.encode(ex.dialogue, target, for_generation=not training)
                feat.update(index=i, fname=ex.fname, references=ex.summaries, dialogue=ex.dialogue)
                feats.append(feat)
        return feats

    def generation_batch(self, dialogues: Sequence[str], indices: Optional[Sequence[int]] = None,
                         fnames: Optional[Sequence[str]] = None, pad_to_multiple_of: int = 1) -> dict:
        """A collated generation batch for raw dialogues (test-time augmentation, the server)."""
        indices = list(indices) if indices is not None else list(range(len(dialogues)))
        fnames = list(fnames) if fnames is not None else [str(i) for i in indices]
        feats = self.features([Example(f, d) for f, d in zip(fnames, dialogues)], "predict")
        for feat, index in zip(feats, indices):
            feat["index"] = int(index)
        return self.collator(True, pad_to_multiple_of)(feats)

    # -- checkpoints ------------------------------------------------------------------------------
    def settings(self) -> dict:
        """What changes the tokens a model sees, besides the vocabulary (subclasses add theirs)."""
        return {}

    def state(self) -> dict:
        """Saved with every checkpoint and compared on load."""
        state = {"family": self.family, "tags": self.tags, **self.settings()}
        if self.tokenizer_name is not None:
            vocab = sorted(self.tokenizer.get_vocab().items())
            state.update(vocab_size=len(self.tokenizer),
                         vocab_sha256=hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest())
        return state

    def verify(self, saved: dict, source: str = "the checkpoint") -> None:
        """Refuse ``saved`` (a checkpoint's processor state) if it differs from this processor's."""
        current = self.state()
        for key in [*current, *(k for k in saved if k not in current)]:  # a stable order: the first difference
            if saved.get(key) != current.get(key):
                raise ConfigError(f"{source} was made with a different processor: {key} = {_short(saved.get(key))} "
                                  f"there, {_short(current.get(key))} in this run ({_HINTS.get(key, _HINTS['*'])})")


_PROMPT_HINT = ("the prompt differs: use the checkpoint's model.init_args.instruction, prompt_template, "
                "use_chat_template, system_prompt and tokenizer")
_HINTS = {
    "tags": "use the training config's data.train_path so the tag vocabularies match",
    "prompt_prefix_ids": _PROMPT_HINT,
    "prompt_suffix_ids": _PROMPT_HINT,
    "vocab_size": "use the tokenizer and data.train_path the checkpoint was trained with",
    "vocab_sha256": "use the tokenizer the checkpoint was trained with",
    "*": "use the settings the checkpoint was trained with",
}


def _short(value, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class Seq2SeqProcessor(SummaryProcessor):
    """Encoder-decoder features: the dialogue as source, the summary as labels, each ending in EOS.

    Args:
        max_source_length: dialogue tokens kept (the end is cut).
        max_target_length: summary tokens trained on.
    """

    family = "seq2seq"

    def __init__(self, tokenizer: str, max_source_length: int = 512, max_target_length: int = 100,
                 trust_remote_code: bool = False):
        for name, value in (("max_source_length", max_source_length), ("max_target_length", max_target_length)):
            if value < 2:
                raise ConfigError(f"model.{name} must be >= 2 (a token and EOS), got {value}")
        super().__init__(tokenizer, trust_remote_code)
        self.max_source_length, self.max_target_length = max_source_length, max_target_length

    def settings(self) -> dict:
        return {"max_source_length": self.max_source_length, "max_target_length": self.max_target_length}

    def encode(self, dialogue: str, summary: Optional[str], for_generation: bool) -> dict:
        tok = self.tokenizer
        feature = {"input_ids": with_eos(tok(dialogue).input_ids, tok.eos_token_id, self.max_source_length)}
        if summary is not None:
            feature["labels"] = with_eos(tok(summary).input_ids, tok.eos_token_id, self.max_target_length)
        return feature

    def collator(self, for_generation: bool, pad_to_multiple_of: int = 1) -> Seq2SeqCollator:
        return Seq2SeqCollator(self.tokenizer.pad_token_id, pad_to_multiple_of)

    def sequence_lengths(self, feature: dict) -> tuple[int, ...]:
        """Source and, when there is one, target: the decoder runs over the padded labels too."""
        return (len(feature["input_ids"]), len(feature.get("labels", ())))


class CausalProcessor(SummaryProcessor):
    """Decoder-only features: ``prompt(dialogue) + summary + EOS`` with the loss on the summary only;
    generation inputs are the prompt alone. The dialogue, never the instruction nor the summary, is
    cut to fit ``max_length`` (for generation, room is kept for ``max_new_tokens``).

    The pad token is never EOS: masking pads would then mask EOS and the model would never learn to stop.
    """

    family = "causal"

    def __init__(self, tokenizer: str, max_length: int = 1024, max_new_tokens: int = 100,
                 instruction: str = DEFAULT_INSTRUCTION, template: str = DEFAULT_TEMPLATE,
                 use_chat_template: Optional[bool] = None, system_prompt: Optional[str] = None,
                 chat_template_kwargs: Optional[dict] = None, atomic_tags: bool = True,
                 trust_remote_code: bool = False):
        super().__init__(tokenizer, trust_remote_code, atomic_tags)
        self.max_length, self.max_new_tokens = max_length, max_new_tokens
        self.prompt_args = dict(instruction=instruction, template=template, use_chat_template=use_chat_template,
                                system_prompt=system_prompt, chat_template_kwargs=chat_template_kwargs)
        self._formatter: Optional[PromptFormatter] = None

    def prepare_tokenizer(self, tok):
        if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
            # Any id works under the attention mask, but it must not be EOS.
            if tok.unk_token_id is not None and tok.unk_token_id != tok.eos_token_id:
                tok.pad_token = tok.unk_token
            else:
                tok.add_special_tokens({"pad_token": "<|pad|>"})
        tok.padding_side = "left"
        return tok

    @property
    def formatter(self) -> PromptFormatter:
        if self._formatter is None:
            self._formatter = PromptFormatter(self.tokenizer, **self.prompt_args)
        return self._formatter

    def settings(self) -> dict:
        # The prompt as token ids: what the model was trained to read, whatever produced it
        # (instruction, template, chat template, system prompt).
        return {"max_length": self.max_length, "atomic_tags": self.atomic_tags,
                "prompt_prefix_ids": self.formatter.prefix_ids, "prompt_suffix_ids": self.formatter.suffix_ids}

    def encode(self, dialogue: str, summary: Optional[str], for_generation: bool) -> dict:
        if for_generation:
            feature: dict[str, list[int]] = {"input_ids": self.formatter.prompt(dialogue, self._budget(self.max_new_tokens))}
            if summary is not None:  # only for the validation loss: never part of a generation input
                feature["loss_input_ids"], feature["loss_labels"] = self._training_pair(dialogue, summary)
            return feature
        input_ids, labels = self._training_pair(dialogue, summary)
        return {"input_ids": input_ids, "labels": labels}

    def _training_pair(self, dialogue: str, summary: str) -> tuple[list[int], list[int]]:
        target = self.formatter.summary(summary)
        prompt = self.formatter.prompt(dialogue, self._budget(len(target)))
        return prompt + target, [-100] * len(prompt) + target

    def _budget(self, summary_tokens: int) -> int:
        budget = self.max_length - self.formatter.overhead - summary_tokens
        if budget <= 0:
            raise ConfigError(f"model.max_length={self.max_length} leaves no room for the dialogue: the prompt takes "
                              f"{self.formatter.overhead} tokens and the summary {summary_tokens}")
        return budget

    def collator(self, for_generation: bool, pad_to_multiple_of: int = 1) -> CausalCollator:
        return CausalCollator(self.tokenizer.pad_token_id, for_generation, pad_to_multiple_of)

    def packing_collator(self, pad_to_multiple_of: int = 1) -> PackingCollator:
        return PackingCollator(self.tokenizer.pad_token_id, self.max_length, pad_to_multiple_of)

    def sequence_lengths(self, feature: dict) -> tuple[int, ...]:
        """Prompt + summary (training), or the prompt and the validation loss's prompt + summary;
        the labels share the input's width and add no model work."""
        return (len(feature["input_ids"]), len(feature.get("loss_input_ids", ())))
