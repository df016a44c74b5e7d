"""Settings check themselves when built: one ConfigError line naming the option as the YAML spells it,
from Python and through the real CLI (exit code 2, no traceback)."""

from __future__ import annotations

import sys

import pytest

from conftest import CONFIGS, QUICKSTART
from lightning_summ.commands import main
from lightning_summ.errors import ConfigError, UserError
from lightning_summ.models.settings import (EvaluationSettings, GenerationSettings, LoraSettings, OptimizerSettings,
                                            QuantizationSettings)

G, O, E, Q, L = GenerationSettings, OptimizerSettings, EvaluationSettings, QuantizationSettings, LoraSettings

# (settings class, arguments, the whole expected message)
REFUSED = [
    (G, {"num_beams": 0}, "generation.num_beams must be >= 1, got 0"),
    (G, {"max_new_tokens": 0}, "generation.max_new_tokens must be >= 1, got 0"),
    (G, {"min_new_tokens": -1}, "generation.min_new_tokens must be in [0, generation.max_new_tokens = 100], got -1"),
    (G, {"min_new_tokens": 20, "max_new_tokens": 10},
     "generation.min_new_tokens must be in [0, generation.max_new_tokens = 10], got 20"),
    (G, {"num_return_sequences": 0}, "generation.num_return_sequences must be >= 1, got 0"),
    (G, {"num_beams": 2, "num_return_sequences": 3},
     "generation.num_return_sequences must be <= generation.num_beams (2) unless generation.do_sample is true, got 3"),
    (G, {"temperature": 0.0}, "generation.temperature must be > 0, got 0.0"),
    (G, {"top_p": 0.0}, "generation.top_p must be in (0, 1], got 0.0"),
    (G, {"top_p": 1.5}, "generation.top_p must be in (0, 1], got 1.5"),
    (G, {"top_k": -1}, "generation.top_k must be >= 0, got -1"),
    (G, {"length_penalty": float("inf")}, "generation.length_penalty must be a finite number, got inf"),
    (G, {"length_penalty": float("nan")}, "generation.length_penalty must be a finite number, got nan"),
    (G, {"repetition_penalty": 0.0}, "generation.repetition_penalty must be > 0, got 0.0"),
    (G, {"no_repeat_ngram_size": -2}, "generation.no_repeat_ngram_size must be >= 0 (0 = off), got -2"),
    (O, {"lr": 0.0}, "optimizer.lr must be > 0, got 0.0"),
    (O, {"weight_decay": -0.1}, "optimizer.weight_decay must be >= 0, got -0.1"),
    (O, {"warmup_ratio": 1.0}, "optimizer.warmup_ratio must be in [0, 1), got 1.0"),
    (O, {"warmup_ratio": -0.1}, "optimizer.warmup_ratio must be in [0, 1), got -0.1"),
    (O, {"warmup_steps": -1}, "optimizer.warmup_steps must be >= 0, got -1"),
    (O, {"warmup_ratio": 0.1, "warmup_steps": 50},
     "optimizer.warmup_ratio (0.1) and optimizer.warmup_steps (50) are both set; set only one of them"),
    (O, {"betas": (0.9, 1.0)}, "optimizer.betas must be two numbers in [0, 1), got (0.9, 1.0)"),
    (O, {"betas": (-0.1, 0.9)}, "optimizer.betas must be two numbers in [0, 1), got (-0.1, 0.9)"),
    (O, {"eps": 0.0}, "optimizer.eps must be > 0, got 0.0"),
    (O, {"scheduler": "step"}, "optimizer.scheduler must be one of linear, cosine, constant, got 'step'"),
    (E, {"generate_every_n_epochs": 0}, "evaluation.generate_every_n_epochs must be >= 1, got 0"),
    (E, {"generate_limit": 0}, "evaluation.generate_limit must be null (all rows) or >= 1, got 0"),
    (E, {"num_text_samples": -1}, "evaluation.num_text_samples must be >= 0, got -1"),
    (E, {"rouge_tokenizer": "bpe"}, "evaluation.rouge_tokenizer must be one of morpheme, whitespace, char, got 'bpe'"),
    (Q, {"bits": 8, "quant_type": "fp4"},
     "quantization.quant_type ('fp4') applies to 4-bit only, but quantization.bits is 8; remove it or set "
     "quantization.bits to 4"),
    (Q, {"bits": 8, "double_quant": False},
     "quantization.double_quant (False) applies to 4-bit only, but quantization.bits is 8; remove it or set "
     "quantization.bits to 4"),
    (Q, {"bits": 8, "compute_dtype": "bfloat16"},
     "quantization.compute_dtype ('bfloat16') applies to 4-bit only, but quantization.bits is 8; remove it or set "
     "quantization.bits to 4"),
    (Q, {"bits": 3}, "quantization.bits must be one of 4, 8, got 3"),
    (L, {"r": 0}, "lora.r must be >= 1, got 0"),
    (L, {"alpha": 0}, "lora.alpha must be > 0, got 0"),
    (L, {"dropout": 1.0}, "lora.dropout must be in [0, 1), got 1.0"),
    (L, {"dropout": -0.1}, "lora.dropout must be in [0, 1), got -0.1"),
    (L, {"target_modules": []}, "lora.target_modules must name at least one module or be all-linear, got []"),
]


@pytest.mark.parametrize("cls, kwargs, message", REFUSED, ids=lambda x: str(x) if isinstance(x, dict) else "")
def test_bad_settings_are_refused_when_built(cls, kwargs, message):
    with pytest.raises(ConfigError) as info:
        cls(**kwargs)
    assert str(info.value) == message
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("cls, kwargs", [
    (G, {}), (G, {"num_beams": 1, "do_sample": True, "num_return_sequences": 4, "temperature": 0.7, "top_p": 0.9}),
    (G, {"num_beams": 4, "num_return_sequences": 4, "min_new_tokens": 100, "length_penalty": -1.0}),
    (O, {}), (O, {"warmup_steps": 100}), (O, {"warmup_ratio": 0.1}), (O, {"betas": (0.0, 0.0)}),
    (E, {}), (E, {"generate_every_n_epochs": 3, "generate_limit": 1, "num_text_samples": 0}),
    (Q, {}), (Q, {"bits": 8}), (Q, {"bits": 4, "quant_type": "fp4", "double_quant": False, "compute_dtype": "float16"}),
    (L, {}), (L, {"r": 1, "alpha": 0.5, "dropout": 0.0, "target_modules": ["q_proj"]}),
])
def test_consistent_settings_are_accepted(cls, kwargs):
    settings = cls(**kwargs)
    assert all(getattr(settings, k) == v for k, v in kwargs.items())


def _cli_error(capsys, tmp_path, monkeypatch, *args: str) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning_summ"])  # pytest's own arguments are not the CLI's
    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Does not validate" not in err, err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("flag, value, message", [
    ("generation.num_beams", "0", "generation.num_beams must be >= 1, got 0"),
    ("evaluation.generate_every_n_epochs", "0", "evaluation.generate_every_n_epochs must be >= 1, got 0"),
    ("optimizer.warmup_steps", "10",  # the quickstart sets warmup_ratio: 0.05
     "optimizer.warmup_ratio (0.05) and optimizer.warmup_steps (10) are both set; set only one of them"),
])
def test_cli_refuses_a_bad_setting_in_one_line(flag, value, message, capsys, tmp_path, monkeypatch):
    line = _cli_error(capsys, tmp_path, monkeypatch, "fit", "--config", str(QUICKSTART),
                      f"--model.init_args.{flag}", value)
    assert line == f"lightning_summ: error: {message}"
    assert not any(tmp_path.iterdir()), "nothing may be written before the settings are checked"


def test_cli_refuses_4bit_options_with_8_bits(capsys, tmp_path, monkeypatch):
    line = _cli_error(capsys, tmp_path, monkeypatch, "fit", "--config", str(CONFIGS / "qwen3-4b-qlora.yaml"),
                      "--model.init_args.quantization.bits", "8", "--model.init_args.quantization.quant_type", "fp4")
    assert line == ("lightning_summ: error: quantization.quant_type ('fp4') applies to 4-bit only, but "
                    "quantization.bits is 8; remove it or set quantization.bits to 4")


def test_precision_error_is_a_user_error():
    from lightning_summ.precision import PrecisionError

    assert issubclass(PrecisionError, UserError)
