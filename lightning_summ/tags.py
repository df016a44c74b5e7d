"""The one definition of a ``#Tag#`` (``#Person1#``, ``#PhoneNumber#``, ``#사람#``, ...).

A tag is ``#``, a letter (any script: Unicode word characters other than digits and ``_``), then
any word characters (letters, digits, ``_``), then ``#``: ``#Person1#``, ``#Custom_Tag2#`` and
``#사람#`` are tags; ``##``, ``#1#``, ``#_x#``, ``# #`` and ``#Person 1#`` are not. A tag never
contains whitespace, so a whitespace split never breaks one. Everything that treats tags specially
uses :data:`TAG_PATTERN`: the vocabulary built from the training file, ROUGE's tokenizers (a tag is
one token) and TTA's check that a paraphrase kept the speakers and masks.

Sub-word tokenizers split ``#PhoneNumber#`` into 5+ pieces that the model must learn to emit in
order; the references keep these tags verbatim, so a model that garbles them loses ROUGE. We add
them as *regular* added tokens, not "special" ones: ``decode(skip_special_tokens=True)`` drops
special tokens, which would delete every speaker tag from the summaries.
"""

from __future__ import annotations

import re
from typing import Iterable

from tokenizers import AddedToken

# [^\W\d_]: a word character that is neither a digit nor "_", i.e. a letter of any script.
TAG_PATTERN = re.compile(r"#[^\W\d_]\w*#")

# Always registered, so a vocabulary does not depend on which masks one training file happens to contain.
KNOWN_TAGS = (
    [f"#Person{i}#" for i in range(1, 8)]
    + ["#PhoneNumber#", "#Address#", "#DateOfBirth#", "#PassportNumber#", "#SSN#", "#CardNumber#"]
    + ["#CarNumber#", "#Email#"]
)


def find_tags(texts: Iterable[str]) -> set[str]:
    """Every ``#Tag#`` (see :data:`TAG_PATTERN`) occurring in ``texts``."""
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
    return tokenizer.add_tokens([AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False)
                                 for t in new])
