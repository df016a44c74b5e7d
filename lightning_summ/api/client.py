"""Summaries from any OpenAI-compatible chat API (Upstage Solar by default).

``ApiClient`` is the request machinery, a plain class (no Lightning): prompts, cache, concurrency,
retries, usage. ``ApiSummarizer`` is a thin LightningModule around one, so ``validate``/``test``/
``predict`` run on the same DataModule, ROUGE, submission writer, ensemble export and TTA as
trained models.

* The key is read from the environment variable named by ``api_key_env`` when a request is made;
  it is never stored in hparams, configs, logs or error messages.
* Requests run concurrently (``max_concurrency``) with a timeout. Retries (429, 408, 409, 5xx,
  timeouts, connection errors) are the openai client's own: it honours ``retry-after-ms`` and
  ``Retry-After`` in seconds or as an HTTP date, refuses waits over two minutes (older openai
  versions fall back to their backoff), and otherwise backs off exponentially from 0.5 s to 8 s with
  jitter. That schedule cannot be changed, so there is no ``backoff`` option. Retries are counted
  from the requests the client really sends (an httpx request hook).
* Responses are cached on disk, one file per request, keyed by base URL, model, the prompt
  template (system, instruction, few-shot examples), the generation settings and the input; each
  file is written atomically, so a crash never leaves a half-written entry and a rerun costs nothing.
* ``dry_run`` prints the prompts and sends nothing; ``ApiSummarizer`` then ends the run (exit 0)
  before anything is scored or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Optional, Sequence


from lightning_summ.console import say
from lightning_summ.data.prompts import DEFAULT_INSTRUCTION
from lightning_summ.decoding.generate import Candidates
from lightning_summ.errors import ConfigError, UserError
from lightning_summ.io import read_examples
from lightning_summ.models.evaluation import SummaryEvaluationModule
from lightning_summ.models.settings import EvaluationSettings
from lightning_summ.outputs import atomic_write
from lightning_summ.processing import SummaryProcessor

UPSTAGE_URL = "https://api.upstage.ai/v1"
DEFAULT_SYSTEM_PROMPT = ("You summarize Korean dialogues. Keep speaker tags like #Person1# and masked tokens like "
                         "#PhoneNumber# exactly as written.")
RETRYABLE_STATUSES = (408, 409, 429)  # and every 5xx: what openai's client retries


class ApiError(UserError):
    """An API failure explained in one line (never containing the key)."""


class ApiClient:
    """Chat-completion requests for summaries: prompts, disk cache, concurrency, retries, usage.

    Args: those of ``ApiSummarizer`` (``backoff`` excepted: the schedule is openai's), plus
        examples: the examples (with summaries) few-shot turns are taken from.
    """

    def __init__(self, model: str = "solar-mini", base_url: str = UPSTAGE_URL, api_key_env: str = "UPSTAGE_API_KEY",
                 system_prompt: Optional[str] = DEFAULT_SYSTEM_PROMPT, instruction: str = DEFAULT_INSTRUCTION,
                 user_template: str = "{instruction}\n\n{dialogue}", few_shot: int = 0,
                 few_shot_strategy: Literal["fixed", "similar"] = "fixed", examples: Sequence = (),
                 temperature: float = 0.0, top_p: float = 1.0, max_tokens: int = 256, max_concurrency: int = 8,
                 timeout: float = 60.0, max_retries: int = 5, cache_dir: Optional[str] = None, dry_run: bool = False):
        if max_retries < 0 or max_concurrency < 1 or timeout <= 0:
            raise ConfigError(f"model.max_retries must be >= 0 (got {max_retries}), model.max_concurrency >= 1 "
                              f"(got {max_concurrency}) and model.timeout > 0 (got {timeout})")
        self.model, self.base_url, self.api_key_env = model, base_url.rstrip("/"), api_key_env
        self.system_prompt, self.instruction, self.user_template = system_prompt, instruction, user_template
        self.few_shot, self.few_shot_strategy, self.examples = few_shot, few_shot_strategy, list(examples)
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.cache_dir = Path(cache_dir or ".cache/lightning_summ/api")
        self.dry_run = dry_run
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "cache_hits": 0, "retries": 0}
        self._lock = threading.Lock()  # requests run in threads: usage counts and the lazy client
        self._attempts = threading.local()  # HTTP requests sent for the current call, per thread
        self._client = None

    # -- prompts ----------------------------------------------------------------------------------
    def _shots(self, dialogue: str) -> list:
        if not self.few_shot:
            return []
        if not self.examples:
            raise ConfigError("model.few_shot needs examples with summaries (data.train_path)")
        if self.few_shot_strategy == "fixed":
            return self.examples[: self.few_shot]
        words = set(dialogue.split())
        overlap = lambda ex: len(words & set(ex.dialogue.split())) / (len(words | set(ex.dialogue.split())) or 1)  # noqa
        return sorted(self.examples, key=overlap, reverse=True)[: self.few_shot]

    def messages(self, dialogue: str) -> list[dict]:
        """The chat messages for one dialogue: system, few-shot turns, then the dialogue."""
        user = lambda d: self.user_template.format(instruction=self.instruction, dialogue=d)  # noqa: E731
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for ex in self._shots(dialogue):
            msgs += [{"role": "user", "content": user(ex.dialogue)}, {"role": "assistant", "content": ex.summaries[0]}]
        return msgs + [{"role": "user", "content": user(dialogue)}]

    def prompt_text(self, name: str, dialogue: str) -> str:
        """The prompt for one dialogue as a dry run prints it."""
        return f"--- {name}\n" + "\n".join(f"[{m['role']}] {m['content']}" for m in self.messages(dialogue))

    def cache_key(self, messages: list[dict]) -> str:
        template = hashlib.sha256(json.dumps([self.system_prompt, self.instruction, self.user_template, self.few_shot,
                                              self.few_shot_strategy]).encode()).hexdigest()
        blob = json.dumps({"base_url": self.base_url, "model": self.model, "template": template,
                           "sampling": self.sampling, "messages": messages}, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- requests ---------------------------------------------------------------------------------
    def _openai(self):
        import openai  # imported on use: the rest of the package works without it

        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env)
                if not key:
                    raise ApiError(f"the API key is missing: set the environment variable {self.api_key_env}")
                # openai's DefaultHttpxClient keeps its own limits/redirect defaults; the hook sees every attempt.
                http = openai.DefaultHttpxClient(event_hooks={"request": [self._count_attempt]})
                self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout,
                                             max_retries=self.max_retries, http_client=http)
            return self._client

    def _count_attempt(self, request) -> None:
        self._attempts.n = getattr(self._attempts, "n", 0) + 1

    def complete(self, messages: list[dict]) -> str:
        """The answer to one chat request: from the cache, or from the API (with the client's retries)."""
        import openai

        path = self.cache_dir / (key := self.cache_key(messages))[:2] / f"{key}.json"
        if path.is_file():
            self._count(cache_hits=1)
            return json.loads(path.read_text(encoding="utf-8"))["summary"]
        if self.dry_run:
            raise ApiError("dry_run is on: no request is sent")
        client = self._openai()
        self._attempts.n = 0
        try:
            response = client.chat.completions.create(model=self.model, messages=messages, **self.sampling)
        except openai.APIError as e:
            raise self._explain(e, self._attempts.n) from None
        finally:
            self._count(retries=max(self._attempts.n - 1, 0))
        usage = response.usage
        self._count(requests=1, prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
                    completion_tokens=(usage.completion_tokens or 0) if usage else 0)
        summary = (response.choices[0].message.content or "").strip()
        with atomic_write(path) as f:
            json.dump({"summary": summary, "model": self.model}, f, ensure_ascii=False)
        return summary

    def _explain(self, error: Exception, attempts: int) -> ApiError:
        """One line for a failed request: what failed, after how many attempts; never the key."""
        import openai

        status = getattr(error, "status_code", None)
        if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return ApiError(f"{self.base_url} rejected the key in {self.api_key_env} (HTTP {status})")
        if status is not None and status not in RETRYABLE_STATUSES and status < 500:
            body = getattr(error, "body", None)
            detail = body.get("message") if isinstance(body, dict) else None
            reason = str(detail or error).replace("\n", " ")
            return ApiError(f"{self.base_url} refused the request (HTTP {status}): {reason}")
        what = type(error).__name__ + (f" HTTP {status}" if status is not None else "")
        wait = error.response.headers.get("retry-after") if status is not None else None
        asked = f"; the server asked to wait {wait!r} (Retry-After), longer than the client waits" \
            if wait and attempts <= self.max_retries else ""
        return ApiError(f"{self.base_url}: gave up after {attempts} attempts ({what}){asked}")

    def _count(self, **amounts: int) -> None:
        with self._lock:
            for key, n in amounts.items():
                self.usage[key] += n

    def summarize(self, dialogues: list[str]) -> list[str]:
        """Summaries of ``dialogues`` in their order, ``max_concurrency`` requests at a time, cached."""
        prompts = [self.messages(d) for d in dialogues]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(self.complete, prompts))


class ApiSummarizer(SummaryEvaluationModule):
    """Zero/few-shot summaries from an OpenAI-compatible chat completions API, as a LightningModule.

    The requests are an ``ApiClient``'s; this class only connects it to the Trainer and DataModule.
    Retries follow openai's schedule (``Retry-After`` honoured up to two minutes, else 0.5-8 s
    exponential backoff with jitter); that schedule cannot be changed, so there is no ``backoff`` setting.

    Args:
        model: model name at the endpoint (Upstage: ``solar-pro2``, ``solar-mini``; OpenAI: ``gpt-4o-mini``).
        base_url: the endpoint: Upstage by default; ``https://api.openai.com/v1``; or a local ``lightning_summ serve``.
        api_key_env: name of the environment variable holding the key.
        system_prompt: system message (``None`` for none).
        instruction: task text placed before the dialogue.
        user_template: the user message, with ``{instruction}`` and ``{dialogue}``.
        few_shot: number of examples from the training file (``data.train_path``) shown as user/assistant turns.
        few_shot_strategy: ``fixed`` (the first ones) or ``similar`` (highest word overlap with the dialogue).
        temperature: sampling temperature (0 = most deterministic).
        top_p: nucleus sampling mass.
        max_tokens: longest answer in tokens.
        max_concurrency: requests in flight at once.
        timeout: seconds per request attempt.
        max_retries: retries after a 429/408/409/5xx/timeout/connection error (openai's schedule).
        cache_dir: response cache; ``None`` = ``.cache/lightning_summ/api`` in the working directory.
        dry_run: print the prompts of the stage's data, send nothing, and end the run (exit 0) writing nothing.
        evaluation: ROUGE settings for validate/test.
    """

    def __init__(self, model: str = "solar-mini", base_url: str = UPSTAGE_URL, api_key_env: str = "UPSTAGE_API_KEY",
                 system_prompt: Optional[str] = DEFAULT_SYSTEM_PROMPT, instruction: str = DEFAULT_INSTRUCTION,
                 user_template: str = "{instruction}\n\n{dialogue}", few_shot: int = 0,
                 few_shot_strategy: Literal["fixed", "similar"] = "fixed", temperature: float = 0.0,
                 top_p: float = 1.0, max_tokens: int = 256, max_concurrency: int = 8, timeout: float = 60.0,
                 max_retries: int = 5, cache_dir: Optional[str] = None, dry_run: bool = False,
                 evaluation: Optional[EvaluationSettings] = None):
        client = ApiClient(model, base_url, api_key_env, system_prompt, instruction, user_template, few_shot,
                                few_shot_strategy, (), temperature, top_p, max_tokens, max_concurrency, timeout,
                           max_retries, cache_dir, dry_run)
        # Requests carry text: the processor has no tokenizer, and the decoder is the client.
        super().__init__(SummaryProcessor(), ApiDecoder(client), evaluation)
        self.client = client
        self.save_hyperparameters()  # holds api_key_env (a name), never the key
        self._plain_hparams()

    # -- Lightning glue: few-shot examples from the training file, dry runs ----------------------
    def setup(self, stage: str) -> None:
        path = getattr(self.trainer.datamodule, "train_path", None) if self._trainer else None
        if self.client.few_shot and not self.client.examples:
            if not path:
                raise ConfigError("model.few_shot needs data.train_path (the examples come from the training file)")
            self.client.examples = read_examples(path, require_summary=True)

    def _dry_run(self, dataloaders) -> None:
        """Print every prompt of this stage, then end the run before anything is scored or written."""
        if not self.client.dry_run:
            return
        loaders = dataloaders if isinstance(dataloaders, (list, tuple)) else [dataloaders]
        n = 0
        for loader in loaders:
            for batch in loader:
                for fname, dialogue in zip(batch["fname"], batch["dialogue"]):
                    say(self.client.prompt_text(fname, dialogue))
                    n += 1
        say(f"dry run: printed {n} prompts; nothing was sent and nothing was written")
        raise DryRunFinished()

    def on_predict_start(self) -> None:
        self._dry_run(self.trainer.predict_dataloaders)

    def on_validation_start(self) -> None:
        self._dry_run(self.trainer.val_dataloaders)

    def on_test_start(self) -> None:
        self._dry_run(self.trainer.test_dataloaders)

    def _log_usage(self) -> None:
        say(f"API usage: {json.dumps(self.client.usage)}")

    def on_predict_end(self) -> None:
        self._log_usage()

    def on_validation_end(self) -> None:
        self._log_usage()

    def on_test_end(self) -> None:
        self._log_usage()


class DryRunFinished(SystemExit):
    """A dry run printed its prompts: the run stops here with exit code 0, before any batch is
    decoded, so no submission, candidates or scores are written (the writer never runs)."""

    def __init__(self):
        super().__init__(0)


class ApiDecoder:
    """The decoding strategy of API models: the client's answers (no log-probabilities: score 0.0)."""

    name = "api"

    def __init__(self, client: ApiClient):
        self.client = client

    def __call__(self, module, batch: dict) -> list[Candidates]:
        return [[(s, 0.0)] for s in self.client.summarize(batch["dialogue"])]
