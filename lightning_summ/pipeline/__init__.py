"""``lightning_summ pipeline``: members (fit or k folds), ensemble, report; resumable stage by stage.

``spec.py`` reads and checks the pipeline YAML, ``stages.py`` runs a stage once (a finished stage
is skipped, a changed one refused), ``report.py``
writes ``report.json`` and ``report.md``.
"""
