"""ApiSummarizer: summaries from any OpenAI-compatible chat API (Upstage Solar by default).

A LightningModule without weights, so ``validate``/``test``/``predict`` run on the same
DataModule, ROUGE, submission writer, ensemble export and TTA as trained models.

* The key is read from the environment variable named by ``api_key_env`` when a request is made;
  it is never stored in hparams, configs, logs or error messages.
* Requests run concurrently (``max_concurrency``) with a timeout, and are retried on 429/5xx,
  timeouts and connection errors with exponential backoff that honours ``Retry-After``.
* Responses are cached on disk, one file per request, keyed by base URL, model, the prompt
  template (system, instruction, few-shot examples), the generation settings and the input; each
  file is written atomically, so a crash never leaves a half-written entry and a rerun costs nothing.
* ``dry_run`` prints the prompts and sends nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Optional

import torch

from lightning_summ.data.prompts import DEFAULT_INSTRUCTION
from lightning_summ.errors import UserError
from lightning_summ.io import atomic_write, read_examples
from lightning_summ.models.base import Candidates, SummarizerBase
from lightning_summ.models.settings import EvaluationSettings

UPSTAGE_URL = "https://api.upstage.ai/v1"


class ApiError(UserError):
    """An API failure explained in one line (never containing the key)."""


class ApiSummarizer(SummarizerBase):
    """Zero/few-shot summaries from an OpenAI-compatible chat completions API.

    Args:
        model: model name at the endpoint (Upstage: ``solar-pro2``, ``solar-mini``; OpenAI: ``gpt-4o-mini``).
        base_url: the endpoint: Upstage by default; ``https://api.openai.com/v1``; or a local ``lightning_summ serve``.
        api_key_env: name of the environment variable holding the key.
        system_prompt: system message (``null`` for none).
        instruction: task text placed before the dialogue.
        user_template: the user message, with ``{instruction}`` and ``{dialogue}``.
        few_shot: number of examples from the training file shown as user/assistant turns.
        few_shot_strategy: ``fixed`` (the first ones) or ``similar`` (highest word overlap with the dialogue).
        temperature: sampling temperature (0 = most deterministic).
        top_p: nucleus sampling mass.
        max_tokens: longest answer in tokens.
        max_concurrency: requests in flight at once.
        timeout: seconds per request.
        max_retries: retries after a 429/5xx/timeout/connection error.
        backoff: first retry delay in seconds (doubled each time, with jitter, unless Retry-After says otherwise).
        cache_dir: response cache; ``null`` = ``.cache/lightning_summ/api`` in the working directory.
        dry_run: print the prompts, send nothing, return empty summaries.
        evaluation: ROUGE settings for validate/test.
    """

    def __init__(
        self,
        model: str = "solar-mini",
        base_url: str = UPSTAGE_URL,
        api_key_env: str = "UPSTAGE_API_KEY",
        system_prompt: Optional[str] = "You summarize Korean dialogues. Keep speaker tags like #Person1# and masked "
                                      "tokens like #PhoneNumber# exactly as written.",
        instruction: str = DEFAULT_INSTRUCTION,
        user_template: str = "{instruction}\n\n{dialogue}",
        few_shot: int = 0,
        few_shot_strategy: Literal["fixed", "similar"] = "fixed",
        temperature: float = 0.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        cache_dir: Optional[str] = None,
        dry_run: bool = False,
        evaluation: Optional[EvaluationSettings] = None,
    ):
        super().__init__(tokenizer="", evaluation=evaluation)
        self.api_model, self.base_url, self.api_key_env = model, base_url.rstrip("/"), api_key_env
        self.system_prompt, self.instruction, self.user_template = system_prompt, instruction, user_template
        self.few_shot, self.few_shot_strategy = few_shot, few_shot_strategy
        self.sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens}
        self.max_concurrency, self.timeout, self.max_retries, self.backoff = max_concurrency, timeout, max_retries, backoff
        self.cache_dir = Path(cache_dir or ".cache/lightning_summ/api")
        self.dry_run = dry_run
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "cache_hits": 0, "retries": 0}
        self._usage_lock = threading.Lock()  # requests run in threads
        self._examples = None
        self._client = None
        self.save_hyperparameters()  # holds api_key_env (a name), never the key
        self._plain_hparams()

    # -- no weights, no tokenizer: the DataModule hooks become trivial ---------------------------
    def register_tags(self, tags: list[str]) -> None:
        self.tags = list(tags)

    def configure_model(self) -> None:
        pass

    def encode(self, dialogue: str, summary: Optional[str], for_generation: bool) -> dict:
        return {"input_ids": []}

    def collator(self, for_generation: bool, pad_to_multiple_of: int = 1):
        from lightning_summ.data.batching import collate_metadata

        # Requests carry text, not token tensors: there is nothing to pad.
        return collate_metadata

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score_batch(batch, self.val_rouge, self.evaluation.generate_limit)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._score_batch(batch, self.test_rouge, None)

    def _should_generate(self) -> bool:
        return True

    # -- prompts ----------------------------------------------------------------------------------
    def _shots(self, dialogue: str) -> list:
        if not self.few_shot:
            return []
        if self._examples is None:
            path = getattr(self.trainer.datamodule, "train_path", None) if self._trainer else None
            if not path:
                raise ValueError("model.few_shot needs data.train_path (the examples come from the training file)")
            self._examples = read_examples(path, require_summary=True)
        if self.few_shot_strategy == "fixed":
            return self._examples[: self.few_shot]
        words = set(dialogue.split())
        overlap = lambda ex: len(words & set(ex.dialogue.split())) / (len(words | set(ex.dialogue.split())) or 1)  # noqa
        return sorted(self._examples, key=overlap, reverse=True)[: self.few_shot]

    def messages(self, dialogue: str) -> list[dict]:
        user = lambda d: self.user_template.format(instruction=self.instruction, dialogue=d)  # noqa: E731
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for ex in self._shots(dialogue):
            msgs += [{"role": "user", "content": user(ex.dialogue)}, {"role": "assistant", "content": ex.summaries[0]}]
        return msgs + [{"role": "user", "content": user(dialogue)}]

    def cache_key(self, messages: list[dict]) -> str:
        template = hashlib.sha256(json.dumps([self.system_prompt, self.instruction, self.user_template, self.few_shot,
                                              self.few_shot_strategy]).encode()).hexdigest()
        blob = json.dumps({"base_url": self.base_url, "model": self.api_model, "template": template,
                           "sampling": self.sampling, "messages": messages}, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- requests ---------------------------------------------------------------------------------
    @property
    def client(self):
        import openai  # imported on use: the rest of the package works without it

        if self._client is None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ApiError(f"the API key is missing: set the environment variable {self.api_key_env}")
            # Retries are ours (to honour Retry-After and count them), so the client's are off.
            self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0)
        return self._client

    def complete(self, messages: list[dict]) -> str:
        """The answer to one chat request: from the cache, or from the API with retries."""
        import openai
        path = self.cache_dir / (key := self.cache_key(messages))[:2] / f"{key}.json"
        if path.is_file():
            self._count(cache_hits=1)
            return json.loads(path.read_text(encoding="utf-8"))["summary"]
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.chat.completions.create(model=self.api_model, messages=messages, **self.sampling)
                break
            except openai.AuthenticationError as e:
                raise ApiError(f"{self.base_url} rejected the key in {self.api_key_env} (HTTP {e.status_code})") from None
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as e:
                if attempt == self.max_retries:
                    raise ApiError(f"{self.base_url}: gave up after {attempt + 1} attempts "
                                   f"({type(e).__name__}{f' HTTP {e.status_code}' if hasattr(e, 'status_code') else ''})"
                                   ) from None
                self._count(retries=1)
                time.sleep(self._delay(e, attempt))
        usage = response.usage
        self._count(requests=1, prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
                    completion_tokens=(usage.completion_tokens or 0) if usage else 0)
        summary = (response.choices[0].message.content or "").strip()
        with atomic_write(path) as f:
            json.dump({"summary": summary, "model": self.api_model}, f, ensure_ascii=False)
        return summary

    def _count(self, **amounts: int) -> None:
        with self._usage_lock:
            for key, n in amounts.items():
                self.usage[key] += n

    def _delay(self, error: Exception, attempt: int) -> float:
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        try:
            return float(retry_after)
        except (TypeError, ValueError):
            return self.backoff * 2 ** attempt * (0.5 + random.random() / 2)

    @torch.no_grad()
    def generate_candidates(self, batch: dict) -> list[Candidates]:
        prompts = [self.messages(d) for d in batch["dialogue"]]
        if self.dry_run:
            for fname, msgs in zip(batch["fname"], prompts):
                print(f"--- {fname}\n" + "\n".join(f"[{m['role']}] {m['content']}" for m in msgs), flush=True)
            return [[("", 0.0)] for _ in prompts]
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            summaries = list(pool.map(self.complete, prompts))
        return [[(s, 0.0)] for s in summaries]  # APIs return no log-probabilities: score 0.0

    def _log_usage(self) -> None:
        print(f"API usage: {json.dumps(self.usage)}", flush=True)

    def on_predict_end(self) -> None:
        self._log_usage()

    def on_validation_end(self) -> None:
        self._log_usage()

    def on_test_end(self) -> None:
        self._log_usage()
