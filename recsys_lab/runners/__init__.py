"""Everything that runs. Nothing outside this package imports it except the thin ``python -m``
entry shims (``recsys_lab/train.py``, ``pipeline.py``, ``evaluate.py``, ``predict.py``,
``export.py``, ``federate.py``, ``scaling/__main__.py``); a test enforces it.

- :mod:`.stage` — what every run shares: its folder, lock and resumption, ``config.yaml``,
  seeding, threads, atomic saves, ``metrics.json`` and the typed settings of a stage runner
  (:func:`~.stage.options`); :mod:`.threads` — how many CPU threads a run may use.
- :mod:`.train` — one training run (``build``, ``run``, resume handling); :mod:`.checkpoint` —
  weights out of checkpoints (warm starts).
- :mod:`.pipeline` — chained runs; its stage runners :mod:`.das` (logged predictions, ExFM's
  foundation model), :mod:`.lum_features` (LUM knowledge querying), :mod:`.pcf` (PCF-GNN
  pre-training).
- :mod:`.evaluate`, :mod:`.predict`, :mod:`.export` — after training (sharing :mod:`.common`);
  :mod:`.summary` — the multirun summary.
- :mod:`.federate` — one federated run; :mod:`.study` — scaling studies.
"""
