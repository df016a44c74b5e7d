"""Test-time augmentation: the augmenters, the decoder wrapper, and the callback through predict."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request  # module level: FastAPI resolves the string annotations here

from lightning_summ.augmenters import build_augmenters, filler_removal, sentence_split, speaker_swap, swap_speakers
from lightning_summ.decoding.tta import TestTimeAugmentation as TTADecoder
from lightning_summ.processing import SummaryProcessor

DIALOGUE = ("#Person1#: 음, 내일 시간 괜찮아요? 같이 점심 먹어요.\n"
            "#Person2#: 어... 정말 좋아요. 제 번호는 #PhoneNumber#예요.")


def test_speaker_swap_is_undone_in_the_summary():
    text, invert = speaker_swap(DIALOGUE, random.Random(0))
    assert text.startswith("#Person2#: 음,") and "\n#Person1#: 어..." in text
    assert invert("#Person2#는 #Person1#에게 점심을 제안합니다.") == "#Person1#는 #Person2#에게 점심을 제안합니다."
    assert swap_speakers(swap_speakers(DIALOGUE)) == DIALOGUE


def test_filler_removal_keeps_everything_else():
    text, invert = filler_removal(DIALOGUE, random.Random(0))
    assert text == ("#Person1#: 내일 시간 괜찮아요? 같이 점심 먹어요.\n"
                    "#Person2#: 정말 좋아요. 제 번호는 #PhoneNumber#예요.")
    assert invert("x") == "x"
    assert filler_removal("#Person1#: 어머니가 오세요.", random.Random(0))[0] == "#Person1#: 어머니가 오세요."


def test_sentence_split_keeps_speakers_and_text():
    text, _ = sentence_split(DIALOGUE, random.Random(0))
    lines = text.split("\n")
    assert lines == ["#Person1#: 음, 내일 시간 괜찮아요?", "#Person1#: 같이 점심 먹어요.",
                     "#Person2#: 어... 정말 좋아요.", "#Person2#: 제 번호는 #PhoneNumber#예요."]


def test_synonyms_come_from_the_lexicon_and_unknown_names_are_refused():
    (synonym,) = build_augmenters(["synonym"], "pkg://assets/tta_synonyms_ko.json")
    text, _ = synonym(DIALOGUE, random.Random(0))
    assert text != DIALOGUE and "#PhoneNumber#" in text and ("좋아요" in text or "괜찮아요" in text)
    assert "정말" not in text and ("진짜" in text or "참 " in text)  # 정말 -> one of its synonyms
    with pytest.raises(ValueError, match="unknown augmenters"):
        build_augmenters(["back_translation"], "pkg://assets/tta_synonyms_ko.json")


class FirstTurn:
    """A stand-in decoder: the first turn of each dialogue is its "summary" (score = its length)."""

    name = "first_turn"

    def __init__(self):
        self.batches = []

    def __call__(self, module, batch):
        self.batches.append(list(batch["dialogue"]))
        return [[(d.split("\n")[0], float(len(d)))] for d in batch["dialogue"]]


def test_tta_wraps_any_decoder_maps_summaries_back_and_picks_the_consensus():
    import torch

    inner = FirstTurn()
    module = SimpleNamespace(processor=SummaryProcessor(), device=torch.device("cpu"))
    tta = TTADecoder(inner, build_augmenters(["speaker_swap", "filler_removal"], "pkg://assets/tta_synonyms_ko.json"),
                     ["speaker_swap", "filler_removal"], num_aug=2, rouge_tokenizer="whitespace")
    batch = {"dialogue": [DIALOGUE, "#Person1#: 네.\n#Person2#: 좋아요."], "fname": ["a", "b"],
             "index": torch.tensor([7, 8])}
    results = tta(module, batch)
    # Three views decoded by the wrapped decoder: the original, speakers swapped, fillers removed.
    assert inner.batches[0] == batch["dialogue"] and inner.batches[1][0].startswith("#Person2#: 음,")
    assert inner.batches[2][0].startswith("#Person1#: 내일")
    # The swapped view's "#Person2#: 음, ..." is mapped back to #Person1#: the plain and swapped views
    # agree, so MBR picks their summary over the filler-free one.
    texts = [t for t, _ in results[0]]
    assert texts[0] == "#Person1#: 음, 내일 시간 괜찮아요? 같이 점심 먹어요." and len(texts) == 3
    assert "#Person1#: 내일 시간 괜찮아요? 같이 점심 먹어요." in texts
    assert tta.stats["rows"] == 2 and tta.stats["views"] == 6
    assert tta.stats["rewritten:speaker_swap"] == 2 and tta.stats["rewritten:filler_removal"] == 1
    assert tta.summary() == ("test-time augmentation: decoded 6 views of 2 dialogues (speaker_swap rewrote 2/2, "
                             "filler_removal rewrote 1/2); MBR chose a summary that differs from the plain one "
                             "for 0 of 2")


def test_tta_callback_runs_in_predict_says_so_and_restores_the_decoder(cli_run, tmp_path, capsys):
    from lightning_summ.callbacks import TestTimeAugmentation

    cli = cli_run("fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                  "--model.init_args.evaluation.generate_every_n_epochs=1")
    best = cli.trainer.checkpoint_callback.best_model_path
    capsys.readouterr()  # the predict run's own output is checked below
    predict = cli_run("predict", "--ckpt_path", best, "--trainer.callbacks+=lightning_summ.callbacks.TestTimeAugmentation",
                      "--trainer.callbacks.num_aug=3", "--trainer.callbacks.rouge_tokenizer=whitespace",
                      '--trainer.callbacks.augmenters=["speaker_swap", "filler_removal", "sentence_split"]',
                      f"--submission.output_path={tmp_path}/tta.csv")
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(len(r["candidates"]) == 4 for r in rows)  # original + 3 views
    assert all(r["summary"] == r["candidates"][0]["text"] for r in rows)
    (callback,) = [c for c in predict.trainer.callbacks if isinstance(c, TestTimeAugmentation)]
    assert callback.last.stats["views"] == 160 and callback.last.stats["rewritten:speaker_swap"] == 40
    assert predict.model.decoder.name == "generate"  # the wrapper is gone after the stage
    assert "test-time augmentation: decoded 160 views of 40 dialogues" in capsys.readouterr().out


def test_llm_paraphrase_through_a_real_http_endpoint_keeps_structure_or_falls_back(tmp_path, monkeypatch):
    """A stand-in paraphrasing endpoint on loopback (real HTTP, real openai client): one answer keeps
    the speakers and masks and is used; one that drops a turn is discarded for the original."""
    import time

    from test_api import serving

    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    async def paraphrase(request: Request):
        body = await request.json()
        dialogue = body["messages"][-1]["content"].split("\n\n", 1)[1]  # after the instruction
        seen.append(dialogue)
        good = dialogue.replace("정말", "진짜").replace("같이", "함께")
        answer = good if "점심" in dialogue else dialogue.split("\n")[0]  # the second kind breaks the structure
        return {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": "p",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}

    monkeypatch.setenv("LS_PARA_KEY", "k")
    with serving(app) as url:
        (augment,) = build_augmenters(["llm_paraphrase"], "pkg://assets/tta_synonyms_ko.json",
                                      {"base_url": url, "model": "p", "api_key_env": "LS_PARA_KEY",
                                       "cache_dir": str(tmp_path / "cache")})
        text, invert = augment(DIALOGUE, random.Random(0))
        other = "#Person1#: 내일 봐요.\n#Person2#: 네, 내일 봬요."
        unchanged, _ = augment(other, random.Random(0))
    assert text == DIALOGUE.replace("정말", "진짜").replace("같이", "함께") and invert("x") == "x"
    assert unchanged == other and len(seen) == 2
    with pytest.raises(ValueError, match="paraphrase_api"):
        build_augmenters(["llm_paraphrase"], "pkg://assets/tta_synonyms_ko.json")
