"""``lightning_summ pipeline``: members (fit or k folds), an API baseline, the ensemble, TTA and the
report; resumable stage by stage.

``spec.py`` reads and checks the pipeline YAML, ``stages.py`` runs a stage once (a finished stage is
skipped, a changed one refused, one whose inputs were redone redone), ``scores.py`` scores a file,
``report.py`` writes ``report.json`` and ``report.md``, ``plots.py`` the PNG charts it links and
``tensorboard.py`` the same numbers as TensorBoard hparams. The stages that run Lightning live beside
the commands (``lightning_summ/commands/_pipeline_*.py``), which this package never imports.
"""
