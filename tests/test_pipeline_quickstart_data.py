"""The shipped SYNTHETIC Korean set (issue 13, part 2): the committed CSVs are the generator's
deterministic output, and every summary names the slots (names, times, places, items) of its dialogue."""

from __future__ import annotations

import importlib.util

from conftest import REPO

GENERATOR = REPO / "lightning_summ" / "sample_data" / "make_synthetic.py"


def generator():
    spec = importlib.util.spec_from_file_location("make_synthetic", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_synthetic_files_are_the_generators_output():
    assert generator().main(["--check"]) == 0


def test_every_synthetic_summary_names_its_dialogues_facts():
    splits = generator().generate()
    dialogues = [r["dialogue"] for rows in splits.values() for r in rows]
    assert len(set(dialogues)) == len(dialogues)  # no test or dev dialogue is also a training one
    for rows in splits.values():
        for r in rows:
            assert all(fact in r["dialogue"] and fact in r["summary"] for fact in r["facts"]), r
