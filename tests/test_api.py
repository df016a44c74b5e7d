"""The API client against the real server on loopback: equality with local predict, 429, timeouts,
keys, cache, dry run. Nothing is mocked: requests go through openai's client and uvicorn over HTTP."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from conftest import CONFIGS, QUICKSTART, TINY
from lightning_summ.api.client import ApiError, ApiSummarizer
from lightning_summ.api.server import create_app
from lightning_summ.commands.serve import load_module
from lightning_summ.commands.lightning import run_cli
from lightning_summ.io import read_examples
from lightning_summ.paths import resolve_path

SECRET = "sk-test-SECRET-9f8e7d"
TEST_CSV = resolve_path("pkg://sample_data/test.csv")


@contextlib.contextmanager
def serving(app):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # log_config=None: uvicorn must not bind logging handlers to the stream pytest captures (and closes)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny quickstart checkpoint, its local predictions, and the module the server serves."""
    root = tmp_path_factory.mktemp("api")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        args = ["--config", str(QUICKSTART), *TINY]
        cli = run_cli(["fit", *args, "--trainer.max_epochs=2", "--trainer.limit_train_batches=4",
                       "--model.init_args.evaluation.generate_every_n_epochs=1",
                       "--trainer.callbacks.init_args.every_n_epochs=1", "--model.init_args.optimizer.lr=5e-3"])
        ckpt = str((root / cli.trainer.checkpoint_callback.best_model_path).resolve())
        run_cli(["predict", *args, "--ckpt_path", ckpt, f"--submission.output_path={root}/local.csv"])
        module = load_module(args, ckpt)
    finally:
        os.chdir(cwd)
    return {"root": root, "ckpt": ckpt, "local": root / "local.csv", "module": module}


def client(base_url: str, tmp_path: Path, **kwargs) -> ApiSummarizer:
    kwargs = {"model": "tiny", "base_url": base_url, "api_key_env": "LS_TEST_KEY", "system_prompt": None,
              "user_template": "{dialogue}", "cache_dir": str(tmp_path / "cache"), "backoff": 0.01, **kwargs}
    return ApiSummarizer(**kwargs)


def dialogues_batch(n: int = 40) -> dict:
    examples = read_examples(TEST_CSV)[:n]
    return {"dialogue": [ex.dialogue for ex in examples], "fname": [ex.fname for ex in examples]}


def test_predict_through_http_equals_local_predict_and_reruns_from_cache(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    app = create_app(trained["module"], max_batch_size=8, max_wait_ms=20, api_key=SECRET)
    with serving(app) as url:
        args = ["predict", "--config", str(CONFIGS / "solar-api.yaml"), f"--model.init_args.base_url={url}",
                "--model.init_args.model=tiny", "--model.init_args.api_key_env=LS_TEST_KEY",
                "--model.init_args.system_prompt=null", "--model.init_args.user_template={dialogue}",
                "--model.init_args.few_shot=0", f"--model.init_args.cache_dir={tmp_path}/cache",
                "--data.train_path=pkg://sample_data/train.csv", f"--data.predict_path={TEST_CSV}",
                f"--submission.output_path={tmp_path}/http.csv"]
        run_cli(args)
        first = capsys.readouterr().out
        assert app.state.batcher.stats["batches"] < app.state.batcher.stats["requests"] == 40  # really batched
        run_cli(args)
        second = capsys.readouterr().out
    with open(trained["local"], newline="", encoding="utf-8") as f:
        local = list(csv.DictReader(f))
    assert len(local) == 40 and all(row["summary"] for row in local)  # a real comparison, not of empty strings
    assert (tmp_path / "http.csv").read_text(encoding="utf-8") == trained["local"].read_text(encoding="utf-8")
    usage = [json.loads(line.split("API usage: ")[1]) for line in (first + second).splitlines() if "API usage" in line]
    assert usage[0]["requests"] == 40 and usage[0]["completion_tokens"] > 0
    assert usage[1]["requests"] == 0 and usage[1]["cache_hits"] == 40  # the rerun costs nothing
    # The key is nowhere in what the run saved or printed.
    saved = [p for p in Path(tmp_path, "logs").rglob("*") if p.is_file()]
    assert saved and not any(SECRET.encode() in p.read_bytes() for p in saved)
    assert SECRET not in first + second


def test_429_with_retry_after_is_honoured_until_all_succeed(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    app = create_app(trained["module"], max_batch_size=2, max_wait_ms=30, max_queue=2, retry_after=0.05)
    with serving(app) as url:
        api = client(url, tmp_path, max_concurrency=8, max_retries=30)
        results = api.generate_candidates(dialogues_batch(24))
    assert len(results) == 24 and all(r[0][0] for r in results)
    assert app.state.batcher.stats["rejected_429"] > 0 and api.usage["retries"] >= app.state.batcher.stats["rejected_429"]


def test_timeouts_are_retried_then_fail_with_one_clear_line(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    app = create_app(trained["module"], max_batch_size=64, max_wait_ms=1500)  # slower than the client waits
    with serving(app) as url:
        api = client(url, tmp_path, timeout=0.3, max_retries=2)
        with pytest.raises(ApiError, match="gave up after 3 attempts \\(APITimeoutError\\)") as err:
            api.generate_candidates(dialogues_batch(1))
        time.sleep(1.6)
    assert app.state.batcher.stats["requests"] == 3 and api.usage["retries"] == 2
    assert "\n" not in str(err.value)


def test_missing_or_rejected_key_is_a_clear_error_without_the_key(trained, tmp_path, monkeypatch):
    monkeypatch.delenv("LS_TEST_KEY", raising=False)
    with pytest.raises(ApiError, match="set the environment variable LS_TEST_KEY"):
        client("http://127.0.0.1:9/v1", tmp_path).generate_candidates(dialogues_batch(1))
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    app = create_app(trained["module"], api_key="the-right-key")
    with serving(app) as url:
        with pytest.raises(ApiError) as err:
            client(url, tmp_path).generate_candidates(dialogues_batch(1))
    assert "rejected the key in LS_TEST_KEY (HTTP 401)" in str(err.value) and SECRET not in str(err.value)


def test_dry_run_prints_few_shot_prompts_and_sends_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LS_TEST_KEY", raising=False)  # no key needed: nothing is sent
    monkeypatch.chdir(tmp_path)
    run_cli(["predict", "--config", str(CONFIGS / "solar-api.yaml"), "--model.init_args.dry_run=true",
             "--model.init_args.api_key_env=LS_TEST_KEY", "--model.init_args.base_url=http://127.0.0.1:9/v1",
             "--data.train_path=pkg://sample_data/train.csv", f"--data.predict_path={TEST_CSV}",
             f"--submission.output_path={tmp_path}/dry.csv"])
    out = capsys.readouterr().out
    first = read_examples(TEST_CSV)[0]
    assert "--- test_0" in out and "[system]" in out and out.count("[assistant]") == 2 * 40
    assert first.dialogue in out and "#Person1#" in out


def test_cache_key_covers_endpoint_model_template_settings_and_input(tmp_path):
    base = client("http://a/v1", tmp_path)
    msgs = base.messages("#Person1#: 안녕하세요.")
    keys = {base.cache_key(msgs), client("http://b/v1", tmp_path).cache_key(msgs),
            client("http://a/v1", tmp_path, model="other").cache_key(msgs),
            client("http://a/v1", tmp_path, instruction="요약해.").cache_key(msgs),
            client("http://a/v1", tmp_path, temperature=0.7).cache_key(msgs),
            base.cache_key(base.messages("#Person1#: 잘 가요."))}
    assert len(keys) == 6


def test_serve_command_answers_on_loopback(trained, tmp_path, monkeypatch):
    """The console command itself: start `lightning_summ serve`, ask it, stop it."""
    import subprocess
    import sys

    import openai

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LS_SERVE_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_summ", "serve", "--config", str(QUICKSTART), *TINY,
                             "--ckpt_path", trained["ckpt"], f"--serve.port={port}", "--serve.api_key_env=LS_SERVE_KEY"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        api = openai.OpenAI(api_key=SECRET, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)
        deadline = time.time() + 90
        while True:
            try:
                models = api.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() else "timeout"
                time.sleep(0.5)
        assert models.data[0].id == "lightning_summ"
        dialogue = read_examples(TEST_CSV)[0].dialogue
        answer = api.chat.completions.create(model="x", messages=[{"role": "user", "content": dialogue}])
        with open(trained["local"], newline="", encoding="utf-8") as f:
            assert answer.choices[0].message.content == next(csv.DictReader(f))["summary"]
    finally:
        proc.terminate()
        proc.wait(20)
