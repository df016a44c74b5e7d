"""Masked and speaker tokens (``#Person1#``, ``#PhoneNumber#``, ...) as atomic vocabulary entries.

Sub-word tokenizers split ``#PhoneNumber#`` into 5+ pieces that the model must learn to emit in
order; the references keep these tags verbatim, so a model that garbles them loses ROUGE. We add
them as *regular* added tokens, not "special" ones: ``decode(skip_special_tokens=True)`` drops
special tokens, which would delete every speaker tag from the summaries.
"""

from __future__ import annotations

import re
from typing import Iterable

from tokenizers import AddedToken

TAG_PATTERN = re.compile(r"#[A-Za-z][A-Za-z0-9_]*#")

# Always registered, so a vocabulary does not depend on which masks one training file happens to contain.
KNOWN_TAGS = (
    [f"#Person{i}#" for i in range(1, 8)]
    + ["#PhoneNumber#", "#Address#", "#DateOfBirth#", "#PassportNumber#", "#SSN#", "#CardNumber#"]
    + ["#CarNumber#", "#Email#"]
)


def find_tags(texts: Iterable[str]) -> set[str]:
    """Every ``#Word#`` tag occurring in ``texts``."""
    found: set[str] = set()
    for text in texts:
        found.update(TAG_PATTERN.findall(text))
    return found


def tag_vocabulary(found: Iterable[str] = (), extra: Iterable[str] = ()) -> list[str]:
    """The known tags first, then the others in sorted order: deterministic for the same data."""
    return list(KNOWN_TAGS) + sorted((set(found) | set(extra)) - set(KNOWN_TAGS))


def add_tags_to_tokenizer(tokenizer, tags: Iterable[str]) -> int:
    """Add ``tags`` as atomic, non-special tokens; returns how many were new."""
    new = [t for t in tags if t not in tokenizer.get_vocab()]
    return tokenizer.add_tokens([AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False) for t in new])
