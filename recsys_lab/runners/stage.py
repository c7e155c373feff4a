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
- **Start of a run.** :func:`begin` writes ``config.yaml``, seeds everything and sets the threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from recsys_lab.runners.threads import available_cpus, default_threads

log = logging.getLogger(__name__)

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


def begin(cfg: DictConfig, output_dir: Path) -> None:
    """Start a run in ``output_dir``: write the resolved ``config.yaml``, seed, set threads and
    denormal flushing."""
    import lightning as L  # the stage module is shared by Lightning-free runners too

    output_dir.mkdir(parents=True, exist_ok=True)
    # The resolved config, beside the run's outputs (pipeline stages have no .hydra/ folder).
    (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    set_threads(cfg)
    # Adam's second-moment state of rarely-updated weights decays into denormal floats, which
    # make CPU arithmetic many times slower; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))
