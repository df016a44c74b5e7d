"""Test-time augmentation: the augmenters, and the callback through predict."""

from __future__ import annotations

import json
import random

import pytest

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
