"""CPU runs choose torch's thread count deliberately (README: Resume after a crash / CPU threads)."""

from __future__ import annotations

import torch

from lightning_summ.commands.lightning import SummarizationTrainer, cpu_threads


def test_cpu_run_uses_a_bounded_thread_count_unless_omp_num_threads_is_set(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(7)
        SummarizationTrainer(accelerator="cpu", logger=False, default_root_dir=tmp_path)
        assert torch.get_num_threads() == cpu_threads() <= 4
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(3)
        SummarizationTrainer(accelerator="cpu", logger=False, default_root_dir=tmp_path)
        assert torch.get_num_threads() == 3  # the user's choice stands
    finally:
        torch.set_num_threads(before)
