"""The API client against real HTTP servers on loopback: equality with local predict, 429 and
Retry-After (seconds, HTTP date, too long), timeouts, keys, cache, dry run. Nothing is mocked:
requests go through openai's client to uvicorn (our server) or a scripted stdlib server."""

from __future__ import annotations

import contextlib
import csv
import email.utils
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import uvicorn

from conftest import CONFIGS, QUICKSTART, TINY
from lightning_summ.api.client import ApiClient, ApiError, DryRunFinished
from lightning_summ.api.server import create_app
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
                       "--model.init_args.optimizer.lr=5e-3"])
        # The server serves the trained module itself; predict reads the same weights from a checkpoint.
        ckpt = str(root / "served.ckpt")
        cli.trainer.save_checkpoint(ckpt)
        run_cli(["predict", *args, "--ckpt_path", ckpt, f"--submission.output_path={root}/local.csv"])
    finally:
        os.chdir(cwd)
    return {"root": root, "ckpt": ckpt, "local": root / "local.csv", "module": cli.model.eval()}


def client(base_url: str, tmp_path: Path, **kwargs) -> ApiClient:
    kwargs = {"model": "lightning_summ", "base_url": base_url, "api_key_env": "LS_TEST_KEY", "system_prompt": None,
              "user_template": "{dialogue}", "cache_dir": str(tmp_path / "cache"), **kwargs}
    return ApiClient(**kwargs)


def dialogues(n: int = 40) -> list[str]:
    return [ex.dialogue for ex in read_examples(TEST_CSV)[:n]]


ANSWER = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "요약입니다."}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@contextlib.contextmanager
def scripted(failures: list[tuple[int, dict]]):
    """A real HTTP server that answers the first requests with ``failures`` (status, headers), then
    with ``ANSWER``; yields its base URL and the list of request times it saw."""
    seen: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(time.monotonic())
            status, headers = failures[len(seen) - 1] if len(seen) <= len(failures) else (200, {})
            body = json.dumps(ANSWER if status == 200 else {"error": {"message": "slow down", "type": "x",
                                                                      "param": None, "code": None}}).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def test_predict_through_http_equals_local_predict_and_reruns_from_cache(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    app = create_app(trained["module"], max_batch_size=8, max_wait_ms=20, api_key=SECRET)
    with serving(app) as url:
        args = ["predict", "--config", str(CONFIGS / "solar-api.yaml"), f"--model.init_args.base_url={url}",
                "--model.init_args.model=lightning_summ", "--model.init_args.api_key_env=LS_TEST_KEY",
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


def test_429_from_a_full_queue_is_retried_until_all_succeed_and_every_retry_is_counted(trained, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    app = create_app(trained["module"], max_batch_size=2, max_wait_ms=30, max_queue=2, retry_after=0.05)
    batcher = app.state.batcher
    # No timing assumption: decoding is held until the queue has overflowed at least once.
    overflowed, decode = threading.Event(), batcher.summarize_batch

    def held(*args):
        overflowed.wait(20)
        return decode(*args)

    batcher.summarize_batch = held

    def release_on_overflow():
        deadline = time.monotonic() + 20
        while batcher.stats["rejected_429"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        overflowed.set()

    with serving(app) as url:
        threading.Thread(target=release_on_overflow, daemon=True).start()
        api = client(url, tmp_path, max_concurrency=8, max_retries=1000)
        results = api.summarize(dialogues(24))
    assert len(results) == 24 and all(results)
    assert batcher.stats["rejected_429"] > 0 and api.usage["retries"] == batcher.stats["rejected_429"]
    assert api.usage["requests"] == 24 == batcher.stats["requests"]  # counted: the requests accepted


def test_retry_after_in_seconds_is_waited_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    with scripted([(429, {"Retry-After": "1"})]) as (url, seen):
        api = client(url, tmp_path)
        assert api.summarize(["a"]) == ["요약입니다."]
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.95  # openai's own first backoff is at most 0.5 s
    assert api.usage["retries"] == 1 and api.usage["requests"] == 1


def test_retry_after_as_an_http_date_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    # Whole seconds, 3-4 s from now: on a loaded machine the request may reach the server a second or
    # more later, and the wait left must still exceed openai's own first backoff (at most 0.5 s).
    when = email.utils.formatdate(time.time() + 4, usegmt=True)
    with scripted([(429, {"Retry-After": when})]) as (url, seen):
        api = client(url, tmp_path)
        assert api.summarize(["a"]) == ["요약입니다."]
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.6 and api.usage["retries"] == 1


def test_a_retry_after_of_an_hour_is_not_waited_for(tmp_path, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    started = time.monotonic()
    with scripted([(429, {"Retry-After": "3600"})] * 3) as (url, seen):
        api = client(url, tmp_path, max_retries=2)
        with pytest.raises(ApiError, match="gave up after .* attempts \\(RateLimitError HTTP 429\\)") as err:
            api.summarize(["a"])
    assert time.monotonic() - started < 30 and "\n" not in str(err.value)  # not 3,600 s (nor 3 x 3,600 s)
    assert api.usage["retries"] == len(seen) - 1


def test_timeouts_are_retried_then_fail_with_one_clear_line(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    app = create_app(trained["module"], max_wait_ms=1)
    # No timing assumption: nothing is decoded until the client has given up.
    gave_up, decode = threading.Event(), app.state.batcher.summarize_batch
    app.state.batcher.summarize_batch = lambda *args: (gave_up.wait(20), decode(*args))[1]
    with serving(app) as url:
        api = client(url, tmp_path, timeout=0.2, max_retries=1)  # openai waits 0.375-0.5 s before the retry
        try:
            with pytest.raises(ApiError, match="gave up after 2 attempts \\(APITimeoutError\\)") as err:
                api.summarize(dialogues(1))
        finally:
            gave_up.set()
    assert app.state.batcher.stats["requests"] == 2 and api.usage["retries"] == 1
    assert "\n" not in str(err.value)


def test_missing_or_rejected_key_is_a_clear_error_without_the_key(trained, tmp_path, monkeypatch):
    monkeypatch.delenv("LS_TEST_KEY", raising=False)
    with pytest.raises(ApiError, match="set the environment variable LS_TEST_KEY"):
        client("http://127.0.0.1:9/v1", tmp_path).summarize(dialogues(1))
    monkeypatch.setenv("LS_TEST_KEY", SECRET)
    monkeypatch.setenv("LS_RIGHT_KEY", "the-right-key")
    app = create_app(trained["module"], api_key="the-right-key")
    with serving(app) as url:
        api = client(url, tmp_path)
        with pytest.raises(ApiError) as err:
            api.summarize(dialogues(1))
        with pytest.raises(ApiError) as refused:  # another 4xx: one line with the server's reason
            client(url, tmp_path, model="tiny", api_key_env="LS_RIGHT_KEY").summarize(dialogues(1))
    assert str(err.value) == f"{url} rejected the key in LS_TEST_KEY (HTTP 401)" and api.usage["retries"] == 0
    assert str(refused.value) == (f"{url} refused the request (HTTP 404): model: 'tiny' is not served here; "
                                  "this server serves 'lightning_summ'")


def test_dry_run_prints_few_shot_prompts_sends_nothing_and_writes_no_submission(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LS_TEST_KEY", raising=False)  # no key needed: nothing is sent
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DryRunFinished) as stop:
        run_cli(["predict", "--config", str(CONFIGS / "solar-api.yaml"), "--model.init_args.dry_run=true",
                 "--model.init_args.api_key_env=LS_TEST_KEY", "--model.init_args.base_url=http://127.0.0.1:9/v1",
                 "--data.train_path=pkg://sample_data/train.csv", f"--data.predict_path={TEST_CSV}",
                 f"--submission.output_path={tmp_path}/dry.csv"])
    assert stop.value.code == 0  # what the process exits with
    out = capsys.readouterr().out
    first = read_examples(TEST_CSV)[0]
    assert "--- test_0" in out and "[system]" in out and out.count("[assistant]") == 2 * 40
    assert first.dialogue in out and "#Person1#" in out
    assert out.strip().endswith("dry run: printed 40 prompts; nothing was sent and nothing was written")
    written = [p.name for p in tmp_path.rglob("*") if p.suffix in (".csv", ".jsonl")]
    assert written == [] and not (tmp_path / ".cache").exists()


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
        answer = api.chat.completions.create(model="lightning_summ", messages=[{"role": "user", "content": dialogue}])
        with open(trained["local"], newline="", encoding="utf-8") as f:
            assert answer.choices[0].message.content == next(csv.DictReader(f))["summary"]
    finally:
        proc.terminate()
        proc.wait(20)
