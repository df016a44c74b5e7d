"""Prompts for decoder-only summarizers: the dialogue inside an instruction, the summary after it.

The prompt is split once into ``prefix + {dialogue} + suffix`` token ids, so that the dialogue
alone is truncated to fit ``max_length`` (never the instruction, never the summary) and the same
prompt ids are used for training and for generation. The tokenizer's chat template is used when it
has one (instruction-tuned models expect it), else a plain template.
"""

from __future__ import annotations

from typing import Optional

DEFAULT_INSTRUCTION = (
    "다음 대화를 한두 문장으로 요약하세요. #Person1#, #Person2# 같은 화자 태그와 #PhoneNumber# 같은 "
    "가림 토큰은 그대로 쓰세요."
)
DEFAULT_TEMPLATE = "### 지시\n{instruction}\n\n### 대화\n{dialogue}\n\n### 요약\n"
_SENTINEL = "\u2063DIALOGUE\u2063"  # invisible separators: never occurs in an instruction


class PromptFormatter:
    """Token ids of ``prompt(dialogue)`` and of ``prompt(dialogue) + summary + EOS``.

    Args:
        tokenizer: a Hugging Face tokenizer.
        instruction: the task text shown before the dialogue.
        template: plain-text prompt with ``{instruction}`` and ``{dialogue}``, used without a chat template.
        use_chat_template: ``None`` = use the tokenizer's chat template when it has one.
        system_prompt: optional system message for chat templates.
        chat_template_kwargs: extra template variables (e.g. ``{enable_thinking: false}`` for Qwen3).
    """

    def __init__(self, tokenizer, instruction: str = DEFAULT_INSTRUCTION, template: str = DEFAULT_TEMPLATE,
                 use_chat_template: Optional[bool] = None, system_prompt: Optional[str] = None,
                 chat_template_kwargs: Optional[dict] = None):
        if "{dialogue}" not in template:
            raise ValueError("the prompt template needs a {dialogue} placeholder")
        self.tokenizer = tokenizer
        chat = bool(getattr(tokenizer, "chat_template", None)) if use_chat_template is None else use_chat_template
        if chat:
            messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": f"{instruction}\n\n{_SENTINEL}"}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                 **(chat_template_kwargs or {}))
            add_bos = False  # a chat template writes its own BOS text
        else:
            text = template.format(instruction=instruction, dialogue=_SENTINEL)
            add_bos = tokenizer.bos_token_id is not None and _adds_bos(tokenizer)
        prefix, suffix = text.split(_SENTINEL)
        self.prefix_ids = ([tokenizer.bos_token_id] if add_bos else []) + self._ids(prefix)
        self.suffix_ids = self._ids(suffix)
        self.uses_chat_template = chat

    def _ids(self, text: str) -> list[int]:
        # No token_type_ids anywhere: GPT-NeoX tokenizers emit them and the models reject them.
        return self.tokenizer(text, add_special_tokens=False, return_token_type_ids=False)["input_ids"]

    @property
    def overhead(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def prompt(self, dialogue: str, budget: int) -> list[int]:
        """Prompt ids with the dialogue cut to ``budget`` tokens (its beginning is kept)."""
        return self.prefix_ids + self._ids(dialogue)[: max(budget, 0)] + self.suffix_ids

    def summary(self, summary: str) -> list[int]:
        """Summary ids followed by EOS: without EOS in the labels the model never learns to stop."""
        return self._ids(summary) + [self.tokenizer.eos_token_id]


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id
