"""The seed's precision failures as regression tests."""

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_summ.precision import PrecisionError, check_trainable_dtypes, resolve_precision, uses_grad_scaler


def test_auto_resolves_to_full_precision_on_cpu():
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"  # explicit choices pass through
    if not torch.cuda.is_available():
        assert resolve_precision("auto", "auto") == "32-true"


def test_auto_prefers_bf16_on_gpus_that_have_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "gpu") == "16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"


def test_grad_scaler_detection():
    assert uses_grad_scaler(MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu")))
    assert not uses_grad_scaler(MixedPrecision("bf16-mixed", "cpu"))


def test_bf16_trainable_weights_under_fp16_scaler_are_refused():
    layer = torch.nn.Linear(4, 4).to(torch.bfloat16)
    with pytest.raises(PrecisionError, match="GradScaler.*bf16-mixed"):
        check_trainable_dtypes(layer, "16-mixed", grad_scaler=True)


def test_half_master_weights_under_mixed_precision_are_refused_but_frozen_ones_are_fine():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4).to(torch.bfloat16), torch.nn.Linear(4, 4))
    with pytest.raises(PrecisionError, match="float32 master weights"):
        check_trainable_dtypes(model, "bf16-mixed", grad_scaler=False)
    model[0].requires_grad_(False)  # a frozen (e.g. quantized) base with fp32 adapters: fine
    check_trainable_dtypes(model, "16-mixed", grad_scaler=True)
    check_trainable_dtypes(model, "bf16-mixed", grad_scaler=False)
