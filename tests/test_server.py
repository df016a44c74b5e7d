"""``create_app`` against malformed and hostile requests, over real HTTP on loopback.

Every input a client can send gets a 4xx in OpenAI's error shape whose message names the field;
``max_tokens`` is honoured per request; only ``Authorization: Bearer <key>`` is accepted; an
unexpected failure inside generation is a logged 500 in the same shape, and the server goes on.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from conftest import QUICKSTART, TINY
from lightning_summ.commands.lightning import run_cli
from lightning_summ.io import read_examples
from lightning_summ.paths import resolve_path
from test_api import serving

KEY = "sk-serve-KEY-1234"
MODEL = "lightning_summ"
DIALOGUES = [ex.dialogue for ex in read_examples(resolve_path("pkg://sample_data/test.csv"))[:12]]
# A random tiny BART: with init_std 0.3 its greedy answers differ from dialogue to dialogue (the
# default init answers every input alike), so "the same answer as alone" is a real comparison.
TINY_SERVED = [*TINY, "--model.init_args.model_config.init_std=0.3", "--model.init_args.generation.min_new_tokens=4"]


def tiny_module(tmp_path_factory):
    """The tiny quickstart model, built as the CLI builds it, in eval mode, with no checkpoint."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("serve"))
    try:
        cli = run_cli(["--config", str(QUICKSTART), *TINY_SERVED], run=False)
    finally:
        os.chdir(cwd)
    cli.datamodule.fit_processor()  # the training file's #Tag# vocabulary
    cli.model.configure_model()
    return cli.model.eval()


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    return tiny_module(tmp_path_factory)


def post(url: str, body: bytes, headers: dict | None = None, path: str = "/v1/chat/completions",
         method: str = "POST") -> tuple[int, dict, dict]:
    """Send raw bytes (any header bytes, any body) and return status, JSON body and headers."""
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest(method, path)
        for name, value in {"content-type": "application/json", **(headers or {})}.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        conn.close()


def chat(content="#Person1#: 안녕하세요. #Person2#: 네, 안녕하세요.", **fields) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}], **fields},
                      ensure_ascii=False).encode()


def with_messages(messages) -> bytes:
    return json.dumps({"model": MODEL, "messages": messages}).encode()


MALFORMED = [  # (case, body, status, the field or problem the message must name)
    ("invalid JSON", b'{"model": "lightning_summ", "messages": [', 400, "not valid JSON"),
    ("empty body", b"", 400, "body is empty"),
    ("whitespace body", b"  \n ", 400, "body is empty"),
    ("JSON list", b'[{"role": "user", "content": "x"}]', 400, "JSON object, not a JSON array"),
    ("JSON string", b'"summarize this"', 400, "JSON object, not a JSON string"),
    ("JSON null", b"null", 400, "JSON object, not a JSON null"),
    ("NaN", b'{"model": "lightning_summ", "temperature": NaN, "messages": []}', 400, "NaN is not a JSON number"),
    ("deep nesting", b"[" * 200_000, 400, "not valid JSON"),
    ("a 5000-digit number", b'{"max_tokens": 1' + b"0" * 5000 + b"}", 400, "not valid JSON"),
    ("invalid UTF-8", b'{"model": "lightning_summ", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
     400, "not valid UTF-8"),
    ("messages as a string", json.dumps({"model": MODEL, "messages": "hello"}).encode(), 400, "messages:"),
    ("messages as strings", with_messages(["hello", "world"]), 400, "messages[0]:"),
    ("messages null", with_messages(None), 400, "messages:"),
    ("messages missing", json.dumps({"model": MODEL}).encode(), 400, "messages:"),
    ("messages empty", with_messages([]), 400, "messages:"),
    ("unknown role", with_messages([{"role": "robot", "content": "x"}]), 400, "messages[0].role"),
    ("role missing", with_messages([{"content": "x"}]), 400, "messages[0].role"),
    ("system prompt", with_messages([{"role": "system", "content": "be brief"}, {"role": "user", "content": "x"}]),
     400, "messages:"),
    ("content a number", with_messages([{"role": "user", "content": 5}]), 400, "messages[0].content"),
    ("content an image", with_messages([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]),
     400, "messages[0].content"),
    ("content blank", chat("   "), 400, "messages[0].content"),
    ("model unknown", chat(model="gpt-4o"), 404, "model:"),
    ("model missing", json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), 400, "model:"),
    ("model a number", chat(model=7), 400, "model:"),
    ("max_tokens 10^12", chat(max_tokens=10 ** 12), 400, "max_tokens:"),
    ("max_tokens -5", chat(max_tokens=-5), 400, "max_tokens:"),
    ("max_tokens 0", chat(max_tokens=0), 400, "max_tokens:"),
    ("max_tokens a string", chat(max_tokens="ten"), 400, "max_tokens:"),
    ("max_tokens a float", chat(max_tokens=3.5), 400, "max_tokens:"),
    ("max_tokens a boolean", chat(max_tokens=True), 400, "max_tokens:"),
    ("max_completion_tokens -1", chat(max_completion_tokens=-1), 400, "max_completion_tokens:"),
    ("n 5", chat(n=5), 400, "n:"),
    ("n a string", chat(n="1"), 400, "n:"),
    ("temperature hot", chat(temperature="hot"), 400, "temperature:"),
    ("temperature 3", chat(temperature=3), 400, "temperature:"),
    ("temperature -1", chat(temperature=-1), 400, "temperature:"),
    ("temperature a 400-digit integer", chat(temperature=10 ** 400), 400, "temperature:"),
    ("temperature 1e400 (infinity)", chat()[:-1] + b', "temperature": 1e400}', 400, "temperature:"),
    ("temperature 0.7 on a greedy model", chat(temperature=0.7), 400, "temperature:"),
    ("top_p 0", chat(top_p=0), 400, "top_p:"),
    ("top_p 0.9 on a greedy model", chat(top_p=0.9), 400, "top_p:"),
    ("stream true", chat(stream=True), 400, "stream:"),
    ("stream a string", chat(stream="yes"), 400, "stream:"),
    ("stream 0", chat(stream=0), 400, "stream:"),
    ("unsupported parameter", chat(tools=[]), 400, "tools:"),
]


@pytest.fixture(scope="module")
def url(module):
    from lightning_summ.api.server import create_app

    app = create_app(module, max_batch_size=8, max_wait_ms=5, api_key=KEY, max_body_bytes=300_000)
    with serving(app) as base:
        yield base


def test_every_malformed_request_is_a_4xx_in_openai_shape_naming_the_field(url):
    auth = {"authorization": f"Bearer {KEY}"}
    failures = []
    for case, body, status, named in MALFORMED:
        got, answer, _ = post(url, body, auth)
        error = answer.get("error", {})
        if got != status or set(error) != {"message", "type", "param", "code"} or named not in error["message"]:
            failures.append((case, got, answer))
    assert failures == []
    status, answer, _ = post(url, chat(), auth)  # and the server still answers a good request
    assert status == 200 and answer["choices"][0]["message"]["content"]


@pytest.mark.parametrize("header", [KEY.encode(), b"Bearer wrong-key", b"Basic " + KEY.encode(), b"Bearer",
                                    b"Bearer \xc3\xa9\xff\xfe", b"\xea\xb0\x80 " + KEY.encode(), None])
def test_only_a_bearer_token_with_the_key_is_accepted(url, header):
    status, answer, _ = post(url, chat(), {"authorization": header} if header is not None else {})
    assert status == 401 and answer["error"]["param"] == "Authorization"
    assert KEY not in json.dumps(answer)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_bearer_scheme_is_case_insensitive(url, scheme):
    assert post(url, chat(), {"authorization": f"{scheme} {KEY}"})[0] == 200


def test_bodies_over_the_limit_get_413_declared_or_chunked(url):
    auth = {"authorization": f"Bearer {KEY}"}
    big = chat("가" * 200_000)  # 600 kB of UTF-8 against a 300 kB limit
    status, answer, _ = post(url, big, auth)
    assert status == 413 and "at most 300000 bytes" in answer["error"]["message"]
    parts = urlparse(url)  # no Content-Length: the limit holds while reading the stream
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                 headers={**auth, "content-type": "application/json"}, encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and "at most 300000 bytes" in json.loads(response.read())["error"]["message"]
    conn.close()


def test_unknown_paths_and_methods_answer_in_openai_shape(url):
    for method, path, status in [("GET", "/v1/nothing", 404), ("GET", "/v1/chat/completions", 405)]:
        got, answer, _ = post(url, None, path=path, method=method)
        assert got == status and answer["error"]["type"] == "invalid_request_error"


def test_models_lists_the_one_served_id(url):
    status, answer, _ = post(url, None, path="/v1/models", method="GET")
    assert status == 200 and [m["id"] for m in answer["data"]] == [MODEL]


def test_max_tokens_is_honoured_below_the_models_cap_and_capped_above_it(url):
    auth = {"authorization": f"Bearer {KEY}"}

    def ask(**fields):
        status, answer, _ = post(url, chat(DIALOGUES[0], **fields), auth)
        assert status == 200, answer
        return answer["choices"][0]["message"]["content"], answer["usage"]["completion_tokens"]

    full, full_tokens = ask()
    assert ask(max_tokens=256) == (full, full_tokens)  # the model's generation.max_new_tokens (8) caps it
    short, short_tokens = ask(max_tokens=2)
    assert short_tokens <= 2 < full_tokens and full.startswith(short.rstrip("\ufffd"))
    assert ask(max_completion_tokens=2) == (short, short_tokens)


def test_requests_with_different_caps_in_one_batch_get_their_own_answers(module):
    from lightning_summ.api.server import create_app

    app = create_app(module, max_batch_size=16, max_wait_ms=300)  # one collection holds them all
    with serving(app) as base:
        ask = lambda key: post(base, chat(key[0], max_tokens=key[1]))[1]  # noqa: E731 - None: the model's cap
        alone = {(d, cap): ask((d, cap)) for d in DIALOGUES[:4] for cap in (None, 2)}
        before = dict(app.state.batcher.stats)
        with ThreadPoolExecutor(8) as pool:
            together = dict(zip(alone, pool.map(ask, alone)))
    text = lambda answer: answer["choices"][0]["message"]["content"]  # noqa: E731
    assert {k: text(v) for k, v in together.items()} == {k: text(v) for k, v in alone.items()}
    assert len({text(alone[d, None]) for d in DIALOGUES[:4]}) == 4  # the answers depend on the dialogue
    assert all(text(alone[d, 2]) != text(alone[d, None]) for d in DIALOGUES[:4])  # and on the cap
    assert app.state.batcher.stats["batches"] - before["batches"] >= 2  # never one batch for two caps


def test_a_failure_inside_generation_is_a_logged_500_and_the_server_goes_on(module, monkeypatch, caplog):
    from lightning_summ.api.server import create_app

    app = create_app(module, max_wait_ms=1)
    calls = {"n": 0}
    decode = app.state.batcher.summarize_batch

    def fails_once(*args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return decode(*args)

    monkeypatch.setattr(app.state.batcher, "summarize_batch", fails_once)
    with caplog.at_level(logging.ERROR, logger="lightning_summ.serve"), serving(app) as base:
        status, answer, _ = post(base, chat())
        assert status == 500 and answer["error"]["type"] == "server_error"
        assert "CUDA" not in answer["error"]["message"]  # internals stay in the log
        assert post(base, chat())[0] == 200
    assert any("generation failed for a batch of 1: RuntimeError" in r.getMessage() for r in caplog.records)


def test_a_sampling_model_honours_temperature_and_top_p_per_batch(tmp_path_factory):
    import dataclasses

    from lightning_summ.api.server import create_app

    sampling = tiny_module(tmp_path_factory)
    configured = dataclasses.replace(sampling.generation, do_sample=True, temperature=1.0, top_p=1.0)
    sampling.generation = configured
    app = create_app(sampling, max_wait_ms=1)
    seen, generate = [], sampling.generate_candidates

    def spy(batch):  # what generation really runs with
        seen.append(sampling.generation)
        return generate(batch)

    sampling.generate_candidates = spy
    with serving(app) as base:
        assert post(base, chat(temperature=0.5, top_p=0.9, max_tokens=3))[0] == 200
        status, answer, _ = post(base, chat(temperature=0))
    assert status == 400 and "temperature: the served model samples" in answer["error"]["message"]
    (during,) = seen
    # min_new_tokens (4) is lowered to the cap: a shorter maximum than minimum would contradict itself
    assert during == dataclasses.replace(configured, max_new_tokens=3, min_new_tokens=3, temperature=0.5, top_p=0.9)
    assert sampling.generation is configured  # the swap is undone after the batch
