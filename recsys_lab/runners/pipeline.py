"""Chained runs: ``python -m recsys_lab.pipeline pipeline=<name>``.

A pipeline is a list of stages. Each stage is a full run config — an entry config (``train`` by
default) composed with the stage's overrides — executed in-process by the stage's runner
(:func:`recsys_lab.runners.train.run` by default; any callable ``runner(cfg) -> dict`` works, e.g. a feature
writer). A stage refers to an earlier stage's outputs with the ``stage`` resolver::

    init.checkpoint=${stage:dnn,best_checkpoint}

Outputs of a finished stage: ``dir``, ``best_checkpoint``, ``last_checkpoint``, ``metrics_file``,
plus every key of the dict its runner returned (e.g. ``test/auc``, or file paths a stage reports).

The pipeline directory (``pipeline_dir``) keeps ``state.json``. A re-run skips each stage whose
fingerprint (its resolved config, chained with the fingerprints of the stages before it) is
unchanged and whose outputs still exist; an interrupted stage resumes from its
``checkpoints/last.ckpt``; a stage whose config changed runs afresh, its old directory kept aside.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import hydra
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, ValidationError

from recsys_lab.runners.stage import (
    CONFIG_DIR,
    apply_resume_argv,
    check_moved_keys,
    route_framework_logs,
    run_lock,
    write_json_atomic,
)

STATE_FILE = "state.json"

Runner = Callable[[DictConfig], dict[str, Any]]


class PipelineError(RuntimeError):
    """A pipeline definition or a stage reference is wrong."""


@dataclass
class StageSpec:
    """One entry of ``pipeline.stages`` (checked before any stage runs; an unknown key is an error).

    Attributes:
        name: the stage's name, unique in the pipeline; its folder is ``<pipeline_dir>/<name>``.
        config: the entry config the stage composes (``conf/<config>.yaml``).
        overrides: the stage's overrides; ``${stage:<earlier>,<output>}`` reads an earlier stage's output.
        runner: a ``_partial_`` config of a callable ``runner(cfg) -> dict``
            (None: :func:`recsys_lab.runners.train.run`).
    """

    name: str = ""
    config: str = "train"
    overrides: list[str] = field(default_factory=list)
    runner: Any = None


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "resumed" or "skipped"
    outputs: dict[str, Any] = field(default_factory=dict)


class PipelineState:
    """``state.json``: per stage, its status, fingerprint and outputs. Written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                self.stages = json.loads(path.read_text())["stages"]
            except (json.JSONDecodeError, KeyError) as err:
                raise PipelineError(
                    f"Pipeline state {path} is unreadable ({err}). Delete it to re-run every stage."
                ) from err

    def save(self) -> None:
        write_json_atomic(self.path, {"stages": self.stages})

    def set(self, name: str, **entry: Any) -> None:
        self.stages[name] = entry
        self.save()


def _outputs_exist(outputs: dict[str, Any]) -> bool:
    for key in ("metrics_file", "best_checkpoint"):
        path = outputs.get(key)
        if path and not Path(path).exists():
            return False
    return True


def _standard_outputs(stage_dir: Path) -> dict[str, Any]:
    best = stage_dir / "checkpoints" / "best.ckpt"
    last = stage_dir / "checkpoints" / "last.ckpt"
    metrics = stage_dir / "metrics.json"
    return {
        "dir": str(stage_dir),
        "best_checkpoint": str(best) if best.is_file() else "",
        "last_checkpoint": str(last) if last.is_file() else "",
        "metrics_file": str(metrics) if metrics.is_file() else "",
    }


def _validate(stages: ListConfig) -> None:
    names = [s.get("name") for s in stages]
    if not names:
        raise PipelineError("pipeline.stages is empty: list at least one stage with a name and overrides.")
    if any(not n for n in names):
        raise PipelineError("Every pipeline stage needs a `name`.")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PipelineError(f"Pipeline stage names must be unique; repeated: {dupes}")
    allowed = [f.name for f in fields(StageSpec)]
    for s in stages:
        unknown = set(s.keys()) - set(allowed)
        if unknown:
            raise PipelineError(
                f"Stage {s.name!r} has unknown keys {sorted(unknown)}; allowed: {', '.join(allowed)}."
            )
        try:  # types only: the overrides' ${stage:...} references resolve when the stage runs
            OmegaConf.merge(OmegaConf.structured(StageSpec), s)
        except ValidationError as err:
            raise PipelineError(
                f"Stage {s.name!r}, key {err.full_key!r}: {str(err.msg).splitlines()[0]}. A stage has a "
                "name (str), config (str), overrides (a list of str) and runner (a _partial_ config)."
            ) from None


def run_pipeline(cfg: DictConfig) -> list[StageResult]:
    """Run (or resume) the stages of ``cfg.pipeline`` in order; return what happened to each.

    The pipeline folder is locked while this runs: a second run of the same pipeline folder stops
    at once with a message naming the first."""
    pipeline_dir = Path(cfg.pipeline_dir)
    with run_lock(pipeline_dir, "pipeline"):
        return _run_stages(cfg, pipeline_dir)


def _run_stages(cfg: DictConfig, pipeline_dir: Path) -> list[StageResult]:
    stages: ListConfig = cfg.pipeline.stages
    _validate(stages)
    state = PipelineState(pipeline_dir / STATE_FILE)
    finished: dict[str, dict[str, Any]] = {}

    reference_errors: list[PipelineError] = []

    def resolve_stage(name: str, key: str) -> Any:
        if name not in finished:
            reference_errors.append(
                PipelineError(
                    f"${{stage:{name},{key}}} refers to stage {name!r}, which has not run before this one. "
                    f"Finished so far: {sorted(finished)}."
                )
            )
            raise reference_errors[-1]
        if key not in finished[name]:
            reference_errors.append(
                PipelineError(f"Stage {name!r} has no output {key!r}; it has {sorted(finished[name])}.")
            )
            raise reference_errors[-1]
        return finished[name][key]

    OmegaConf.register_new_resolver("stage", resolve_stage, replace=True)
    results: list[StageResult] = []
    chain = hashlib.sha256(str(cfg.pipeline.name).encode())
    for stage in stages:
        stage_dir = pipeline_dir / stage.name
        # Reading the overrides resolves ${stage:...} against the stages finished so far.
        try:
            overrides = [str(o) for o in [*(stage.get("overrides") or []), *(cfg.get("overrides") or [])]]
        except InterpolationResolutionError:
            if reference_errors:  # OmegaConf wraps the resolver's error: raise ours, unwrapped
                raise reference_errors[-1] from None
            raise
        check_moved_keys(overrides)
        run_cfg = compose(
            config_name=stage.get("config") or "train",
            overrides=[*overrides, f"paths.output_dir={stage_dir}"],
        )
        chain.update(OmegaConf.to_yaml(run_cfg, resolve=True).encode())
        fingerprint = chain.hexdigest()
        previous = state.stages.get(stage.name, {})
        same = previous.get("fingerprint") == fingerprint

        if same and previous.get("status") == "done" and _outputs_exist(previous.get("outputs", {})):
            finished[stage.name] = previous["outputs"]
            results.append(StageResult(stage.name, "skipped", previous["outputs"]))
            continue

        status = "ran"
        last = stage_dir / "checkpoints" / "last.ckpt"
        if same and previous.get("status") == "running" and last.is_file():
            OmegaConf.update(run_cfg, "ckpt_path", str(last), force_add=True)
            status = "resumed"
        elif stage_dir.exists():
            # A different config ran here before: keep its files aside rather than mixing them.
            shutil.move(
                str(stage_dir), str(pipeline_dir / f"{stage.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            )

        state.set(stage.name, status="running", fingerprint=fingerprint, started=time.time())
        runner: Runner = instantiate(stage.runner) if stage.get("runner") else _default_runner()
        returned = runner(run_cfg) or {}
        outputs = {**returned, **_standard_outputs(stage_dir)}
        outputs = {k: v for k, v in outputs.items() if isinstance(v, str | int | float | bool)}
        state.set(stage.name, status="done", fingerprint=fingerprint, outputs=outputs, finished=time.time())
        finished[stage.name] = outputs
        results.append(StageResult(stage.name, status, outputs))
    return results


def _default_runner() -> Runner:
    from recsys_lab.runners.train import run

    return run


def print_summary(results: list[StageResult], pipeline_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pipeline {pipeline_dir}")
    for col in ("stage", "status", "val/auc", "test/auc", "dir"):
        table.add_column(col)
    for r in results:
        fmt = [
            f"{r.outputs[k]:.4f}" if isinstance(r.outputs.get(k), float) else "–"
            for k in ("val/auc", "test/auc")
        ]
        table.add_row(r.name, r.status, *fmt, str(r.outputs.get("dir", "")))
    Console().print(table)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="pipeline")
def _main(cfg: DictConfig) -> None:
    route_framework_logs()
    results = run_pipeline(cfg)
    print_summary(results, str(cfg.pipeline_dir))


def main() -> None:
    """``python -m recsys_lab.pipeline`` / ``recsys-pipeline``; ``resume=<pipeline dir>`` re-runs that
    pipeline with its own overrides (finished stages are skipped, an interrupted one resumes)."""
    apply_resume_argv("pipeline_dir")
    _main()


if __name__ == "__main__":
    main()
