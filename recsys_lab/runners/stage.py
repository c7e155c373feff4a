"""What every run shares: its folder, its lock, resuming it, seeding and threads.

- **Unique folders.** ``${recsys_lab.run_id:}`` (used by ``conf/hydra/default.yaml``) names a run
  by its start time to the millisecond plus a random suffix, fixed once per process, so two runs
  started in the same second never share a folder.
- **Locks.** :func:`run_lock` takes an exclusive, non-blocking lock on a folder (a run, a pipeline,
  a study) for as long as one process writes there; a second writer gets a clear error naming the
  first. The lock dies with its process, so a killed run never leaves a stale lock behind.
- **Resume.** ``resume=<dir>`` on the command line of an entry point re-composes the run from the
  overrides saved in ``<dir>/.hydra/overrides.yaml`` and continues in ``<dir>``
  (:func:`resume_argv`); the training runner then restarts from ``checkpoints/last.ckpt``.
- **Start of a run.** :func:`begin` writes ``config.yaml`` (:func:`write_config`), seeds everything
  (:func:`seed`) and sets the threads (:func:`set_threads`).
- **Atomic saves.** :func:`atomic_path` yields a temporary name in the target's folder and renames
  it over the target only when the block succeeds, so a crash never leaves a half-written file under
  the final name; :func:`write_json_atomic`, :func:`torch_save_atomic` and :func:`savez_atomic` use it.
- **Results.** :func:`write_metrics` writes a run's ``metrics.json``; :func:`print_metrics_table`
  shows it beside the oracle's.
- **Typed settings.** :func:`options` reads a runner's own config node (``das``, ``lum_features``,
  ...) into its dataclass; a misspelt or unknown key is an error that names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, ValidationError

from recsys_lab.runners.threads import available_cpus, default_threads

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")
"""The project's Hydra config folder (``conf/``), for every ``@hydra.main`` and ``compose``."""
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LOCK_FILE = ".lock"
_RUN_ID = f"{datetime.now():%Y-%m-%d_%H-%M-%S.%f}"[:-3] + f"_{secrets.token_hex(3)}"


def run_id() -> str:
    """This process's run name: start time to the millisecond and a random suffix."""
    return _RUN_ID


def _mkdir(path: str) -> str:
    """``${recsys_lab.mkdir:<dir>}``: create ``dir`` and return it (e.g. for a sqlite file's folder
    that must exist before the Optuna sweeper opens its storage; see conf/sweep/optuna.yaml)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def register_resolvers() -> None:
    """Register ``${recsys_lab.run_id:}`` and ``${recsys_lab.mkdir:<dir>}`` (idempotent)."""
    if not OmegaConf.has_resolver("recsys_lab.run_id"):
        OmegaConf.register_new_resolver("recsys_lab.run_id", run_id)
    if not OmegaConf.has_resolver("recsys_lab.mkdir"):
        OmegaConf.register_new_resolver("recsys_lab.mkdir", _mkdir)


register_resolvers()


class RunLockedError(RuntimeError):
    """Another process is writing to the same run, pipeline or study folder."""


def is_primary_process() -> bool:
    """False in the extra processes a multi-process launcher starts (DDP ranks > 0)."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("LOCAL_RANK", "NODE_RANK", "RANK"))


@contextlib.contextmanager
def run_lock(folder: str | Path, what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) while the block runs. The other
    ranks of a multi-process run share their primary process's lock.

    Raises:
        RunLockedError: another live process holds it; the message names that process.
    """
    folder = Path(folder)
    if not is_primary_process():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RunLockedError(
                f"The {what} folder {folder} is in use by {holder}. Wait for it to finish, or give this "
                f"{what} its own folder (a different name or output directory)."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def saved_overrides(run_dir: str | Path) -> list[str]:
    """The command-line overrides a run was started with (``<run_dir>/.hydra/overrides.yaml``)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={run_dir}: {path} does not exist, so this is not a run folder written by this "
            "entry point. Give the folder of the run itself (the one holding .hydra/ and checkpoints/)."
        )
    return [str(o) for o in OmegaConf.load(path)]


def resume_argv(argv: Sequence[str], dir_key: str) -> list[str]:
    """Rewrite a command line holding ``resume=<dir>`` into the original run's command line.

    The saved overrides come first, then any new ones given beside ``resume=``, then
    ``<dir_key>=<dir>`` (the entry's output folder: ``hydra.run.dir``, ``pipeline_dir`` or
    ``out_dir``) and ``resume=<dir>`` itself. Without ``resume=`` the command line is returned as is.
    """
    args = list(argv[1:])
    given = [a for a in args if a.startswith("resume=")]
    if not given:
        return list(argv)
    run_dir = str(Path(given[-1].split("=", 1)[1]).expanduser().resolve())
    if any(a in ("-m", "--multirun") for a in args):
        raise ValueError("resume= continues one run; it cannot be combined with --multirun.")
    own = ("resume=", f"{dir_key}=", "hydra.run.dir=")
    saved = [o for o in saved_overrides(run_dir) if not o.startswith(own)]
    new = [a for a in args if not a.startswith(own)]
    return [argv[0], *saved, *new, f"{dir_key}={run_dir}", f"resume={run_dir}"]


def apply_resume_argv(dir_key: str) -> None:
    """:func:`resume_argv` on ``sys.argv``, in place (call before the ``@hydra.main`` function)."""
    sys.argv[:] = resume_argv(sys.argv, dir_key)


# Keys that moved in the redesign (issue 17): the objective's settings now sit under
# ``task.objective.*`` and GRAB's schedule under ``task.schedule.*``.
MOVED_KEYS: dict[str, str] = {
    **{
        f"task.{key}": f"task.objective.{key}"
        for key in (
            "distill",
            "teacher_key",
            "alpha",
            "weight",
            "adapter_hidden",
            "adapter_lr",
            "adapter_weight",
            "rep_weight",
            "distance",
            "pred_weight",
            "event_weight",
            "temperature",
            "num_sampled_negatives",
            "num_in_batch_negatives",
        )
    },
    "task.sts_stage1_fraction": "task.schedule.stage1_fraction",
}


class MovedKeyError(ValueError):
    """An override names a config key that has moved (see :data:`MOVED_KEYS`)."""


def check_moved_keys(overrides: Sequence[str]) -> None:
    """Raise :class:`MovedKeyError` naming the new key for every override (``task.distill=aux``,
    ``+task.alpha=2``, ``~task.weight``) of a key that has moved, instead of Hydra's bare "not in
    struct"."""
    moved = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in MOVED_KEYS:
            moved.append(f"{key} is now {MOVED_KEYS[key]}")
    if moved:
        raise MovedKeyError(
            "These config keys have moved: " + "; ".join(moved) + ". Write the new key on the command "
            "line (e.g. task.objective.distill=aux)."
        )


def route_framework_logs() -> None:
    """Send Lightning's log records through the root logger's handlers (Hydra's console and
    ``<run>/<job>.log``) exactly once. Lightning gives its loggers a handler of their own and stops
    their propagation when it is imported before logging is configured, which leaves the run's log
    file empty; call this inside the Hydra entry, after Hydra has configured logging."""
    if not logging.getLogger().handlers:
        return
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
        "lightning_fabric",
        "pytorch_lightning",
    ):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def concurrent_jobs(cfg: DictConfig) -> int:
    """Processes this run shares the machine with by design: parallel sweep jobs × CPU DDP ranks."""
    jobs = 1
    with contextlib.suppress(ValueError, ImportError):  # ValueError: no Hydra app running
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            n_jobs = OmegaConf.select(hydra_cfg, "launcher.n_jobs")
            if isinstance(n_jobs, int) and n_jobs != 0:
                jobs = available_cpus() if n_jobs < 0 else n_jobs
    trainer = cfg.get("trainer") or {}
    devices = trainer.get("devices")
    if trainer.get("accelerator") == "cpu" and isinstance(devices, int) and devices > 1:
        jobs *= devices
    return jobs


def set_threads(cfg: DictConfig) -> int:
    """Set torch's intra-op threads: ``num_threads`` when given, else :func:`default_threads`
    (and the :class:`~recsys_lab.callbacks.AdaptiveThreads` callback keeps adjusting them)."""
    threads = cfg.get("num_threads")
    if not threads:
        threads = default_threads(concurrent_jobs(cfg))
        log.info(
            "torch threads: %d (available CPUs, shared with concurrent jobs and busy processes)", threads
        )
    torch.set_num_threads(int(threads))
    return int(threads)


def write_config(cfg: DictConfig, output_dir: str | Path) -> Path:
    """Write the resolved ``cfg`` to ``<output_dir>/config.yaml`` (beside the run's outputs: pipeline
    stages have no ``.hydra/`` folder; the after-training runners read it back). Returns the file."""
    path = Path(output_dir) / CONFIG_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


def seed(cfg: DictConfig) -> int:
    """Seed Python, NumPy and torch (and the data workers) with ``cfg.seed`` (0 when absent)."""
    import lightning as L  # the stage module is shared by Lightning-free runners too

    value = int(cfg.get("seed", 0))
    L.seed_everything(value, workers=True, verbose=False)
    return value


def begin(cfg: DictConfig, output_dir: Path) -> None:
    """Start a run in ``output_dir``: write the resolved ``config.yaml``, seed, set threads and
    denormal flushing."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_config(cfg, output_dir)
    seed(cfg)
    set_threads(cfg)
    # Adam's second-moment state of rarely-updated weights decays into denormal floats, which
    # make CPU arithmetic many times slower; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))


# -- atomic saves ----------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (created if missing) to write ``path``'s content to;
    renamed over ``path`` when the block ends without an error, deleted when it raises.

    The temporary name keeps ``path``'s suffix (``.npz``, ``.npy``, ...), so writers that append a
    suffix when it is missing (``np.savez``, ``np.save``) write to exactly this name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (keys sorted, unknown types as ``str``) to ``path`` atomically."""
    with atomic_path(path) as tmp, tmp.open("w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())


def torch_save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def savez_atomic(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez(path, **arrays)``, atomically (``path`` should end in ``.npz``)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


# -- results ---------------------------------------------------------------------------------------
def write_metrics(output_dir: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write a run's ``metrics.json`` (the flat ``<split>/<metric>`` contract of DESIGN.md) into
    ``output_dir``, atomically. Returns the file."""
    path = Path(output_dir) / METRICS_FILE
    write_json_atomic(path, dict(metrics))
    return path


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_metrics_table(metrics: Mapping[str, Any], title: str = "") -> None:
    """Print validation/test metrics beside the oracle's, with a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("metric")
    for col in ("val", "test", "oracle val", "oracle test"):
        table.add_column(col, justify="right")
    for name in ("auc", "logloss", "gauc", "ne", "calibration"):
        row = [metrics.get(f"val/{name}"), metrics.get(f"test/{name}")]
        row += [metrics.get(f"val/oracle_{name}"), metrics.get(f"test/oracle_{name}")]
        if all(v is None for v in row):
            continue
        table.add_row(name, *(_fmt(v) for v in row))
    Console().print(table)
    extra = {
        k: metrics[k]
        for k in ("params/embedding", "params/dense", "flops/per_example", "train/samples_per_s")
        if k in metrics
    }
    Console().print("  ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in extra.items()))


# -- typed settings of a runner --------------------------------------------------------------------
Options = TypeVar("Options")


class OptionsError(ValueError):
    """A runner's settings (``+das.*``, ``+lum_features.*``, ...) are misspelt, missing or mistyped."""


def options(cfg: DictConfig, key: str, schema: type[Options], runner: str = "") -> Options:
    """The runner settings at ``cfg.<key>`` as an instance of the dataclass ``schema``.

    Every key must be a field of ``schema`` with a value of its type, and fields without a default
    must be given; anything else raises :class:`OptionsError` naming the key, the runner and the
    settings it knows. An absent node gives the defaults (or the error for the required fields).
    """
    node = OmegaConf.select(cfg, key, default=None)
    base = OmegaConf.structured(schema)
    names = ", ".join(f.name for f in dataclasses.fields(schema))  # type: ignore[arg-type]
    where = f" of the {runner} stage" if runner else ""
    try:
        merged = OmegaConf.merge(base, node) if node is not None else base
        out = OmegaConf.to_object(merged)
    except ConfigKeyError as err:
        bad = getattr(err, "key", None) or str(err).splitlines()[0]
        raise OptionsError(
            f"{key}.{bad} is not a setting{where}; its settings are: {names}. Check the spelling of "
            f"the `+{key}.*` override."
        ) from None
    except MissingMandatoryValue as err:
        bad = getattr(err, "key", None) or str(err).splitlines()[0]
        raise OptionsError(f"{key}.{bad} is required{where}: add +{key}.{bad}=<value>.") from None
    except ValidationError as err:
        bad = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
        raise OptionsError(
            f"{key}.{bad}{where} has a wrong value: {str(err.msg).splitlines()[0]}. Its settings are: {names}."
        ) from None
    assert isinstance(out, schema)
    return out
