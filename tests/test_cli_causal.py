"""Every shipped LLM config, fit -> predict through the CLI, on a tiny random model of its architecture.

The tiny model keeps what matters of the real architecture (family, tied or untied head, rope
scaling, partial rotary, parallel residual) and is saved to a local directory, so the configs'
real loading path (``from_pretrained``, 4-bit quantization for the QLoRA configs) runs offline.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from conftest import CONFIGS
from lightning_summ.commands.lightning import run_cli
from lightning_summ.paths import PACKAGE_DIR, resolve_path

ARCHITECTURES = PACKAGE_DIR / "assets" / "architectures"
LLM_CONFIGS = {  # shipped config -> the architecture it fine-tunes
    "qwen3-4b-qlora.yaml": "qwen3-4b.json",
    "qwen3-4b-lora-bf16.yaml": "qwen3-4b.json",
    "llama-3.2-korean-bllossom-3b-qlora.yaml": "llama-3.2-3b.json",
    "solar-10.7b-qlora.yaml": "solar-10.7b.json",
    "polyglot-ko-12.8b-qlora.yaml": "polyglot-ko-12.8b.json",
    "kullm-v2-12.8b-qlora.yaml": "polyglot-ko-12.8b.json",
}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# 4-bit blocks are 64 wide: smaller layers cannot be quantized
SHAPE_KEYS = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16}


def test_every_llm_config_is_covered():
    shipped = {p.name for p in CONFIGS.glob("*.yaml") if "CausalLMSummarizer" in p.read_text()}
    assert shipped == set(LLM_CONFIGS)


@pytest.mark.parametrize("architecture", sorted(set(LLM_CONFIGS.values())))
def test_real_architectures_build_on_the_meta_device(architecture):
    spec = json.loads((ARCHITECTURES / architecture).read_text())
    expected = {"qwen3-4b.json": 4.02, "llama-3.2-3b.json": 3.21, "solar-10.7b.json": 10.73,
                "polyglot-ko-12.8b.json": 12.89}[architecture]
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(expected, abs=0.01)


def tiny_pretrained(directory: Path, architecture: str, chat: bool) -> Path:
    tok = AutoTokenizer.from_pretrained(resolve_path("pkg://assets/quickstart-tokenizer"))
    if chat:  # an instruct model: chat template whose end-of-turn token is EOS
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tok.eos_token = "<|im_end|>"
        tok.chat_template = CHAT_TEMPLATE
    spec = json.loads((ARCHITECTURES / architecture).read_text())
    spec.update({k: v for k, v in SHAPE_KEYS.items() if k in spec})
    spec.update(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("config_name", sorted(LLM_CONFIGS))
def test_llm_config_fits_and_predicts_through_the_cli(config_name, tmp_path, monkeypatch, capsys):
    config = CONFIGS / config_name
    chat = "use_chat_template: false" not in config.read_text()
    model_dir = tiny_pretrained(tmp_path / "model", LLM_CONFIGS[config_name], chat)
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(config), f"--model.init_args.pretrained={model_dir}", "--model.init_args.max_length=320",
              "--model.init_args.generation.max_new_tokens=4", "--model.init_args.evaluation.generate_limit=1000",
              "--data.train_path=pkg://sample_data/train.csv", "--data.val_path=pkg://sample_data/dev.csv",
              "--data.predict_path=pkg://sample_data/test.csv", "--data.batch_size=4", "--data.eval_batch_size=20",
              "--data.num_workers=0"]
    # No sanity check: on CPU, bitsandbytes 0.50 repacks 4-bit weights for inference during an eval
    # pass, and a training step afterwards fails inside bnb (GPUs are unaffected).
    cli = run_cli(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                   "--trainer.accumulate_grad_batches=1", "--trainer.num_sanity_val_steps=0"])
    assert cli.model.processor.formatter.uses_chat_template == chat
    assert "val/rouge_mean" in cli.trainer.callback_metrics
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    weights = torch.load(best, weights_only=True)["state_dict"]
    assert weights and all("lora_" in k or "trainable_tokens" in k for k in weights), "adapter-only checkpoint"

    cli = run_cli(["predict", *common, "--ckpt_path", str(best)])
    sub = Path(cli.trainer.log_dir) / "submission.csv"
    with open(sub, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and rows[0]["fname"] == "test_0"
    assert f"Wrote 40 summaries to {sub}" in capsys.readouterr().out


def test_export_adapter_loads_with_peft_and_merge_gives_the_same_logits(tmp_path, monkeypatch):
    from peft import PeftModel

    model_dir = tiny_pretrained(tmp_path / "model", "qwen3-4b.json", chat=True)
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CONFIGS / "qwen3-4b-lora-bf16.yaml"), f"--model.init_args.pretrained={model_dir}",
              "--model.init_args.max_length=320", "--data.train_path=pkg://sample_data/train.csv",
              "--data.val_path=pkg://sample_data/dev.csv", "--data.batch_size=4", "--data.num_workers=0",
              "--model.init_args.dtype=float32", "--model.init_args.optimizer.lr=1e-2"]
    cli = run_cli(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=3",
                   "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", "--trainer.accumulate_grad_batches=1"])
    ckpt = tmp_path / "last.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    ours = cli.model.model.eval()
    ids = torch.tensor([cli.model.processor.encode("#Person1#: 안녕하세요.\n#Person2#: 네.", None, True)["input_ids"]])
    with torch.no_grad():
        expected = ours(input_ids=ids).logits

    run_cli(["export", *common, "--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "adapter")])
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    tok = AutoTokenizer.from_pretrained(tmp_path / "adapter")
    assert tok.convert_tokens_to_ids("#Person1#") != tok.unk_token_id and len(tok) == len(cli.model.tokenizer)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base.resize_token_embeddings(len(tok))
    with torch.no_grad():
        assert not torch.allclose(base.eval()(input_ids=ids).logits, expected, atol=1e-3), "the adapter must matter"
    loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, expected, atol=1e-4)

    run_cli(["export", *common, "--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "merged"), "--merge=true"])
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)


def test_predict_with_device_map_offloading_matches_the_plain_model(tmp_path, monkeypatch, capsys):
    """A model bigger than the device: accelerate places (here: offloads) the weights and Lightning
    must not move them; the summaries equal those of the same model loaded normally."""
    from lightning_summ.tags import KNOWN_TAGS, add_tags_to_tokenizer

    model_dir = tiny_pretrained(tmp_path / "model", "qwen3-4b.json", chat=True)
    tok = AutoTokenizer.from_pretrained(model_dir)  # an exported (merged) model already holds the tags
    add_tags_to_tokenizer(tok, KNOWN_TAGS)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(tmp_path / "merged")
    tok.save_pretrained(tmp_path / "merged")
    monkeypatch.chdir(tmp_path)
    common = ["--config", str(CONFIGS / "qwen3-4b-qlora.yaml"), f"--model.init_args.pretrained={tmp_path / 'merged'}",
              "--model.init_args.quantization=null", "--model.init_args.lora=null", "--model.init_args.max_length=320",
              "--model.init_args.generation.max_new_tokens=6", "--model.init_args.generation.min_new_tokens=6",
              "--model.init_args.dtype=float32", "--data.train_path=pkg://sample_data/train.csv",
              "--data.predict_path=pkg://sample_data/test.csv", "--data.num_workers=0"]
    outputs = {}
    for name, extra in {"plain": [], "offloaded": ["--model.init_args.device_map=auto",
                                                   '--model.init_args.max_memory={"cpu": "200KB"}',
                                                   f"--model.init_args.offload_folder={tmp_path / 'offload'}"]}.items():
        cli = run_cli(["predict", *common, *extra, f"--submission.output_path={tmp_path / name}.csv"])
        outputs[name] = (tmp_path / f"{name}.csv").read_text()
    assert "disk" in set(cli.model.model.hf_device_map.values())
    assert outputs["plain"] == outputs["offloaded"] and outputs["plain"].count("\n") == 41
