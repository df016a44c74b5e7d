"""Candidate-level ensembles: MBR and weighted voting over candidates.jsonl files."""

from __future__ import annotations

import json

import pytest

from lightning_summ.commands import main
from lightning_summ.io import DataError
from lightning_summ.commands.ensemble import combine
from lightning_summ.decoding.mbr import mbr_pick


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps({"fname": f, "summary": c[0], "candidates": [{"text": t, "score": -1.0} for t in c]},
                                         ensure_ascii=False) for f, c in rows) + "\n", encoding="utf-8")
    return str(path)


def test_mbr_picks_the_consensus_not_the_outlier_or_the_longest():
    pool = [(0, "#Person1#은 병원 예약을 내일 오전으로 잡습니다."),
            (1, "#Person1#은 내일 오전에 병원 예약을 잡습니다."),
            (2, "#Person2#는 주말에 가족과 함께 바닷가로 여행을 떠나기로 하고 숙소와 기차표를 미리 알아봅니다.")]
    assert mbr_pick(pool, [1.0, 1.0, 1.0], "whitespace") in (0, 1)
    # weights shift the expectation: with member 0 alone trusted, candidates near it win
    assert mbr_pick(pool, [1.0, 0.0, 0.0], "whitespace") == 1


def test_weighted_voting_adds_identical_summaries_and_reports_the_member():
    a = {"x": ["요약 가"], "y": ["요약 나"]}
    b = {"x": ["요약 가"], "y": ["요약 다"]}
    c = {"x": ["요약 라"], "y": ["요약 다"]}
    chosen = combine([a, b, c], ["a", "b", "c"], "weighted", [0.2, 0.2, 0.3], "whitespace")
    assert [r["summary"] for r in chosen] == ["요약 가", "요약 다"]  # 0.4 beats 0.3; 0.5 beats 0.2
    assert chosen[0]["member"] in ("a", "b") and chosen[1]["member"] in ("b", "c")
    chosen = combine([a, c], ["a", "c"], "weighted", [0.2, 0.3], "whitespace")
    assert [r["summary"] for r in chosen] == ["요약 라", "요약 다"]


def test_members_must_cover_the_same_inputs():
    with pytest.raises(DataError, match="first missing"):
        combine([{"x": ["a"], "y": ["b"]}, {"x": ["a"]}], ["one", "two"], "mbr", [1.0, 1.0], "whitespace")


def test_ensemble_command_writes_submission_in_input_order_and_report(tmp_path, capsys):
    rows_a = [("t_2", ["#Person1#은 택시를 부릅니다.", "택시를 부릅니다."]), ("t_1", ["#Person2#는 우산을 빌립니다."])]
    rows_b = [("t_1", ["#Person2#는 친구에게 우산을 빌립니다."]), ("t_2", ["#Person1#은 택시를 불러 공항에 갑니다."])]
    result = json.dumps({"rouge_mean": 30.0})
    (tmp_path / "ra.json").write_text(result)
    (tmp_path / "rb.json").write_text(json.dumps({"rouge_mean": 20.0}))
    main(["ensemble", "--inputs", _jsonl(tmp_path / "a.jsonl", rows_a), _jsonl(tmp_path / "b.jsonl", rows_b),
          "--method", "mbr", "--weights_from", str(tmp_path / "ra.json"), str(tmp_path / "rb.json"),
          "--tokenizer", "whitespace", "--output", str(tmp_path / "ens.csv")])
    lines = (tmp_path / "ens.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "fname,summary" and [ln.split(",")[0] for ln in lines[1:]] == ["t_2", "t_1"]
    report = json.loads((tmp_path / "ens.report.json").read_text())
    assert report["weights"] == {str(tmp_path / "a.jsonl"): 30.0, str(tmp_path / "b.jsonl"): 20.0}
    assert sum(report["chosen_from"].values()) == 2
    assert "Wrote 2 summaries" in capsys.readouterr().out


def test_bad_candidates_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"fname": "x"}\n')
    with pytest.raises(SystemExit) as e:
        main(["ensemble", "--inputs", str(bad), "--output", str(tmp_path / "o.csv")])
    assert e.value.code == 2
    assert f"{bad}: row 1 (fname 'x'):" in capsys.readouterr().err and not (tmp_path / "o.csv").exists()
