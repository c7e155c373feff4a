"""Runs killed with SIGKILL anywhere (mid-epoch, in validation, in the test pass, while a
checkpoint is written) and resumed with ``resume=<dir>`` end with the uninterrupted run's metrics;
the same for a pipeline stage and a study point. Also: the loader's mid-epoch position, run-folder
names, locks and the ``resume=`` command line."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys_lab.data.datamodule import EpochBatchSampler, ResumableLoader, batch_loader
from recsys_lab.runners import stage
from recsys_lab.runners.train import run
from tests.conftest import compose_train

REPO = Path(__file__).resolve().parents[2]
# 4096 training rows in batches of 256: 16 steps an epoch, 3 epochs; last.ckpt every 3 steps too.
COMMON = (
    "debug=tiny",
    "model=dnn",
    "model.hidden_units=[16]",
    "trainer.max_epochs=3",
    "callbacks.step_checkpoint.every_n_steps=3",
    "num_threads=1",
    "logger=csv",
    "print_table=false",
)
COMPARED = ("val/auc", "val/logloss", "test/auc", "test/logloss", "test/gauc", "global_step", "epochs")


def _kill_points(seed: int) -> list[tuple[str, int]]:
    """One random point per phase (drawn from ``seed``, printed by the test on failure)."""
    rng = random.Random(seed)
    return [
        ("train_batch", rng.randint(1, 46)),  # any step but the last, mid-epoch or not
        ("validation", rng.randint(0, 2)),  # inside epoch k's validation
        ("test", 0),  # inside the test pass (one test batch at this size)
        ("checkpoint", rng.randint(1, 12)),  # while the k-th checkpoint is being written
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "1"}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs: dict[str, subprocess.Popen]) -> dict[str, tuple[int, str]]:
    return {k: (p.wait(timeout=600), p.stdout.read() if p.stdout else "") for k, p in procs.items()}


def _kill_override(phase: str, at: int, marker: Path) -> str:
    return f"+callbacks.kill={{_target_:tests.helpers.KillAt,phase:{phase},at:{at},marker:'{marker}'}}"


def _same(resumed: dict, reference: dict, what: str) -> None:
    for key in COMPARED:
        assert resumed[key] == pytest.approx(reference[key], abs=1e-6), f"{what}: {key}"


def _curve(run_dir: Path) -> list[dict[str, str]]:
    """The CSV learning curve (``logger=csv``) without the wall-clock throughput and the epoch means
    of training metrics: Lightning does not checkpoint those running means, so after a mid-epoch
    resume they average the epoch's remaining batches only (the README says so)."""
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {k: v for k, v in r.items() if v != "" and k != "train/samples_per_s" and not k.endswith("_epoch")}
        for r in rows
    ]


@pytest.mark.subprocess
@pytest.mark.usefixtures("hydra_ctx")
def test_sigkill_anywhere_then_resume_reproduces_the_uninterrupted_run(tmp_path):
    reference = run(compose_train(tmp_path / "reference", *COMMON))
    points = _kill_points(seed=int.from_bytes(os.urandom(2), "little"))
    killed = {}
    for phase, at in points:
        run_dir = tmp_path / phase
        args = ["-m", "recsys_lab.train", *COMMON, f"hydra.run.dir={run_dir}"]
        killed[phase] = _start([*args, _kill_override(phase, at, tmp_path / f"{phase}.killed")], tmp_path)
    for phase, (code, out) in _finish(killed).items():
        assert code == -signal.SIGKILL, (
            f"{phase} was not killed (exit {code}; points {points}):\n{out[-3000:]}"
        )
        assert not (tmp_path / phase / "metrics.json").exists()
    resumed = {
        ph: _start(["-m", "recsys_lab.train", f"resume={tmp_path / ph}"], tmp_path) for ph, _ in points
    }
    for phase, (code, out) in _finish(resumed).items():
        assert code == 0, f"resuming {phase} failed (points {points}):\n{out[-3000:]}"
        metrics = json.loads((tmp_path / phase / "metrics.json").read_text())
        _same(metrics, reference, f"killed at {phase} (points {points})")
        assert Path(metrics["best_checkpoint"]).parent == tmp_path / phase / "checkpoints"
        # The learning curve continues across the kill: every row once, as in the uninterrupted run.
        assert _curve(tmp_path / phase) == _curve(Path(reference["output_dir"])), f"{phase} (points {points})"


@pytest.mark.subprocess
@pytest.mark.usefixtures("hydra_ctx")
def test_sigkilled_pipeline_stage_and_study_point_resume_exactly(tmp_path):
    from hydra import compose

    from recsys_lab.runners.pipeline import run_pipeline
    from recsys_lab.runners.study import run_study

    stage_overrides = [
        "debug=tiny",
        "num_threads=1",
        "trainer.max_epochs=2",
        "callbacks.step_checkpoint.every_n_steps=4",
    ]

    def listed(overrides: list[str]) -> str:
        return "overrides=[" + ",".join(f'"{o}"' for o in overrides) + "]"

    ref_pipe = run_pipeline(
        compose(
            config_name="pipeline",
            overrides=[f"pipeline_dir={tmp_path / 'ref_pipe'}", listed(stage_overrides)],
        )
    )
    ref_study = run_study(
        compose(config_name="scaling", overrides=["study=smoke", f"out_dir={tmp_path / 'ref_study'}"])
    )
    kill = _kill_override("train_batch", 21, tmp_path / "pipe.killed")  # epoch 2 of the first stage
    study_kill = _kill_override("train_batch", 9, tmp_path / "study.killed")  # mid-epoch, first point
    study_args = ["-m", "recsys_lab.scaling", "study=smoke", f"out_dir={tmp_path / 'study'}"]
    procs = {
        "pipeline": _start(
            [
                "-m",
                "recsys_lab.pipeline",
                f"pipeline_dir={tmp_path / 'pipe'}",
                listed([*stage_overrides, kill]),
            ],
            tmp_path,
        ),
        "study": _start(
            [*study_args, listed(["callbacks.step_checkpoint.every_n_steps=4", study_kill])], tmp_path
        ),
    }
    for what, (code, out) in _finish(procs).items():
        assert code == -signal.SIGKILL, f"{what} was not killed (exit {code}):\n{out[-3000:]}"
    procs = {
        "pipeline": _start(["-m", "recsys_lab.pipeline", f"resume={tmp_path / 'pipe'}"], tmp_path),
        "study": _start(["-m", "recsys_lab.scaling", f"resume={tmp_path / 'study'}"], tmp_path),
    }
    for what, (code, out) in _finish(procs).items():
        assert code == 0, f"resuming the {what} failed:\n{out[-3000:]}"
    state = json.loads((tmp_path / "pipe" / "state.json").read_text())["stages"]
    for ref in ref_pipe:
        _same(json.loads(Path(state[ref.name]["outputs"]["metrics_file"]).read_text()), ref.outputs, ref.name)
    rows = {r["point"].rsplit("-", 1)[0]: r for r in ref_study["rows"]}
    points = sorted((tmp_path / "study" / "points").iterdir())
    assert len(points) == 2, points
    for point in points:
        metrics = json.loads((point / "metrics.json").read_text())
        _same(metrics, rows[point.name.rsplit("-", 1)[0]], point.name)


def test_loader_resumes_mid_epoch_at_the_exact_batch():
    data = torch.arange(100)

    def loader() -> ResumableLoader:
        return batch_loader(data, EpochBatchSampler(100, 10, shuffle=True, seed=3))

    full = loader()
    full.sampler.set_epoch(2)
    expected = [b.tolist() for b in full]
    first = loader()
    first.sampler.set_epoch(2)
    it = iter(first)
    seen = [next(it).tolist() for _ in range(4)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 4}
    resumed = loader()
    resumed.load_state_dict(state)
    it = iter(resumed)  # Lightning iterates before it sets the epoch: the skip waits for the epoch
    resumed.sampler.set_epoch(2)
    assert seen + [b.tolist() for b in it] == expected
    resumed.sampler.set_epoch(3)  # the next epoch is whole again
    assert len(list(resumed)) == 10


def test_run_folders_are_unique_and_locked(tmp_path):
    assert stage.run_id() == stage.run_id()  # fixed for the process
    ids = subprocess.run(
        [sys.executable, "-c", "from recsys_lab.runners.stage import run_id; print(run_id())"] * 1,
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout.strip()
    assert ids != stage.run_id()
    with stage.run_lock(tmp_path, "pipeline"):
        code = (
            "import sys; from recsys_lab.runners.stage import run_lock\n"
            f"with run_lock({str(tmp_path)!r}, 'pipeline'): pass"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
        assert out.returncode != 0
        assert f"The pipeline folder {tmp_path} is in use by pid {os.getpid()}" in out.stderr
    with stage.run_lock(tmp_path, "pipeline"):  # released when the holder ends
        pass


def test_resume_command_line_reuses_the_runs_overrides(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        f"- model=dnn\n- debug=tiny\n- hydra.run.dir={tmp_path}\n- resume={tmp_path}\n"
    )
    argv = stage.resume_argv(["prog", f"resume={tmp_path}", "trainer.max_epochs=5"], "hydra.run.dir")
    assert argv == [
        "prog",
        "model=dnn",
        "debug=tiny",
        "trainer.max_epochs=5",
        f"hydra.run.dir={tmp_path}",
        f"resume={tmp_path}",
    ]
    assert stage.resume_argv(["prog", "model=dnn"], "out_dir") == ["prog", "model=dnn"]
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        stage.resume_argv(["prog", f"resume={tmp_path / 'nope'}"], "hydra.run.dir")


@pytest.mark.subprocess
def test_runs_started_together_get_their_own_folders(tmp_path):
    args = ["-m", "recsys_lab.train", "debug=fast_dev_run", "num_threads=1", f"paths.log_dir={tmp_path}"]
    procs = {
        "dnn": _start([*args, "model=dnn"], tmp_path),
        "dcnv2": _start([*args, "model=dcnv2"], tmp_path),
        "dnn, again": _start([*args, "model=dnn"], tmp_path),  # the identical command
    }
    for what, (code, out) in _finish(procs).items():
        assert code == 0, f"{what}:\n{out[-3000:]}"
    runs = sorted(p.parent for p in tmp_path.rglob("metrics.json"))
    assert len(runs) == 3, runs
    models = sorted(json.loads((r / "metrics.json").read_text())["model"] for r in runs)
    assert models == ["DCNv2", "DNN", "DNN"]
    for r in runs:  # each folder holds its own run's config and log, once
        assert (
            f"model={json.loads((r / 'metrics.json').read_text())['model'].lower()}"
            in (r / ".hydra" / "overrides.yaml").read_text()
        )
        assert (r / "train.log").read_text().count("`Trainer.fit` stopped") == 1
