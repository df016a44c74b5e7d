"""ROUGE that is right for Korean: the competition metric, as a torchmetrics ``Metric`` and a file scorer.

The score: ROUGE-1/2/L F1 of each prediction against its references (averaged over references,
``multi_ref="mean"``, as the competition does; ``"max"`` is offered too), then the mean over
predictions; the leaderboard number is ``mean(R1, R2, RL) * 100`` (``rouge_mean``).

Why not stock ROUGE: rouge-score's default tokenizer and torchmetrics' default normalizer keep only
``[a-z0-9]``, so every Korean text becomes empty and scores 0. Tokenizers here:

* ``morpheme`` — Kiwi morphemes (kiwipiepy), what the competition scores on;
* ``whitespace`` — ``str.split()``, token parity with the ``rouge`` package of the competition baseline;
* ``char`` — every non-space character.

Tags (``#Person1#``, ``#PhoneNumber#``, ``#사람#``: :data:`lightning_summ.tags.TAG_PATTERN`, the
rule the vocabulary uses) are never split by any tokenizer. Text is compared exactly as given: no
lower-casing, no stemming (Korean has no case; English "The" != "the").

The tokens are ours; the counting is rouge-score's: its ``RougeScorer`` (``rouge1``/``rouge2``/
``rougeL``, the LCS over the whole token sequence, not the newline-split ``rougeLsum``) is handed
our token lists through its ``tokenizer`` slot. Multi-reference ``mean``/``max`` is ours (rouge-score
has only ``max``, as ``score_multi``). Measured on 10,000 Korean pairs (competition dev summaries,
whitespace tokens, ~15 per text; one CPU core): rouge-score's arithmetic 0.66 s, the hand-written
n-gram/LCS code it replaced 0.45 s, the whitespace split itself 0.04 s: a difference of 0.02 ms per
pair does not justify a second implementation.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_summ.tags import TAG_PATTERN

TOKENIZERS = ("morpheme", "whitespace", "char")
MULTI_REF = ("mean", "max")


@functools.lru_cache(maxsize=1)
def _kiwi():
    """One Kiwi analyser per process: loading its model takes about a second."""
    from kiwipiepy import Kiwi

    return Kiwi()


def tokenize(text: str, tokenizer: str = "morpheme") -> list[str]:
    """Split ``text`` into the tokens ROUGE counts; special tokens like ``#Person1#`` stay whole.

    ``whitespace`` is plain ``str.split()``: a tag glued to a particle (``#Person1#는``) stays one
    token with it, as in the ``rouge`` package; tags never contain spaces, so they are never broken.
    """
    if tokenizer == "morpheme":
        # Kiwi would split "#Person1#" into "#Person1" + "#"; splitting the text around the tags
        # instead would cut "는" off its context (Kiwi then reads it as 늘+ㄴ). Pre-tokenising the tag
        # spans as proper nouns keeps them whole and lets the following particle be analysed right.
        spans = [(m.start(), m.end(), "NNP") for m in TAG_PATTERN.finditer(text)]
        return [t.form for t in _kiwi().tokenize(text, pretokenized=spans)]
    if tokenizer == "whitespace":
        return text.split()
    if tokenizer == "char":
        tokens: list[str] = []
        pos = 0
        for m in TAG_PATTERN.finditer(text):
            tokens += [c for c in text[pos : m.start()] if not c.isspace()]
            tokens.append(m.group())
            pos = m.end()
        return tokens + [c for c in text[pos:] if not c.isspace()]
    raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of: {', '.join(TOKENIZERS)}")


class _GivenTokens:
    """rouge-score's tokenizer slot, handed token lists we made: its scorer then only counts."""

    @staticmethod
    def tokenize(tokens: Sequence[str]) -> list[str]:
        return list(tokens)


@functools.lru_cache(maxsize=None)
def _scorer(*rouge_types: str):
    # rouge-score imports nltk (~1 s): only when something is scored.
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(rouge_types), tokenizer=_GivenTokens())


def rouge_n(pred: Sequence[str], ref: Sequence[str], n: int) -> float:
    """ROUGE-N F1 on token lists: clipped n-gram overlap (rouge-score's ``rouge{n}``, n in 1..9)."""
    return _scorer(f"rouge{n}").score(ref, pred)[f"rouge{n}"].fmeasure


def rouge_l(pred: Sequence[str], ref: Sequence[str]) -> float:
    """ROUGE-L F1 on token lists: longest common subsequence of the whole sequences (``rougeL``)."""
    return _scorer("rougeL").score(ref, pred)["rougeL"].fmeasure


def _score_tokens(pred: list[str], refs: list[list[str]], multi_ref: str) -> tuple[float, float, float]:
    types = ("rouge1", "rouge2", "rougeL")
    scored = [_scorer(*types).score(r, pred) for r in refs]  # rouge-score takes (target, prediction)
    per_ref = [[s[t].fmeasure for t in types] for s in scored]
    reduce = max if multi_ref == "max" else (lambda xs: sum(xs) / len(xs))
    # Each of R1, R2, RL is reduced on its own (as rouge-score's score_multi picks per type).
    return tuple(reduce([s[k] for s in per_ref]) for k in range(3))  # type: ignore[return-value]


def score_pair(
    prediction: str,
    references: Union[str, Sequence[str]],
    tokenizer: str = "morpheme",
    multi_ref: Literal["mean", "max"] = "mean",
) -> tuple[float, float, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of one prediction against one or several references."""
    if multi_ref not in MULTI_REF:
        raise ValueError(f"unknown multi_ref {multi_ref!r}; choose one of: {', '.join(MULTI_REF)}")
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("score_pair needs at least one reference")
    pred = tokenize(prediction, tokenizer)
    return _score_tokens(pred, [tokenize(r, tokenizer) for r in refs], multi_ref)


class SummaryRouge(Metric):
    """Corpus ROUGE-1/2/L F1 (mean of per-prediction scores) for summaries, Korean-aware.

    ``update(preds, targets, ids=None)``: a target is one reference string or a list of them.
    Pass ``ids`` (dataset indices) under DDP: DistributedSampler pads the last batch with repeated
    samples, and a sample id seen more than once is counted once. ``compute()`` returns ``r1``,
    ``r2``, ``rl`` in [0, 1], ``rouge_mean`` = mean(r1, r2, rl) * 100 (leaderboard) and ``rouge_sum``.
    """

    higher_is_better = True
    full_state_update = False
    is_differentiable = False

    def __init__(self, tokenizer: str = "morpheme", multi_ref: Literal["mean", "max"] = "mean", **kwargs) -> None:
        super().__init__(**kwargs)
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of: {', '.join(TOKENIZERS)}")
        if multi_ref not in MULTI_REF:
            raise ValueError(f"unknown multi_ref {multi_ref!r}; choose one of: {', '.join(MULTI_REF)}")
        self.tokenizer, self.multi_ref = tokenizer, multi_ref
        # 1-D states: torchmetrics fills a rank that saw no data with a 1-D empty tensor when syncing.
        for name in ("r1", "r2", "rl", "ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    @property
    def _float(self) -> torch.dtype:
        # float64 so corpus means match rouge-score to ~1e-12; MPS has no float64.
        return torch.float32 if self.device.type == "mps" else torch.float64

    def update(
        self,
        preds: Sequence[str],
        targets: Sequence[Union[str, Sequence[str]]],
        ids: Optional[Union[Sequence[int], torch.Tensor]] = None,
    ) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions but {len(targets)} targets")
        if ids is None:
            ids_t = torch.full((len(preds),), -1, dtype=torch.long)  # -1: no id, never de-duplicated
        else:
            ids_t = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
            if len(ids_t) != len(preds):
                raise ValueError(f"got {len(preds)} predictions but {len(ids_t)} ids")
            if (ids_t < 0).any():
                raise ValueError("ids must be non-negative sample indices")
        scores = [score_pair(p, t, self.tokenizer, self.multi_ref) for p, t in zip(preds, targets)]
        table = torch.tensor(scores, dtype=self._float, device=self.device).reshape(-1, 3)
        self.r1.append(table[:, 0])
        self.r2.append(table[:, 1])
        self.rl.append(table[:, 2])
        self.ids.append(ids_t.to(self.device))

    def compute(self) -> dict[str, torch.Tensor]:
        # After a DDP sync a state is one tensor, before it a list of per-batch tensors (maybe none).
        r1, r2, rl, ids = (_cat(s) for s in (self.r1, self.r2, self.rl, self.ids))
        if r1.numel() == 0:
            zero = torch.zeros((), dtype=self._float, device=self.device)
            return {k: zero.clone() for k in ("r1", "r2", "rl", "rouge_mean", "rouge_sum")}
        table = torch.stack([r1, r2, rl], dim=1)
        # An empty rank sends a float32 filler, which promotes the gathered ids (exact below 2**24).
        ids = ids.long()
        keep = ids < 0
        uniq, inverse = torch.unique(ids, return_inverse=True)
        # First position of every id; positions of id -1 are all kept by ``keep`` already.
        positions = torch.arange(len(ids), device=ids.device)
        first = torch.full((len(uniq),), len(ids), device=ids.device).scatter_reduce(0, inverse, positions, "amin")
        keep[first[uniq >= 0]] = True
        r1, r2, rl = table[keep].mean(dim=0)
        return {"r1": r1, "r2": r2, "rl": rl, "rouge_mean": (r1 + r2 + rl) / 3 * 100, "rouge_sum": r1 + r2 + rl}


def _cat(state: Union[list, torch.Tensor]) -> torch.Tensor:
    if isinstance(state, torch.Tensor):
        return state.flatten()
    return dim_zero_cat(state) if state else torch.zeros(0)


def rouge_from_files(
    predictions: Union[str, Path],
    references: Union[str, Path],
    tokenizer: str = "morpheme",
    multi_ref: Literal["mean", "max"] = "mean",
) -> dict:
    """Score a submission-style CSV (``fname,summary``) against a reference CSV/JSONL, joined on fname.

    Every reference needs a prediction and every prediction a reference; problems raise
    ``lightning_summ.errors.DataError`` with one line naming the file, row and field.
    Returns ``{r1, r2, rl, rouge_mean, rouge_sum}`` as floats and ``n`` (predictions scored).
    """
    from lightning_summ.io import DataError, read_examples, read_submission_rows

    pred_path = Path(predictions)
    preds = read_submission_rows(pred_path)  # fnames unique, summaries normalized
    # require_summary: a reference row without any summary fails there, with its row and field.
    refs = {ex.fname: ex.summaries for ex in read_examples(references, require_summary=True)}
    seen = {fname for _, fname, _ in preds}
    for row, fname, _ in preds:
        if fname not in refs:
            raise DataError(f"{pred_path}: row {row}: field 'fname': '{fname}' is not in {references}")
    missing = [f for f in refs if f not in seen]
    if missing:
        raise DataError(
            f"{pred_path}: field 'fname': {len(missing)} reference(s) of {references} have no prediction "
            f"(first: {', '.join(missing[:5])})"
        )
    metric = SummaryRouge(tokenizer=tokenizer, multi_ref=multi_ref)
    metric.update([s for _, _, s in preds], [refs[f] for _, f, _ in preds])
    out = {k: float(v) for k, v in metric.compute().items()}
    out["n"] = len(preds)
    return out
