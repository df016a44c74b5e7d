"""Train a byte-level BPE tokenizer offline and save it as a Hugging Face tokenizer directory.

Used to build the quickstart's tokenizer (shipped in ``lightning_summ/assets``) and, for
benchmarks, a ~30k-vocabulary tokenizer on real dialogues (KoBART's is 30k), so that models built
from real architectures' configs see realistic sequence lengths without any hub download.

Byte-level BPE never produces ``<unk>`` (any Hangul syllable falls back to its UTF-8 bytes) and
decodes back to the exact text, spaces included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}


def train_bpe_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """Train on ``texts`` and save to ``out_dir`` (loadable by ``AutoTokenizer.from_pretrained``).

    The tokenizer adds ``<s> ... </s>`` around each sequence, like BART's.
    """
    tok = Tokenizer(models.BPE(unk_token=SPECIALS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos, eos = SPECIALS["bos_token"], SPECIALS["eos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} $B {eos}",
        special_tokens=[(bos, tok.token_to_id(bos)), (eos, tok.token_to_id(eos))],
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1024, **SPECIALS)
    fast.save_pretrained(str(out_dir))
    return fast


def main(argv: list[str] | None = None) -> None:
    """Build a tokenizer from CSV/JSONL files: ``python -m lightning_summ.data.tokenizer_training OUT FILE...``."""
    import argparse

    from lightning_summ.io import read_examples

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--vocab_size", type=int, default=4000)
    args = parser.parse_args(argv)
    texts = [t for f in args.files for ex in read_examples(f) for t in (ex.dialogue, *ex.summaries)]
    tok = train_bpe_tokenizer(texts, args.out_dir, args.vocab_size)
    print(f"Saved a {len(tok)}-token tokenizer trained on {len(texts)} texts to {args.out_dir}")


if __name__ == "__main__":
    main()
