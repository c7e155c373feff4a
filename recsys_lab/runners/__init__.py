"""Everything that runs: the run-folder stage shared by every entry point (:mod:`.stage`,
:mod:`.threads`), and the runners after training: evaluate, predict, export (and the multirun
summary).

Each runner is a Hydra entry (``conf/eval.yaml``, ``conf/predict.yaml``, ``conf/export.yaml``) with
a thin ``python -m`` module beside ``recsys_lab.train``; they share :mod:`.common`.
"""
