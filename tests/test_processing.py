"""SummaryProcessor: one object between data and model, saved with the checkpoint and verified on load."""

from __future__ import annotations

import inspect

import pytest
import torch

from conftest import QUICKSTART, TINY
from lightning_summ.data import datamodule as datamodule_module
from lightning_summ.errors import ConfigError
from lightning_summ.models.causal import CausalLMSummarizer
from lightning_summ.models.settings import LoraSettings
from lightning_summ.processing import CausalProcessor, Seq2SeqProcessor
from lightning_summ.io import read_examples
from lightning_summ.paths import resolve_path

TOKENIZER = "pkg://assets/quickstart-tokenizer"
LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}


def causal(**kwargs) -> CausalLMSummarizer:
    kwargs.setdefault("max_length", 256)
    kwargs.setdefault("tokenizer", TOKENIZER)
    model = CausalLMSummarizer(model_config=LLAMA, dtype="float32",
                               lora=LoraSettings(r=2, alpha=4, dropout=0.0), **kwargs)
    model.processor.fit_tags()
    model.configure_model()
    return model


def saved_checkpoint(model) -> dict:
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    return checkpoint


def test_a_checkpoint_remembers_the_prompt_and_refuses_another_in_one_line():
    checkpoint = saved_checkpoint(causal(instruction="대화를 요약하세요."))
    causal(instruction="대화를 요약하세요.").on_load_checkpoint(checkpoint)  # same prompt: fine
    with pytest.raises(ConfigError) as err:
        causal(instruction="대화를 세 문장으로 요약하세요.").on_load_checkpoint(checkpoint)
    message = str(err.value)
    assert "\n" not in message and "prompt_prefix_ids" in message and "model.init_args.instruction" in message


@pytest.mark.parametrize("change, key", [({"max_length": 200}, "max_length"), ({"atomic_tags": False}, "atomic_tags"),
                                         ({"tokenizer": "pkg://assets/quickstart-tokenizer/"}, None)])
def test_other_processor_differences_are_named(change, key):
    checkpoint = saved_checkpoint(causal())
    if key is None:  # the same tokenizer under another path: the vocabulary, not the name, is compared
        causal(**change).on_load_checkpoint(checkpoint)
        return
    with pytest.raises(ConfigError, match=f"different processor: {key} = "):
        causal(**change).on_load_checkpoint(checkpoint)


def test_tags_are_fixed_once_and_a_different_vocabulary_is_refused():
    processor = Seq2SeqProcessor(TOKENIZER, 64, 16)
    assert processor.fit_tags(["#Person1#: #Foo# 있어요"])[-1] == "#Foo#"
    assert processor.fit_tags(["#Foo#"]) == processor.tags  # same vocabulary: fine (every fold model)
    with pytest.raises(ConfigError, match="already fixed"):
        processor.fit_tags(["#Bar#"])
    assert processor.tokenizer.convert_ids_to_tokens(processor.tokenizer("#Foo#").input_ids)[1] == "#Foo#"


def test_generation_batches_for_tta_and_the_server_equal_the_datamodules():
    from lightning_summ.data.datamodule import SummarizationDataModule

    processor = CausalProcessor(TOKENIZER, max_length=256, max_new_tokens=20)
    dm = SummarizationDataModule(processor, train_path="pkg://sample_data/train.csv",
                                 predict_path="pkg://sample_data/test.csv", eval_batch_size=4)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    again = processor.generation_batch(batch["dialogue"], batch["index"].tolist(), batch["fname"])
    for key in ("input_ids", "attention_mask", "index"):
        assert torch.equal(batch[key], again[key]), key
    assert again["fname"] == batch["fname"]


def test_the_cli_hands_one_processor_to_model_and_data(cli_run):
    cli = cli_run("fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1")
    assert cli.datamodule.processor is cli.model.processor
    train_tags = {t for ex in read_examples(resolve_path("pkg://sample_data/train.csv")) for t in
                  __import__("re").findall(r"#\w+#", ex.dialogue)}
    assert train_tags <= set(cli.model.processor.tags)
    assert cli.model.model.get_input_embeddings().num_embeddings == len(cli.model.processor.tokenizer)


def test_predict_with_other_lengths_than_training_fails_with_one_line(cli_run, tmp_path, capsys, monkeypatch):
    from lightning_summ.commands import main

    cli = cli_run("fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
                  "--model.init_args.evaluation.generate_every_n_epochs=1")
    best = cli.trainer.checkpoint_callback.best_model_path
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", str(QUICKSTART), *TINY, "--ckpt_path", best,
              "--model.init_args.max_source_length=100", f"--submission.output_path={tmp_path}/out/s.csv"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    trained = cli.model.processor.max_source_length
    assert last.startswith(f"lightning_summ: error: --ckpt_path {best} was made with a different processor: "
                           f"max_source_length = {trained} there, 100 in this run"), last
    assert not (tmp_path / "out").exists()


def test_the_datamodule_never_reaches_into_the_model():
    source = inspect.getsource(datamodule_module)
    assert "lightning_module" not in source and "self.model" not in source


def test_serve_decodes_under_the_precision_predict_uses():
    """Outside a Trainer, the model autocasts as Lightning's precision plugin does under predict."""
    from lightning_summ.models.seq2seq import Seq2SeqSummarizer

    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config={"model_type": "bart", "d_model": 16})
    model.inference_precision = "bf16-mixed"
    with model.inference_context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    model.inference_precision = "32-true"
    with model.inference_context():
        assert not torch.is_autocast_enabled("cpu")


def test_ensemble_checkpoints_are_refused_for_fit_before_any_member_loads(tmp_path):
    from lightning_summ.models.seq2seq import Seq2SeqSummarizer

    model = Seq2SeqSummarizer(tokenizer=TOKENIZER, model_config={"model_type": "bart", "d_model": 16},
                              ensemble_checkpoints=[str(tmp_path / "does-not-exist.ckpt")])
    with pytest.raises(ConfigError, match="not fit"):
        model.setup("fit")
