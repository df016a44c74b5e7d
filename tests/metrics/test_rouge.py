"""Tests for lightning_summ.metrics.rouge: hand-computed values, parity with rouge-score given the
same tokens, the Korean-scores-zero regression, multi-reference, DDP de-duplication, file scoring.

F1 is 2 * matches / (predicted + reference counts), which is how the pinned fractions below are written."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
import torch
from rouge_score import rouge_scorer

from lightning_summ.metrics import SummaryRouge, rouge_from_files, score_pair, tokenize
from lightning_summ.metrics.rouge import rouge_l, rouge_n

TOKENIZERS = ["morpheme", "whitespace", "char"]
# The `shared` folder beside the repository checkout (…/shared next to …/main).
DEV_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "ko_dialogsum_competition_2025" / "dev.csv"

# (prediction, reference) pairs written for these tests.
PAIRS = [
    ("#Person1#은 내일 오후 세 시에 #Person2#와 도서관에서 만나기로 했습니다.",
     "#Person2#는 #Person1#과 내일 도서관에서 만나기로 약속합니다."),
    ("고객은 환불을 요청했지만 직원은 영수증이 필요하다고 설명했다.",
     "직원이 영수증 없이는 환불이 어렵다고 설명하자 고객은 실망했다."),
    ("The manager asks #Person2# to send the report by Friday.",
     "#Person2# promises to send the report to the manager on Friday."),
    ("김 선생님은 #PhoneNumber#로 연락 달라고 말한다.", "김 선생님이 #PhoneNumber# 번호로 전화해 달라고 부탁합니다."),
    ("Jimmy는 3시 30분에 gym에 간다", "Jimmy와 친구는 3시 30분에 체육관에 가기로 한다"),
    ("", "비어 있는 예측은 0점이다."),
    ("완전히 같은 문장입니다.", "완전히 같은 문장입니다."),
]


class _Tok:
    """Hands our tokens to rouge-score, so both sides count exactly the same tokens."""

    def __init__(self, name: str) -> None:
        self.name = name

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text, self.name)


def _reference_scores(name: str, pairs) -> list[tuple[float, float, float]]:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tok(name))
    out = []
    for pred, ref in pairs:
        s = scorer.score(ref, pred)  # rouge-score takes (target, prediction)
        out.append((s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure))
    return out


# ---------------------------------------------------------------- hand-computed values


def test_exact_match_and_disjoint():
    assert score_pair("오늘 날씨 정말 좋다", ["오늘 날씨 정말 좋다"], "whitespace") == (1.0, 1.0, 1.0)
    assert score_pair("사과 배", ["포도 귤 감"], "whitespace") == (0.0, 0.0, 0.0)
    assert score_pair("", ["포도 귤"], "whitespace") == (0.0, 0.0, 0.0)
    assert score_pair("포도", [""], "whitespace") == (0.0, 0.0, 0.0)


def test_hand_computed_precision_recall_f():
    # ref A B C D (4 tokens), pred A C B (3 tokens):
    # R1: overlap 3, P=3/3, R=3/4 -> F=2*1*0.75/1.75=6/7.  R2: pred bigrams AC, CB; ref AB, BC, CD -> 0.
    # RL: LCS=2 (A B), P=2/3, R=2/4 -> F=2*(1/3)/(7/6)=4/7.
    r1, r2, rl = score_pair("오늘 정말 날씨", ["오늘 날씨 정말 좋다"], "whitespace")
    assert r1 == pytest.approx(6 / 7, abs=1e-12)
    assert r2 == 0.0
    assert rl == pytest.approx(4 / 7, abs=1e-12)
    # Clipped counts: "the" appears 3x in the prediction but once in the reference: P=1/3, R=1/2 -> F=0.4.
    assert rouge_n(["the", "the", "the"], ["the", "cat"], 1) == pytest.approx(0.4, abs=1e-12)
    # Case is kept: "The" and "the" differ.
    assert rouge_n(["The"], ["the"], 1) == 0.0
    # R2 hand case: pred a b c, ref a b d: bigrams {ab, bc} vs {ab, bd}: P=R=1/2 -> F=1/2.
    assert rouge_n(list("abc"), list("abd"), 2) == pytest.approx(0.5, abs=1e-12)
    assert rouge_l(list("abcd"), list("acbd")) == pytest.approx(0.75, abs=1e-12)  # LCS 3 of 4 both sides


def test_the_counting_is_rouge_scores(monkeypatch):
    """Our tokens, rouge-score's n-gram and LCS arithmetic (no second implementation to drift)."""
    from rouge_score import rouge_scorer as rs

    calls = []
    for name in ("_score_ngrams", "_score_lcs"):
        original = getattr(rs, name)
        monkeypatch.setattr(rs, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    assert rouge_n(["가", "나"], ["가", "다"], 1) == 0.5 and calls == ["_score_ngrams"]
    assert rouge_l(["가", "나"], ["가", "다"]) == 0.5 and calls[1:] == ["_score_lcs"]
    calls.clear()
    assert score_pair("가 나", ["가 다", "가 나"], "whitespace") == (0.75, 0.5, 0.75)
    assert sorted(calls) == ["_score_lcs"] * 2 + ["_score_ngrams"] * 4  # 2 references x (R1, R2, RL)


# ---------------------------------------------------------------- parity with rouge-score


@pytest.mark.parametrize("name", TOKENIZERS)
def test_equals_rouge_score_given_same_tokens(name):
    expected = _reference_scores(name, PAIRS)
    for (pred, ref), exp in zip(PAIRS, expected):
        got = score_pair(pred, [ref], name)
        assert got == pytest.approx(exp, abs=1e-12), (name, pred)
    metric = SummaryRouge(tokenizer=name)
    metric.update([p for p, _ in PAIRS], [r for _, r in PAIRS])
    out = metric.compute()
    for i, key in enumerate(("r1", "r2", "rl")):
        assert out[key].item() == pytest.approx(sum(e[i] for e in expected) / len(expected), abs=1e-12)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_max_equals_rouge_score_multi(name):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tok(name))
    pred, refs = PAIRS[0][0], [PAIRS[0][1], PAIRS[1][1], PAIRS[0][0]]
    s = scorer.score_multi(refs, pred)
    got = score_pair(pred, refs, name, multi_ref="max")
    assert got == pytest.approx((s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure), abs=1e-12)


def _dev_pairs(n: int = 50) -> list[tuple[str, str]]:
    if not DEV_CSV.is_file():
        pytest.skip(f"{DEV_CSV} not available")
    with DEV_CSV.open(encoding="utf-8-sig", newline="") as f:
        refs = [row["summary"] for row in csv.DictReader(f) if row.get("summary")][:n]
    pairs = []
    for i, ref in enumerate(refs):
        if i % 2 == 0:  # drop every third morpheme
            pred = " ".join(t for j, t in enumerate(tokenize(ref)) if j % 3 != 2)
        else:  # reverse the sentence order (and so change bigrams at the joins, and the LCS)
            pred = " ".join(reversed([s for s in ref.replace(". ", ".\n").split("\n") if s]))
        pairs.append((pred, ref))
    return pairs


def test_real_korean_corpus_equals_rouge_score():
    pairs = _dev_pairs()
    expected = _reference_scores("morpheme", pairs)
    metric = SummaryRouge(tokenizer="morpheme")
    half = len(pairs) // 2
    for lo, hi in ((0, half), (half, len(pairs))):
        metric.update([p for p, _ in pairs[lo:hi]], [r for _, r in pairs[lo:hi]], ids=list(range(lo, hi)))
    out = metric.compute()
    for i, key in enumerate(("r1", "r2", "rl")):
        want = sum(e[i] for e in expected) / len(expected)
        assert out[key].item() == pytest.approx(want, abs=1e-9)
    # Pinned for these 50 dev pairs (Korean must never score 0 by accident).
    assert [out[k].item() for k in ("r1", "r2", "rl")] == pytest.approx([0.889213, 0.685421, 0.821303], abs=1e-6)
    assert out["rouge_mean"].item() == pytest.approx((out["r1"] + out["r2"] + out["rl"]).item() / 3 * 100)


def test_stock_rouge_score_gives_korean_zero_ours_does_not():
    pred, ref = "철수는 내일 친구와 영화를 본다.", "철수는 내일 친구와 영화를 보기로 했다."
    stock = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"]).score(ref, pred)
    assert all(s.fmeasure == 0.0 for s in stock.values())  # the bug this module exists for
    # morpheme: 10 vs 14 tokens, 9 shared (철수 는 내일 친구 와 영화 를 보 .), 7 of 9 vs 13 bigrams, LCS 9.
    assert score_pair(pred, [ref], "morpheme") == pytest.approx((18 / 24, 14 / 22, 18 / 24), abs=1e-12)
    # whitespace: 5 vs 6 words, 4 shared, 3 of 4 vs 5 bigrams, LCS 4.
    assert score_pair(pred, [ref], "whitespace") == pytest.approx((8 / 11, 6 / 9, 8 / 11), abs=1e-12)
    # char: 14 vs 17 characters, 13 shared, 11 of 13 vs 16 bigrams, LCS 13.
    assert score_pair(pred, [ref], "char") == pytest.approx((26 / 31, 22 / 29, 26 / 31), abs=1e-12)


# ---------------------------------------------------------------- metric behaviour


def test_multi_reference_mean_vs_max():
    # vs "A B": all 1.0; vs "C D": all 0.0 -> mean 0.5, max 1.0.
    assert score_pair("가 나", ["가 나", "다 라"], "whitespace", "mean") == (0.5, 0.5, 0.5)
    assert score_pair("가 나", ["가 나", "다 라"], "whitespace", "max") == (1.0, 1.0, 1.0)
    for mode, want in (("mean", 0.5), ("max", 1.0)):
        m = SummaryRouge(tokenizer="whitespace", multi_ref=mode)
        m.update(["가 나"], [["가 나", "다 라"]])
        assert m.compute()["r1"].item() == want
    # One string target or a one-element list are the same thing.
    a, b = SummaryRouge("whitespace"), SummaryRouge("whitespace")
    a.update(["가 나"], ["가 다"])
    b.update(["가 나"], [["가 다"]])
    assert a.compute()["rl"].item() == b.compute()["rl"].item() == 0.5


def test_duplicate_ids_counted_once():
    m = SummaryRouge(tokenizer="whitespace")
    m.update(["가 나", "다"], ["가 나", "라"], ids=[0, 1])
    m.update(["다"], ["라"], ids=torch.tensor([1]))  # DistributedSampler padding repeats sample 1
    out = m.compute()
    assert out["r1"].item() == 0.5  # (1 + 0) / 2, not (1 + 0 + 0) / 3
    assert out["rouge_sum"].item() == pytest.approx(1.5)
    assert out["rouge_mean"].item() == pytest.approx(50.0)
    # Without ids every prediction counts.
    m2 = SummaryRouge(tokenizer="whitespace")
    m2.update(["가 나", "다", "다"], ["가 나", "라", "라"])
    assert m2.compute()["r1"].item() == pytest.approx(1 / 3)


def _fake_gather(*other_states):
    """A ``dist_sync_fn`` that pretends a second rank holds ``other_states`` (in state order)."""
    others = iter(other_states)

    def gather(tensor, group=None):
        return [tensor, next(others)]

    return gather


@pytest.mark.filterwarnings("ignore:The ``compute`` method")  # the empty rank never called update
def test_ddp_sync_dedups_and_survives_an_empty_rank():
    # Two ranks that both scored sample 0 (padding) plus their own sample.
    a, b = SummaryRouge("whitespace"), SummaryRouge("whitespace")
    a.update(["가 나", "다"], ["가 나", "라"], ids=[0, 1])
    b.update(["가 나"], ["가 나"], ids=[0])
    b_states = [torch.cat(getattr(b, k)) for k in ("r1", "r2", "rl", "ids")]
    a._sync_dist(_fake_gather(*b_states))
    assert a.compute()["r1"].item() == 0.5
    # A rank that saw no data sends float32 empty fillers; ids must still de-duplicate correctly.
    empty = SummaryRouge("whitespace")
    empty._sync_dist(_fake_gather(*[torch.cat(getattr(a, k)) if isinstance(getattr(a, k), list)
                                    else getattr(a, k) for k in ("r1", "r2", "rl", "ids")]))
    assert empty.compute()["r1"].item() == 0.5


def test_empty_metric_returns_zeros():
    m = SummaryRouge()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about compute before update
        out = m.compute()
    assert set(out) == {"r1", "r2", "rl", "rouge_mean", "rouge_sum"}
    assert all(v.item() == 0.0 for v in out.values())
    m.update([], [])
    assert m.compute()["rouge_mean"].item() == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        SummaryRouge("char").update(["가", "나"], ["가"])
    with pytest.raises(ValueError, match="ids"):
        SummaryRouge("char").update(["가"], ["가"], ids=[0, 1])


# ---------------------------------------------------------------- tokenizers


def test_special_tokens_stay_whole():
    text = "#Person1#는 #Person2#에게 #PhoneNumber#로 전화하라고 했다.#Address#"
    tags = ["#Person1#", "#Person2#", "#PhoneNumber#", "#Address#"]
    assert tokenize(text, "morpheme") == ["#Person1#", "는", "#Person2#", "에게", "#PhoneNumber#", "로", "전화", "하",
                                          "라고", "하", "었", "다", ".", "#Address#"]
    assert tokenize(text, "char") == ["#Person1#", "는", "#Person2#", "에", "게", "#PhoneNumber#", "로", "전", "화", "하",
                                      "라", "고", "했", "다", ".", "#Address#"]
    assert [t for t in tokenize(text, "whitespace") if any(tag in t for tag in tags)] == [
        "#Person1#는", "#Person2#에게", "#PhoneNumber#로", "했다.#Address#"]
    # The particle after a tag is analysed in context ("는" as a particle, not 늘 + ㄴ).
    assert tokenize("#Person1#는 간다", "morpheme")[:2] == ["#Person1#", "는"]
    # whitespace is str.split(): a tag is never broken; a glued particle stays with it.
    assert tokenize("#Person1# 가 #PhoneNumber# 로", "whitespace") == ["#Person1#", "가", "#PhoneNumber#", "로"]
    assert tokenize("#Person1#는 간다", "whitespace") == ["#Person1#는", "간다"]


def test_char_and_whitespace_tokens():
    assert tokenize(" 가 나\n다 ", "char") == ["가", "나", "다"]
    assert tokenize("Hi 가!", "char") == ["H", "i", "가", "!"]
    assert tokenize("  Hello\tWorld \n", "whitespace") == ["Hello", "World"]
    assert tokenize("", "morpheme") == []


def test_unknown_tokenizer_is_an_error():
    with pytest.raises(ValueError, match="morpheme, whitespace, char"):
        tokenize("가", "bpe")
    with pytest.raises(ValueError, match="morpheme, whitespace, char"):
        SummaryRouge(tokenizer="bpe")
    with pytest.raises(ValueError, match="mean, max"):
        SummaryRouge(multi_ref="median")


# ---------------------------------------------------------------- rouge_from_files


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


REFS = [
    ["d_0", "#Person1#: 안녕하세요.\n#Person2#: 반가워요.", "두 사람이 인사를 나눕니다."],
    ["d_1", "#Person1#: 배고파.\n#Person2#: 밥 먹자.", "#Person2#가 #Person1#에게 밥을 먹자고 합니다."],
]


@pytest.fixture
def refs_csv(tmp_path):
    return _write_csv(tmp_path / "refs.csv", ["fname", "dialogue", "summary"], REFS)


def test_rouge_from_files_csv_with_index_column(tmp_path, refs_csv):
    preds = _write_csv(tmp_path / "sub.csv", ["", "fname", "summary"],
                       [["0", "d_1", "#Person2#가 밥을 먹자고 합니다."], ["1", "d_0", "두 사람이 인사합니다."]])
    out = rouge_from_files(str(preds), str(refs_csv), tokenizer="morpheme")
    assert out["n"] == 2 and isinstance(out["r1"], float)
    # d_1: 9 vs 11 morphemes, all 9 shared, 7 of 8 vs 10 bigrams, LCS 9; d_0: 7 vs 8, 6 shared, 4 of 6 vs 7, LCS 6.
    want = [(18 / 20, 14 / 18, 18 / 20), (12 / 15, 8 / 13, 12 / 15)]
    assert score_pair("#Person2#가 밥을 먹자고 합니다.", [REFS[1][2]]) == pytest.approx(want[0], abs=1e-12)
    for i, key in enumerate(("r1", "r2", "rl")):
        assert out[key] == pytest.approx((want[0][i] + want[1][i]) / 2, abs=1e-12)
    assert out["rouge_mean"] == pytest.approx((out["r1"] + out["r2"] + out["rl"]) / 3 * 100)
    assert out["rouge_sum"] == pytest.approx(out["r1"] + out["r2"] + out["rl"])


def test_rouge_from_files_jsonl_multi_reference(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text(json.dumps({"fname": "t_0", "dialogue": "#Person1#: 안녕.", "summary1": "가 나",
                                "summary2": "다 라", "summary3": "가 라"}, ensure_ascii=False) + "\n", encoding="utf-8")
    preds = _write_csv(tmp_path / "p.csv", ["fname", "summary"], [["t_0", "가 나"]])
    mean = rouge_from_files(preds, refs, tokenizer="whitespace", multi_ref="mean")
    best = rouge_from_files(preds, refs, tokenizer="whitespace", multi_ref="max")
    assert mean["r1"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert best["r1"] == 1.0 and best["n"] == 1


def _one_line_error(match: str, *args, **kwargs) -> str:
    from lightning_summ.io import DataError

    with pytest.raises(DataError) as info:
        rouge_from_files(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and match in msg, msg
    return msg


def test_rouge_from_files_errors(tmp_path, refs_csv):
    no_summary = _write_csv(tmp_path / "nosum.csv", ["fname", "text"], [["d_0", "가"]])
    assert "nosum.csv" in _one_line_error("'summary'", no_summary, refs_csv)
    no_fname = _write_csv(tmp_path / "nofname.csv", ["id", "summary"], [["d_0", "가"]])
    assert "nofname.csv" in _one_line_error("'fname'", no_fname, refs_csv)

    unknown = _write_csv(tmp_path / "unknown.csv", ["fname", "summary"],
                         [["d_0", "가"], ["d_1", "나"], ["d_9", "다"]])
    msg = _one_line_error("'d_9'", unknown, refs_csv)
    assert "unknown.csv" in msg and "row 3" in msg and "fname" in msg

    missing = _write_csv(tmp_path / "missing.csv", ["fname", "summary"], [["d_1", "가"]])
    msg = _one_line_error("1 reference(s)", missing, refs_csv)
    assert "missing.csv" in msg and "d_0" in msg

    empty_ref = _write_csv(tmp_path / "emptyref.csv", ["fname", "dialogue", "summary"],
                           [["d_0", "#Person1#: 안녕.", "인사"], ["d_1", "#Person1#: 잘 가.", ""]])
    both = _write_csv(tmp_path / "both.csv", ["fname", "summary"], [["d_0", "인사"], ["d_1", "작별"]])
    msg = _one_line_error("'summary'", both, empty_ref)
    assert "emptyref.csv" in msg and "row 2 (fname 'd_1')" in msg
