"""The speed benchmark's smoke test on tiny models: both sides run, and from identical weights they
write identical summaries (fp32 on the CPU), so the GPU ratios compare the same work. The benchmark runs
in ``tmp_path``: whatever it writes in its working directory (Lightning's config saver, with
``--trainer.logger=false``, writes ``config.yaml`` there) stays out of the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--data", str(REPO / "lightning_summ/sample_data/dev.csv"),
          "--tokenizer", str(REPO / "lightning_summ/assets/quickstart-tokenizer"), "--tiny", "--new_tokens", "4"]


def run_group(tmp_path, group: str, *extra: str, table_rows=None) -> list[dict]:
    (tmp_path / "work").mkdir()
    cmd = [sys.executable, str(REPO / "bench" / "speed_vs_hf.py"), "--group", group, *COMMON, "--out", str(tmp_path / "out"),
           "--scratch", str(tmp_path / "scratch"), "--model_dir", str(tmp_path / "model"), *extra]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=tmp_path / "work", capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / f"speed_vs_hf_{group}.json").read_text())
    table = (tmp_path / "out" / f"speed_vs_hf_{group}.md").read_text()
    assert not (REPO / "config.yaml").exists()
    assert table.count("\n| ") == 1 + (table_rows or len(report["rows"]))  # header + one line per row
    return report["rows"]


def test_kobart_group_trains_and_generates_the_same_texts_on_both_sides(tmp_path):
    rows = run_group(tmp_path, "kobart", "--batch_size", "8", "--eval_batch_size", "8", "--big_eval_batch_size", "16",
                     "--steps", "2", "--warmup", "1", "--rounds", "1")
    assert [r["workload"] for r in rows] == ["1 KoBART fine-tuning"] + ["2 KoBART beam-4 generation"] * 3
    assert all("error" not in r and r["ratio"] > 0 for r in rows)
    assert rows[0]["ours"]["samples_per_s"] > 0 and rows[0]["hf"]["tokens_per_s"] > 0
    assert [r["same_texts"] for r in rows[1:]] == ["40/40"] * 3


def test_causal_generate_rows_compare_identical_texts(tmp_path):
    rows = run_group(tmp_path, "causal-generate", "--gen_rows", "12", "--eval_batch_size", "6",
                     "--gen_plan", "lora-bf16:1:6:dynamic", "lora-bf16:2:6:static")
    assert [r["same_texts"] for r in rows] == ["12/12", "12/12"]
    assert all(r["ours"]["samples"] == 12 == r["hf"]["samples"] for r in rows)


def test_quality_group_trains_both_sides_by_time_and_scores_hf_in_dataset_order(tmp_path):
    root_files = {p.name: p.stat().st_mtime_ns for p in REPO.iterdir() if p.is_file()}
    rows = run_group(tmp_path, "quality", "--data", str(REPO / "lightning_summ/sample_data/train.csv"), "--test",
                     str(REPO / "lightning_summ/sample_data/dev.csv"), "--budget_s", "2", "--warmup", "1",
                     "--eval_batch_size", "16", "--decodes", "free", "--quality_variants", "ours", "hf+pad64", table_rows=4)
    ours, hf = rows
    assert [ours["variant"], hf["variant"]] == ["ours", "hf+pad64"]
    assert ours["steps"] >= 1 and hf["steps"] >= 1  # trained by time: a loaded machine may fit only one step
    assert set(ours["decodes"]) == {"free"} and set(hf["decodes"]) == {"free", "free-reordered", "free-sequential"}
    assert all(d["rows"] == 40 and 1 <= d["distinct"] <= 40 for r in rows for d in r["decodes"].values())
    # predict under length grouping returns the rows out of order; the sequential predict writes the
    # same texts as the reordered ones (fp32 on the CPU)
    assert hf["returned_rows_in_dataset_order"] < 40
    saved = json.loads((tmp_path / "scratch" / "quality" / "hf_pad64.json").read_text())["decodes"]
    assert saved["free-sequential"]["predictions"] == saved["free-reordered"]["predictions"]
    # the CLI's saved config.yaml lands in the variant's folder, not in the checkout
    assert (tmp_path / "scratch" / "quality" / "ours" / "config.yaml").exists()
    assert {p.name: p.stat().st_mtime_ns for p in REPO.iterdir() if p.is_file()} == root_files


def test_quality_rouge_is_rouge_score_with_stemming_averaged_over_references():
    sys.path.insert(0, str(REPO / "bench"))
    from quality_score import rouge

    scores = rouge(["the cats sat", "a dog ran"], [["the cat sat", "a dog ran"], ["a dog ran"]])
    assert scores["r1"] == 75.0 and scores["rl"] == 75.0  # (mean of 100 and 0, stemmed) and 100, over two rows
    assert scores["r2"] == 75.0


def test_compile_check_compares_eager_and_compiled_losses_step_by_step(tmp_path):
    cmd = [sys.executable, str(REPO / "bench" / "compile_check.py"), "--tiny", "--backend", "aot_eager", "--steps", "3",
           "--data", str(REPO / "lightning_summ/sample_data/dev.csv"),
           "--tokenizer", str(REPO / "lightning_summ/assets/quickstart-tokenizer"),
           "--out", str(tmp_path / "out"), "--model_dir", str(tmp_path / "model")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "compile_check.json").read_text())
    assert result["compiled_blocks"] == 2 and len(result["eager"]) == len(result["compiled"]) == 3
    assert result["max_abs_diff"] < 1e-5  # fp32 on the CPU under aot_eager: the same losses
    assert len(set(result["eager"])) == 3  # three real steps, each on its own batch


def run_profile(tmp_path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "bench" / "profile_step.py"), "--tiny", *COMMON[:4], "--out", str(tmp_path / "out"),
           "--scratch", str(tmp_path / "scratch"), "--model_dir", str(tmp_path / "model"), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def test_profile_step_profiles_a_window_of_training_steps_per_variant(tmp_path):
    proc = run_profile(tmp_path, "--config", "configs/kobart.yaml", "--warmup", "3", "--steps", "2", "--sync_sites",
                       "--variant", "b4=--data.batch_size=4", "--variant", "b8=--data.batch_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "profile_step.json").read_text())
    assert list(result["variants"]) == ["b4", "b8"] and result["stage"] == "train"
    for r in result["variants"].values():
        assert r["steps"] == 2 and r["wall_ms_per_step"] > 0 and r["unprofiled_wall_ms_per_step"] > 0
        assert r["samples_and_tokens"]["profiled"][0] == r["samples_and_tokens"]["unprofiled"][0] > 0  # 2 full batches each
        assert any(op["op"] == "aten::mm" or op["op"] == "aten::addmm" for op in r["top_host"])
        assert r["sync_sites"] == []  # the flag reaches the window (None without it); on a CPU nothing synchronizes
    assert (tmp_path / "out" / "profile_step.md").read_text().count("| b4 |") == 1


def test_profile_step_python_mode_lists_the_functions_a_step_spends_its_host_time_in(tmp_path):
    proc = run_profile(tmp_path, "--config", "configs/kobart.yaml", "--warmup", "3", "--steps", "2", "--python",
                       "--variant", "b4=--data.batch_size=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "out" / "profile_step.json").read_text())["variants"]["b4"]
    assert "top_host" not in r and r["wall_ms_per_step"] > 0
    functions = {f["function"] for f in r["python"]["top_cumulative"]}
    # the window holds whole training steps: the step's own Python is in it, under the optimizer's closure
    assert any("training_step" in f or "compute_loss" in f or "optimizer_step" in f for f in functions), functions
    assert all(f["cumulative_ms_per_step"] >= f["own_ms_per_step"] >= 0 for f in r["python"]["top_own"])
    assert "Python functions by own time" in (tmp_path / "out" / "profile_step.md").read_text()
    refused = run_profile(tmp_path, "--config", "configs/kobart.yaml", "--python", "--sync_sites")
    assert refused.returncode == 2 and "separate runs" in refused.stderr


def test_sync_sites_count_synchronizing_calls_by_the_lines_that_made_them(recwarn):
    sys.path.insert(0, str(REPO / "bench"))
    import warnings

    from profile_step import SYNC_WARNING, SyncSites

    def synchronizing_call():  # what torch.cuda.set_sync_debug_mode("warn") raises at such a call
        warnings.warn(f"{SYNC_WARNING}, e.g. a blocking copy", UserWarning)

    sites = SyncSites(frames=2)
    sites.start()
    for _ in range(4):
        synchronizing_call()
    warnings.warn("something else", UserWarning)
    sites.stop()
    synchronizing_call()  # after stop(): a plain warning again, not counted
    [(site, count)] = sites.counts.items()
    assert count == 4 and site.startswith("tests/test_bench.py:") and "synchronizing_call <- tests/test_bench.py:" in site
    assert sites.per_step(2) == [{"site": site, "per_step": 2.0}]
    assert [str(w.message) for w in recwarn if SYNC_WARNING not in str(w.message)] == ["something else"]
    assert sum(SYNC_WARNING in str(w.message) for w in recwarn) == 1


def test_profile_step_profiles_generation_batches_and_refuses_a_window_past_the_data(tmp_path):
    proc = run_profile(tmp_path, "--config", "configs/qwen3-4b-lora-bf16.yaml", "--stage", "predict", "--warmup", "1",
                       "--steps", "1", "--variant", "b16=--data.eval_batch_size=16 --model.init_args.generation.max_new_tokens=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "profile_step.json").read_text())
    assert result["stage"] == "predict" and result["variants"]["b16"]["steps"] == 1
    assert result["variants"]["b16"]["unprofiled_wall_ms_per_step"] is None  # it would be the cold first batch
    too_long = run_profile(tmp_path, "--config", "configs/kobart.yaml", "--warmup", "500", "--steps", "1",
                           "--variant", "b8=--data.batch_size=8 --trainer.max_epochs=1")
    assert too_long.returncode == 2 and "the run ended before 501 batches" in too_long.stderr


def test_causal_train_micro_batch_row_keeps_the_shipped_effective_batch(tmp_path):
    rows = run_group(tmp_path, "causal-train", "--variants", "lora-bf16", "--steps", "2", "--warmup", "1",
                     "--causal_options", "micro-batch")
    shipped, micro = rows
    assert "--data.batch_size=16 --trainer.accumulate_grad_batches=1" in micro["setting"]
    # 2 timed optimizer steps, one micro-batch each: more than 16 rows in 2 batches means batches of
    # more than 8 (up to 16; the 40-row file's last batch has 8)
    assert micro["ours"]["steps"] == 2 and 16 < micro["ours"]["samples"] <= 32
    assert shipped["hf"] == micro["hf"]  # HF at its shipped 8 x 2, run once for both rows
    # both sides trained sanely (a NaN run's speed is no result): ours counts NaN/inf losses, HF's mean is finite
    assert shipped["hf"]["train_loss"]["finite"] and shipped["ours"]["train_loss"]["nonfinite"] == 0
