"""The pipeline's API baseline stage (beside the commands: it runs `predict`): a seeded sample of the
API config's validation rows, predicted through the API (any OpenAI-compatible endpoint: Upstage,
OpenAI, a ``lightning_summ serve``), scored with the run's ROUGE; every finished member predicts the
same rows with each of its checkpoints, so the report compares them on equal terms."""

from __future__ import annotations

import random
from pathlib import Path

from lightning_summ.commands._pipeline_members import predict
from lightning_summ.errors import ConfigError
from lightning_summ.io import read_examples, write_examples
from lightning_summ.pipeline.scores import mean_scores, score_file


def api_args(api: dict, api_dir: Path) -> list[str]:
    """predict's flags for the API config, its runs under the run directory."""
    return ["--config", api["config"], f"--trainer.logger.init_args.save_dir={api_dir}",
            "--trainer.logger.init_args.name=api", *api["overrides"]]


def sample_rows(val_path: str, rows: int, seed: int, out: Path) -> int:
    """``rows`` validation examples drawn with ``seed`` (all of them if the file has fewer), in file order."""
    examples = read_examples(val_path, require_summary=True)
    keep = sorted(random.Random(seed).sample(range(len(examples)), min(rows, len(examples))))
    write_examples(out, [examples[i] for i in keep])
    return len(keep)


def api_stage(spec: dict, done: list[dict], run_dir: Path, tokenizer: str, multi_ref: str) -> dict:
    from lightning_summ.api.client import ApiSummarizer
    from lightning_summ.commands.lightning import run_cli

    api, api_dir = spec["api"], run_dir / "api"
    args = api_args(api, api_dir)
    probe = run_cli(args, run=False)
    if not isinstance(probe.model, ApiSummarizer):
        raise ConfigError(f"api.config {api['config']}: configures a {type(probe.model).__name__}, "
                          "not a lightning_summ.api.ApiSummarizer")
    if probe.model.client.dry_run:
        raise ConfigError(f"api.config {api['config']}: dry_run is on; the pipeline needs the API's answers")
    val_path = probe.datamodule.val_path
    if not val_path:
        raise ConfigError(f"api.config {api['config']}: data.val_path is not set (the API's rows come from it)")
    if probe.model.hparams.get("cache_dir") is None:  # not chosen by the config: the run directory keeps it
        args.append(f"--model.init_args.cache_dir={api_dir / 'cache'}")
    del probe
    rows_csv = api_dir / "rows.csv"
    n = sample_rows(val_path, api["rows"], api["seed"], rows_csv)
    submission = api_dir / "predict" / "submission.csv"
    cli = run_cli(["predict", *args, "--trainer.logger.init_args.version=predict", f"--data.predict_path={rows_csv}",
                   f"--submission.output_path={submission}"])
    members = {}
    for m in done:  # every member on the same rows: each checkpoint predicts them, the scores are averaged
        member_dir = run_dir / "members" / m["name"]
        files = [predict(m, member_dir, ckpt, member_dir / "api_rows" / str(i), [f"--data.predict_path={rows_csv}"])
                 for i, ckpt in enumerate(m["result"]["checkpoints"])]
        scored = [score_file(f["submission"], rows_csv, tokenizer, multi_ref) for f in files]
        members[m["name"]] = {**mean_scores(scored), "submissions": [f["submission"] for f in files]}
    return {"config": api["config"], "model": cli.model.client.model, "base_url": cli.model.client.base_url,
            "val_path": val_path, "rows_file": str(rows_csv), "rows": n, "submission": str(submission),
            "usage": dict(cli.model.client.usage), "scores": score_file(submission, rows_csv, tokenizer, multi_ref),
            "members": members}
