"""What ``lightning_summ serve`` accepts in a chat request, checked field by field.

Every refusal is a ``RequestError``: an HTTP status and one message naming the field, sent back in
OpenAI's error shape (``{"error": {"message", "type", "param", "code"}}``), so a client never sees
a 500 for what it sent. What the server cannot do is refused rather than ignored: streaming,
``n`` > 1, sampling settings a deterministic model cannot honour, several messages (system prompts
and few-shot turns: the model was fine-tuned on bare dialogues), unknown parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

KNOWN_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
ACCEPTED = {"model", "messages", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "stream", "user"}


class RequestError(Exception):
    """A request the server refuses: status, one-line message, the offending parameter."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 kind: str = "invalid_request_error", headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers

    def body(self) -> dict:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(message: str, kind: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class ChatRequest:
    """A valid request: the dialogue and the generation settings it asks for (a hashable group key)."""

    dialogue: str
    settings: tuple = ()  # sorted (name, value) pairs overriding the model's GenerationSettings


def parse_body(raw: bytes) -> dict:
    """The JSON object in ``raw``, or a 400 that says what is wrong with it."""
    if not raw.strip():
        raise RequestError(400, "the request body is empty: send a JSON object with 'model' and 'messages'",
                           code="empty_body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"the request body is not valid UTF-8 (byte {e.start})", code="invalid_encoding")
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except RequestError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, int too long, nesting too deep
        raise RequestError(400, f"the request body is not valid JSON ({str(e).splitlines()[0][:200]})",
                           code="invalid_json")
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object, not a JSON {_json_kind(body)}",
                           code="invalid_body")
    return body


def _refuse_constant(name: str):
    raise RequestError(400, f"the request body is not valid JSON ({name} is not a JSON number)", code="invalid_json")


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def validate(body: dict, served_model: str, generation, max_tokens_limit: int) -> ChatRequest:
    """The ``ChatRequest`` in ``body``; ``generation`` is the model's GenerationSettings (the caps)."""
    unknown = sorted(set(body) - ACCEPTED)
    if unknown:
        raise RequestError(400, f"{unknown[0]}: not supported by this server (it accepts {sorted(ACCEPTED)})",
                           param=unknown[0], code="unsupported_parameter")
    model = body.get("model")
    if not isinstance(model, str):
        raise RequestError(400, f"model: required, a string (GET /v1/models lists '{served_model}')", param="model")
    if model != served_model:
        raise RequestError(404, f"model: '{model[:100]}' is not served here; this server serves '{served_model}'",
                           param="model", code="model_not_found")
    stream = body.get("stream")
    if stream is not None and stream is not False:
        what = "streaming is not supported" if stream is True else "must be a boolean"
        raise RequestError(400, f"stream: {what}", param="stream")
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise RequestError(400, f"n: only 1 answer per request is supported, got {_short(n)}", param="n")
    settings = {"max_new_tokens": _max_new_tokens(body, generation, max_tokens_limit)}
    settings.update(_sampling(body, generation))
    return ChatRequest(_dialogue(body.get("messages")), tuple(sorted(settings.items())))


def _short(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:60]


def _number(body: dict, name: str, low: float, high: float, low_open: bool = False) -> Optional[float]:
    value = body.get(name)
    if value is None:
        return None
    # Comparisons only (no float()): a 400-digit integer is refused, not an OverflowError; NaN fails them.
    if type(value) not in (int, float) or not low <= value <= high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise RequestError(400, f"{name}: must be a number in {interval}, got {_short(value)}", param=name)
    return float(value)


def _max_new_tokens(body: dict, generation, limit: int) -> int:
    """``max_tokens`` (or ``max_completion_tokens``) capped by the model's ``generation.max_new_tokens``."""
    cap = generation.max_new_tokens
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or not 1 <= value <= limit:
            raise RequestError(400, f"{name}: must be an integer from 1 to {limit} (the model's context), "
                                    f"got {_short(value)}", param=name)
        cap = min(cap, value)
    return cap


def _sampling(body: dict, generation) -> dict:
    """Sampling settings: honoured when the model samples, refused when it decodes deterministically."""
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0, low_open=True)
    if not generation.do_sample:
        if temperature not in (None, 0.0):
            raise RequestError(400, f"temperature: the served model decodes deterministically (generation.do_sample "
                                    f"false): send 0 or leave it out, got {temperature:g}", param="temperature")
        if top_p not in (None, 1.0):
            raise RequestError(400, f"top_p: the served model decodes deterministically (generation.do_sample "
                                    f"false): send 1 or leave it out, got {top_p:g}", param="top_p")
        return {}
    if temperature == 0.0:
        raise RequestError(400, "temperature: the served model samples (generation.do_sample true): 0 is not "
                                "supported, send a value in (0, 2]", param="temperature")
    return {k: v for k, v in (("temperature", temperature), ("top_p", top_p)) if v is not None}


def _dialogue(messages: Any) -> str:
    """The one user message's text: the dialogue to summarize."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, f"messages: must be a non-empty array of message objects, got "
                                f"{_json_kind(messages) if messages != [] else 'an empty array'}", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(400, f"messages[{i}]: must be an object with 'role' and 'content', got a JSON "
                                    f"{_json_kind(message)}", param=f"messages[{i}]")
        role = message.get("role")
        if role not in KNOWN_ROLES:
            raise RequestError(400, f"messages[{i}].role: unknown role {_short(role)} "
                                    f"(known: {', '.join(KNOWN_ROLES)})", param=f"messages[{i}].role")
    if len(messages) != 1 or messages[0]["role"] != "user":
        roles = [m["role"] for m in messages]
        raise RequestError(400, f"messages: this server summarizes exactly one user message (the dialogue), got "
                                f"roles {roles}; system prompts and few-shot turns are not supported",
                           param="messages")
    text = _text(messages[0].get("content"))
    if not text.strip():
        raise RequestError(400, "messages[0].content: the dialogue is empty", param="messages[0].content")
    return text.strip()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "\n".join(p["text"] for p in content)
    raise RequestError(400, f"messages[0].content: must be a string (or text parts), got {_json_kind(content)}",
                       param="messages[0].content")
