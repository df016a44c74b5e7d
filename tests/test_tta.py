"""Test-time augmentation: the augmenters, and the callback through predict."""

from __future__ import annotations

import json
import random

import pytest
from fastapi import FastAPI, Request  # module level: FastAPI resolves the string annotations here

from lightning_summ.tta import build_augmenters, filler_removal, sentence_split, speaker_swap, swap_speakers

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


def test_tta_callback_decodes_every_view_and_picks_one(cli_run, tmp_path):
    cli = cli_run("fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                  "--model.init_args.evaluation.generate_every_n_epochs=1",
                  "--trainer.callbacks.init_args.every_n_epochs=1")
    best = cli.trainer.checkpoint_callback.best_model_path
    cli_run("predict", "--ckpt_path", best, "--trainer.callbacks+=lightning_summ.tta.TestTimeAugmentation",
            "--trainer.callbacks.num_aug=3",
            '--trainer.callbacks.augmenters=["speaker_swap", "filler_removal", "sentence_split"]',
            f"--submission.output_path={tmp_path}/tta.csv")
    rows = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(len(r["candidates"]) == 4 for r in rows)  # original + 3 views
    assert all(r["summary"] == r["candidates"][0]["text"] for r in rows)
    assert not hasattr(cli.model, "generate_candidates") or "generate_candidates" not in vars(cli.model)


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
