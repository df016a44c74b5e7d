"""lightning_summ.io: the competition CSV and DialogSum JSONL load as they are; submissions and candidates
round-trip through their writer and reader with the same rules; every bad file is one clear line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lightning_summ.commands import main
from lightning_summ.io import (DataError, Example, atomic_write, normalize_text, read_candidates, read_examples,
                               read_submission, write_candidates, write_examples, write_submission)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Written for these tests (not taken from any data set).
DIALOGUE_1 = "#Person1#: 안녕하세요, 무엇을 도와드릴까요?\n#Person2#: 내일 오후에 회의실을 예약하고 싶어요."
SUMMARY_1 = "#Person2#는 내일 오후 회의실 예약을 요청한다."
DIALOGUE_2 = "#Person1#: 점심 뭐 먹을래?\n#Person2#: 비빔밥 어때?\n#Person1#: 좋아, 가자."
SUMMARY_2 = "두 사람은 점심으로 비빔밥을 먹기로 한다."
DIALOGUE_3 = "#Person1#: 제 번호는 #PhoneNumber#예요.\n#Person2#: 네, 저장해 둘게요."
SUMMARY_3 = "#Person1#가 #Person2#에게 전화번호를 알려준다."


def write_csv(path: Path, header: list[str], rows: list[list[str]], newline: str = "\n", bom: bool = False) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_error(path: Path, require_summary: bool = False) -> str:
    with pytest.raises(DataError) as info:
        read_examples(path, require_summary=require_summary)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert str(path) in message
    return message


# -- loading ----------------------------------------------------------------------------------------

def test_competition_csv_with_multiline_quoted_dialogues(tmp_path):
    path = write_csv(tmp_path / "train.csv", ["fname", "dialogue", "summary", "topic"],
                     [["train_0", DIALOGUE_1, SUMMARY_1, "회의실 예약"],
                      ["train_1", DIALOGUE_2, SUMMARY_2, "점심"]])
    examples = read_examples(path, require_summary=True)
    assert examples == [Example("train_0", DIALOGUE_1, [SUMMARY_1], "회의실 예약"),
                        Example("train_1", DIALOGUE_2, [SUMMARY_2], "점심")]


def test_csv_without_summary_loads_for_prediction(tmp_path):
    path = write_csv(tmp_path / "test.csv", ["fname", "dialogue"], [["test_0", DIALOGUE_1], ["test_1", DIALOGUE_2]])
    examples = read_examples(path)
    assert [e.fname for e in examples] == ["test_0", "test_1"]
    assert [e.dialogue for e in examples] == [DIALOGUE_1, DIALOGUE_2]
    assert all(e.summaries == [] and e.topic is None for e in examples)


def test_csv_column_order_does_not_matter(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["summary", "topic", "dialogue", "fname"], [[SUMMARY_1, "예약", DIALOGUE_1, "a"]])
    assert read_examples(path, require_summary=True) == [Example("a", DIALOGUE_1, [SUMMARY_1], "예약")]


def test_jsonl_single_summary(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [
        {"fname": "train_0", "dialogue": DIALOGUE_1, "summary": SUMMARY_1, "topic": "예약"},
        {"fname": "train_1", "dialogue": DIALOGUE_2, "summary": SUMMARY_2, "topic": "점심"},
    ])
    examples = read_examples(path, require_summary=True)
    assert examples == [Example("train_0", DIALOGUE_1, [SUMMARY_1], "예약"),
                        Example("train_1", DIALOGUE_2, [SUMMARY_2], "점심")]


def test_jsonl_multi_reference_in_numeric_order(tmp_path):
    # Keys deliberately out of order: references come back as summary1, summary2, summary3.
    path = write_jsonl(tmp_path / "test.jsonl", [
        {"fname": "test_0", "dialogue": DIALOGUE_3, "summary3": "셋째 요약", "summary1": "첫째 요약",
         "summary2": "둘째 요약", "topic1": "전화번호", "topic2": "연락", "topic3": "번호"},
    ])
    [example] = read_examples(path, require_summary=True)
    assert example.summaries == ["첫째 요약", "둘째 요약", "셋째 요약"]
    assert example.topic == "전화번호"


def test_jsonl_records_may_have_different_reference_counts(tmp_path):
    # Regression: the summary fields were taken from the first record only, silently dropping summary3 here.
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"fname": "a", "dialogue": DIALOGUE_1, "summary1": "하나"},
        {"fname": "b", "dialogue": DIALOGUE_2, "summary1": "하나", "summary2": "둘", "summary3": "셋"},
        {"fname": "c", "dialogue": DIALOGUE_3, "summary": "단일"},
    ])
    assert [e.summaries for e in read_examples(path, require_summary=True)] == [["하나"], ["하나", "둘", "셋"], ["단일"]]


def test_jsonl_multi_reference_skips_empty_references(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"fname": "a", "dialogue": DIALOGUE_1, "summary1": SUMMARY_1, "summary2": "", "summary3": "  "},
    ])
    assert read_examples(path, require_summary=True)[0].summaries == [SUMMARY_1]


def test_json_suffix_is_read_as_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "x.json", [{"fname": "a", "dialogue": DIALOGUE_1}])
    assert read_examples(path)[0].dialogue == DIALOGUE_1


def test_jsonl_skips_blank_lines_and_accepts_crlf(tmp_path):
    lines = [json.dumps({"fname": f, "dialogue": DIALOGUE_2}, ensure_ascii=False) for f in ("a", "b")]
    path = tmp_path / "x.jsonl"
    path.write_bytes(("\r\n".join([lines[0], "", lines[1]]) + "\r\n\r\n").encode("utf-8"))
    assert [e.fname for e in read_examples(path)] == ["a", "b"]


# -- normalisation ------------------------------------------------------------------------------------

def test_normalize_text():
    assert normalize_text("가\r\n나\r다\\n라") == "가\n나\n다\n라"
    assert normalize_text("  \n가나   \n다  \n\n") == "가나\n다"


def test_crlf_csv_is_normalised(tmp_path):
    # A Windows export: CRLF between records and inside the quoted dialogue.
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue", "summary"],
                     [["a", DIALOGUE_1.replace("\n", "\r\n"), SUMMARY_1], ["b", DIALOGUE_2.replace("\n", "\r\n"), SUMMARY_2]],
                     newline="\r\n")
    assert b"\r\n" in path.read_bytes()
    examples = read_examples(path, require_summary=True)
    assert [e.dialogue for e in examples] == [DIALOGUE_1, DIALOGUE_2]
    assert [e.summaries for e in examples] == [[SUMMARY_1], [SUMMARY_2]]


def test_literal_backslash_n_becomes_newline(tmp_path):
    one_line = DIALOGUE_1.replace("\n", "\\n")
    assert "\n" not in one_line
    csv_path = write_csv(tmp_path / "x.csv", ["fname", "dialogue", "summary"], [["a", one_line, "요약\\n둘째 줄"]])
    [example] = read_examples(csv_path)
    assert example.dialogue == DIALOGUE_1
    assert example.summaries == ["요약\n둘째 줄"]
    jsonl_path = write_jsonl(tmp_path / "x.jsonl", [{"fname": "a", "dialogue": one_line,
                                                     "summary": SUMMARY_1.replace(" ", " \r\n", 1)}])
    [example] = read_examples(jsonl_path)
    assert example.dialogue == DIALOGUE_1
    assert example.summaries == [SUMMARY_1.replace(" ", "\n", 1)]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf8_bom_is_tolerated(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    if suffix == ".csv":
        write_csv(path, ["fname", "dialogue", "summary"], [["a", DIALOGUE_1, SUMMARY_1]], bom=True)
    else:
        path.write_bytes(b"\xef\xbb\xbf" + (json.dumps({"fname": "a", "dialogue": DIALOGUE_1, "summary": SUMMARY_1},
                                                         ensure_ascii=False) + "\n").encode("utf-8"))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert read_examples(path, require_summary=True) == [Example("a", DIALOGUE_1, [SUMMARY_1])]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x1e"])
def test_unicode_line_separators_do_not_split_records(tmp_path, separator):
    # Regression: str.splitlines() breaks lines at these, which csv writers leave unquoted and JSON allows
    # unescaped; a CSV row was silently cut in two and a valid JSON line was rejected.
    dialogue = f"#Person1#: 첫째{separator}둘째"
    csv_path = write_csv(tmp_path / "x.csv", ["fname", "dialogue"], [["a", dialogue], ["b", DIALOGUE_2]])
    assert [(e.fname, e.dialogue) for e in read_examples(csv_path)] == [("a", dialogue), ("b", DIALOGUE_2)]
    jsonl_path = tmp_path / "x.jsonl"
    jsonl_path.write_text(json.dumps({"fname": "a", "dialogue": dialogue}, ensure_ascii=False) + "\n", encoding="utf-8")
    if ord(separator) >= 0x20:  # json.dumps escapes C0 controls, but writes U+0085, U+2028, U+2029 raw
        assert separator in jsonl_path.read_text(encoding="utf-8")
    assert [e.dialogue for e in read_examples(jsonl_path)] == [dialogue]


# -- errors: one line, naming file, row and field ------------------------------------------------------

def test_missing_fname_column(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["id", "dialogue", "summary"], [["a", DIALOGUE_1, SUMMARY_1]])
    assert read_error(path) == f"{path}: header: missing column 'fname' (found: id, dialogue, summary)"


def test_missing_dialogue_column(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["fname", "text", "summary"], [["a", DIALOGUE_1, SUMMARY_1]])
    assert read_error(path) == f"{path}: header: missing column 'dialogue' (found: fname, text, summary)"


def test_missing_dialogue_key_in_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"fname": "a", "text": DIALOGUE_1}])
    assert read_error(path) == f"{path}: header: missing column 'dialogue' (found: fname, text)"


def test_missing_summary_column_only_when_required(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue", "topic"], [["a", DIALOGUE_1, "예약"]])
    assert read_examples(path)[0].summaries == []
    expected = f"{path}: header: missing column 'summary' (or summary1, summary2, ...)"
    assert read_error(path, require_summary=True) == expected


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   \r\n", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_file(tmp_path, content, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(content)
    assert "empty" in read_error(path)


def test_header_only_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("fname,dialogue,summary\n", encoding="utf-8")
    assert "no rows" in read_error(path)


def test_empty_dialogue(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue", "summary"],
                     [["a", DIALOGUE_2, SUMMARY_2], ["b", " \n ", SUMMARY_1]])
    # Row "a" spans lines 2-4 (three-line dialogue); "b" starts on line 5 and is the second record.
    assert read_error(path) == f"{path}: row 2 (fname 'b'): field 'dialogue' is empty"


def test_empty_summary_when_required(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue", "summary"], [["a", DIALOGUE_1, SUMMARY_1], ["b", "대화", ""]])
    assert read_examples(path)[1].summaries == []
    assert read_error(path, require_summary=True) == f"{path}: row 2 (fname 'b'): field 'summary' is empty"


def test_empty_multi_reference_summaries_when_required(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"fname": "a", "dialogue": DIALOGUE_1, "summary1": SUMMARY_1, "summary2": SUMMARY_2},
        {"fname": "b", "dialogue": DIALOGUE_2, "summary1": "", "summary2": ""},
    ])
    assert read_error(path, require_summary=True) == f"{path}: row 2 (fname 'b'): field 'summary1' is empty"


def test_empty_fname(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue"], [["a", "대화"], ["  ", "대화"]])
    assert read_error(path) == f"{path}: row 2: field 'fname' is empty"


def test_cp949_bytes_are_reported_with_their_row(tmp_path):
    header_and_good_row = "fname,dialogue,summary\na,\"첫 줄\n둘째 줄\",요약\n".encode("utf-8")
    bad_row = "b,안녕하세요,인사\n".encode("cp949")
    path = tmp_path / "cp949.csv"
    path.write_bytes(header_and_good_row + bad_row)
    message = read_error(path)  # the physical line: no record can be read from bytes that do not decode
    assert message.startswith(f"{path}: line 4: not valid UTF-8")


def test_duplicate_fname_names_both_rows(tmp_path):
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue", "summary"],
                     [["a", DIALOGUE_1, SUMMARY_1], ["b", DIALOGUE_2, SUMMARY_2], ["a", "다른 대화", "다른 요약"]])
    # a: lines 2-3, b: lines 4-6, second a: line 7, the third record.
    assert read_error(path) == f"{path}: row 3: field 'fname': duplicate 'a' (first at row 1)"


def test_duplicate_fname_in_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"fname": "a", "dialogue": "가"}, {"fname": "b", "dialogue": "나"},
                                              {"fname": "a", "dialogue": "다"}])
    assert read_error(path) == f"{path}: row 3: field 'fname': duplicate 'a' (first at row 1)"


def test_invalid_json_line(tmp_path):
    path = tmp_path / "x.jsonl"
    good = json.dumps({"fname": "a", "dialogue": DIALOGUE_1}, ensure_ascii=False)
    path.write_text(good + "\n" + '{"fname": "b", "dialogue": "끝나지 않은\n' + good.replace('"a"', '"c"') + "\n",
                    encoding="utf-8")
    assert read_error(path) == f"{path}: line 2: not valid JSON (Unterminated string starting at)"


def test_json_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"fname": "a", "dialogue": "가"}) + "\n" + json.dumps(["b", "나"]) + "\n",
                    encoding="utf-8")
    assert read_error(path) == f"{path}: line 2: expected a JSON object, got list"


@pytest.mark.parametrize("delimiter, name", [("\t", "tab"), (";", "semicolon")])
def test_a_header_with_another_delimiter_says_so(tmp_path, delimiter, name):
    """Issue 12: a TSV said only "missing column 'fname'"."""
    header = delimiter.join(["fname", "dialogue", "summary"])
    path = tmp_path / "x.tsv"
    path.write_text(header + "\n" + delimiter.join(["a", "대화", "요약"]) + "\n", encoding="utf-8")
    assert read_error(path) == (f"{path}: header: missing column 'fname' (found: {header!r}; the header looks "
                                f"{name}-separated: lightning_summ reads comma-separated CSV or JSONL)")


def test_fnames_keep_leading_and_trailing_spaces_when_read_and_written(tmp_path):
    """Issue 12: a leading space in an fname was lost (the submission then named another id)."""
    path = write_csv(tmp_path / "x.csv", ["fname", "dialogue"], [[" a", "대화"], ["b ", "대화"], ["a", "대화"]])
    assert [e.fname for e in read_examples(path)] == [" a", "b ", "a"]
    write_submission(tmp_path / "s.csv", [(" a", "요약"), ("b ", "요약"), ("a", "요약")])
    assert list(read_submission(tmp_path / "s.csv")) == [" a", "b ", "a"]
    jsonl = write_jsonl(tmp_path / "x.jsonl", [{"fname": " a", "dialogue": "대화"}])
    assert read_examples(jsonl)[0].fname == " a"


def test_path_that_does_not_exist(tmp_path):
    path = tmp_path / "nowhere" / "train.csv"
    assert "no such file" in read_error(path)


def test_directory_is_not_a_file(tmp_path):
    assert read_error(tmp_path) == f"{tmp_path}: is a directory, not a file"


def test_a_dialogue_longer_than_the_csv_field_limit_is_read(tmp_path):
    # Regression: csv's default limit (131,072 characters) crashed the reader with _csv.Error.
    long_dialogue = "#Person1#: " + "가" * 200_000
    path = write_csv(tmp_path / "long.csv", ["fname", "dialogue"], [["a", long_dialogue]])
    assert read_examples(path)[0].dialogue == long_dialogue


# -- row numbers -------------------------------------------------------------------------------------

def test_row_numbers_count_records_not_lines_after_multiline_quoted_dialogues(tmp_path):
    # Header line 1; "a" lines 2-3; "b" lines 4-6; "c" line 7; "d" line 8, the fourth record, has an
    # empty dialogue. Issue 12: the error said "row 8", which is not the record a user sees.
    rows = [["a", DIALOGUE_1, SUMMARY_1], ["b", DIALOGUE_2, SUMMARY_2], ["c", "한 줄 대화", "요약"], ["d", "", "요약"]]
    for newline in ("\n", "\r\n"):
        path = write_csv(tmp_path / f"rows{len(newline)}.csv", ["fname", "dialogue", "summary"], rows, newline=newline)
        assert read_error(path) == f"{path}: row 4 (fname 'd'): field 'dialogue' is empty"


def test_row_number_after_a_blank_line(tmp_path):
    # A blank line is not a row: "b" is the second record.
    path = tmp_path / "x.csv"
    path.write_text(f'fname,dialogue\na,"{DIALOGUE_1}"\n\nb,\n', encoding="utf-8")
    assert read_error(path) == f"{path}: row 2 (fname 'b'): field 'dialogue' is empty"


def test_short_csv_row_is_an_empty_field_not_a_crash(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("fname,dialogue,summary\na,대화,요약\nb\n", encoding="utf-8")
    assert read_error(path) == f"{path}: row 2 (fname 'b'): field 'dialogue' is empty"


# -- the real files, when the shared data is present ---------------------------------------------------

@pytest.mark.parametrize("relative, rows, references, require_summary", [
    ("ko_dialogsum_competition_2025/dev.csv", 499, 1, True),
    ("ko_dialogsum_competition_2025/test.csv", 499, 0, False),
    ("dialogsum_en/test.jsonl", 500, 3, True),
])
def test_real_files(relative, rows, references, require_summary):
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    examples = read_examples(path, require_summary=require_summary)
    assert len(examples) == rows
    assert len({e.fname for e in examples}) == rows
    assert all(len(e.summaries) == references for e in examples)
    assert all(e.dialogue and "\r" not in e.dialogue and "\\n" not in e.dialogue for e in examples)
    assert all("#Person1#" in e.dialogue for e in examples)


# -- submissions and candidates: writer and reader agree --------------------------------------------------

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0c"]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_candidates_with_line_separators_round_trip_and_ensemble(tmp_path, separator, capsys):
    # Regression: write_candidates (ensure_ascii=False) writes U+2028/U+0085 raw; the old ensemble reader
    # split lines with str.splitlines() and failed with "Unterminated string".
    text = f"#Person1#은 병원에 갑니다.{separator}내일 다시 옵니다."
    records = [{"index": 0, "fname": "t_1", "summary": text, "candidates": [{"text": text, "score": -0.5},
                                                                               {"text": "다른 요약", "score": -0.9}]},
               {"index": 1, "fname": "t_2", "summary": SUMMARY_2, "candidates": [{"text": SUMMARY_2, "score": -0.1}]}]
    path = tmp_path / "candidates.jsonl"
    write_candidates(path, records)
    assert "index" not in path.read_text(encoding="utf-8")  # only the ensemble format's keys are written
    assert read_candidates(path) == {"t_1": [text, "다른 요약"], "t_2": [SUMMARY_2]}
    main(["ensemble", "--inputs", str(path), str(path), "--tokenizer", "whitespace", "--output", str(tmp_path / "e.csv")])
    assert read_submission(tmp_path / "e.csv") == {"t_1": text, "t_2": SUMMARY_2}
    assert "Wrote 2 summaries" in capsys.readouterr().out


@pytest.mark.parametrize("separator", SEPARATORS)
def test_submission_with_line_separators_round_trips_and_scores(tmp_path, separator, capsys):
    # Regression: the old score reader split the CSV with str.splitlines(): "field 'summary' is missing".
    text = f"#Person2#는 회의실을 예약한다.{separator}내일 오후다."
    sub = tmp_path / "sub.csv"
    write_submission(sub, [("a", text), ("b", SUMMARY_2)])
    assert read_submission(sub) == {"a": text, "b": SUMMARY_2}
    refs = write_csv(tmp_path / "refs.csv", ["fname", "dialogue", "summary"], [["a", DIALOGUE_1, text], ["b", DIALOGUE_2, SUMMARY_2]])
    main(["score", "--predictions", str(sub), "--references", str(refs), "--tokenizer", "whitespace"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 2 and result["rouge_mean"] == pytest.approx(100.0)


def test_candidates_without_candidates_use_the_summary_and_keep_file_order(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"fname": "z", "summary": "하나"}\n\n{"fname": "a", "summary": "둘", "candidates": []}\n', encoding="utf-8")
    assert list(read_candidates(path).items()) == [("z", ["하나"]), ("a", ["둘"])]


@pytest.mark.parametrize("content, expected", [
    ('{"fname": "x"}\n', "row 1 (fname 'x'): field 'candidates' (or 'summary') is missing"),
    ('{"fname": "x", "summary": "a"}\n{"fname": "x", "summary": "b"}\n', "row 2: field 'fname': duplicate 'x' (first at row 1)"),
    ('{"fname": "x", "candidates": ["a"]}\n',
     "row 1 (fname 'x'): field 'candidates': expected a list of objects with a 'text'"),
    ('{"summary": "a"}\n', "row 1: field 'fname' is empty"),
    ('{"fname": "x", "summary": "a"}\n\n{"fname": \n', "line 3: not valid JSON (Expecting value)"),
    ("", "the file is empty"),
])
def test_bad_candidates_are_one_line(tmp_path, content, expected):
    path = tmp_path / "c.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_candidates(path)
    assert str(info.value) == f"{path}: {expected}"


@pytest.mark.parametrize("rows, expected", [
    ([["fname", "text"], ["a", "b"]], "header: missing column 'summary' (found: fname, text)"),
    ([["fname", "summary"], ["a", "x"], ["a", "y"]], "row 2: field 'fname': duplicate 'a' (first at row 1)"),
    ([["fname", "summary"], ["a"]], "row 1 (fname 'a'): field 'summary' is missing (short row)"),
    ([["fname", "summary"], ["", "x"]], "row 1: field 'fname' is empty"),
])
def test_bad_submissions_are_one_line(tmp_path, rows, expected):
    path = write_csv(tmp_path / "s.csv", rows[0], rows[1:])
    with pytest.raises(DataError) as info:
        read_submission(path)
    assert str(info.value) == f"{path}: {expected}"


def test_submission_with_an_index_column_and_multiline_summaries(tmp_path):
    path = write_csv(tmp_path / "s.csv", ["", "fname", "summary"], [["0", "b", "줄 하나\r\n줄 둘"], ["1", "a", "요약"]])
    assert list(read_submission(path).items()) == [("b", "줄 하나\n줄 둘"), ("a", "요약")]


def test_examples_round_trip_with_several_references(tmp_path):
    examples = [Example("a", DIALOGUE_1, [SUMMARY_1, SUMMARY_2]), Example("b", DIALOGUE_2, [SUMMARY_2])]
    write_examples(tmp_path / "e.csv", examples)
    assert read_examples(tmp_path / "e.csv", require_summary=True) == examples
    assert (tmp_path / "e.csv").read_text(encoding="utf-8").splitlines()[0] == "fname,dialogue,summary1,summary2"


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out" / "s.csv"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert list((tmp_path / "out").iterdir()) == []
    write_submission(target, [("a", "b")])
    write_submission(target, [("c", "d")])  # replaces, never appends
    assert read_submission(target) == {"c": "d"}
