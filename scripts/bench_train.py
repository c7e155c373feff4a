"""Training and inference throughput of the CTR models against this machine's fp32 roofline.

``python scripts/bench_train.py`` (or ``make bench``) prints, per model and driver:

* training and inference samples/s (median over timed windows of ``--steps`` batches each),
* forward matmul FLOPs per example (``model.flops_per_example()``),
* achieved training GFLOP/s and its fraction of the roofline,
* peak RSS of the measuring process, and for the Lightning rows the ratio to the bare loop.

The roofline is measured first, on the same number of threads: the median GFLOP/s of a large
square fp32 ``torch.mm`` (the best of a few sizes). FLOP conventions (also printed under the table):

* training FLOPs/example = 3 × forward matmul FLOPs (forward, plus dgrad and wgrad in backward);
* inference FLOPs/example = 1 × forward matmul FLOPs;
* element-wise ops, embedding lookups and optimiser updates count 0 FLOPs (they cost time).

Each (model, driver) measurement runs in its own subprocess (``--child``), so the peak RSS is that
measurement's and no allocator or thread-pool state leaks between them. Drivers:

* ``lightning``: :class:`~recsys_lab.tasks.ctr.CTRTask` under ``lightning.Trainer.fit`` (no logger,
  checkpoints or progress bar), then ``Trainer.predict`` for inference;
* ``bare``: a plain PyTorch loop doing the same work on the same batches (forward, BCE, backward,
  AdamW on dense weights, SparseAdam on the tables); it also records where each step's time goes.

Shared machines: every timed window also records how much CPU *other* processes used meanwhile
(from /proc/stat, minus this process's own CPU time). Windows where that exceeds ``--max-foreign``
of the machine are left out of the medians (the table says how many were kept); if none is clean,
all are used and the row is marked ``*``.

Data: ``data=synthetic_criteo`` (13 numeric + 26 categorical fields, vocabularies up to 1e5),
embedding dim 16, batch 4096, MLP [400, 400, 400], DCNv2 with 3 cross layers (parallel).
``--profile`` adds a torch.profiler breakdown of a few bare-loop steps per model.

``--contended`` measures something else: the end-to-end training throughput of
``python -m recsys_lab.train`` (the default run, one epoch, ``train/samples_per_s`` of its
``metrics.json``) on an idle machine and beside one competing busy process (a Python busy loop),
for the default thread choice (``num_threads=null``) and for fixed thread counts. The target is a
contended throughput of at least half the idle one with the default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = ("dnn", "dcnv2", "deepfm")
DRIVERS = ("bare", "lightning")
TRAIN_FLOPS_FACTOR = 3  # forward + dgrad + wgrad
PHASES = ("data", "forward", "backward", "dense_opt", "sparse_opt")
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm")

# The field's usual reference settings for Criteo (FuxiCTR / the DCNv2 paper's benchmark setup).
MODEL_OVERRIDES: dict[str, list[str]] = {
    "dnn": ["model.hidden_units=[400,400,400]"],
    "dcnv2": ["model.hidden_units=[400,400,400]", "model.num_cross_layers=3", "model.structure=parallel"],
    "deepfm": ["model.hidden_units=[400,400,400]"],
}

Result = dict[str, Any]
Stamp = tuple[float, float, float]
"""(wall seconds, CPU-seconds used by the whole machine, CPU-seconds used by this process)."""


# ------------------------------------------------------------------------------------------------
# Machine facts and timing helpers
# ------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_NUM_CPUS = os.cpu_count() or 1


def _machine_busy_seconds() -> float:
    """CPU-seconds every CPU has spent busy since boot (user, nice, system, irq, softirq, steal);
    ``nan`` where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def stamp() -> Stamp:
    """Now: wall time, the machine's busy CPU time, and this process's CPU time (all threads)."""
    return time.perf_counter(), _machine_busy_seconds(), time.process_time()


def foreign_load(a: Stamp, b: Stamp) -> float:
    """Fraction of the machine's CPUs that *other* processes kept busy between two stamps."""
    wall = b[0] - a[0]
    other = (b[1] - a[1]) - (b[2] - a[2])
    return max(0.0, other) / (wall * _NUM_CPUS) if wall > 0 else float("nan")


def timed_windows(stamps: list[Stamp], warmup: int, steps: int, samples_per_step: int) -> list[Result]:
    """Samples/s and foreign load of each window of ``steps`` batches after ``warmup`` batches.

    ``stamps[i]`` is taken at the end of batch ``i``; window ``w`` spans the ends of batches
    ``warmup - 1 + w·steps`` and ``warmup - 1 + (w+1)·steps``, so it includes fetching its batches.
    """
    out = []
    start = warmup - 1
    while start + steps < len(stamps):
        a, b = stamps[start], stamps[start + steps]
        out.append({"rate": steps * samples_per_step / (b[0] - a[0]), "foreign": foreign_load(a, b)})
        start += steps
    return out


def clean(windows: list[Result], max_foreign: float) -> tuple[list[Result], bool]:
    """The windows whose foreign load is at most ``max_foreign``; all of them (and False) if none is."""
    kept = [w for w in windows if w["foreign"] <= max_foreign]
    return (kept, True) if kept else (windows, False)


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ------------------------------------------------------------------------------------------------
# Child side: one measurement per process
# ------------------------------------------------------------------------------------------------
@dataclass
class ChildArgs:
    """What a child measures (parsed from the parent's command line)."""

    kind: str  # "gemm", "bare", "lightning" or "profile"
    model: str
    data: str
    rows: int
    batch_size: int
    steps: int
    warmup: int
    repeats: int
    threads: int
    gemm_sizes: list[int]
    overrides: list[str]
    out: Path


def _compose(args: ChildArgs, output_dir: str) -> Any:
    """The composed Hydra config of one benchmark run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from recsys_lab.runners.stage import CONFIG_DIR

    overrides = [
        f"data={args.data}",
        f"model={args.model}",
        "embedding=full",
        "task=ctr",
        "embedding.dim=16",
        f"data.batch_size={args.batch_size}",
        f"data.num_train={args.rows}",
        f"data.num_val={args.batch_size}",
        f"data.num_test={args.batch_size}",
        *MODEL_OVERRIDES.get(args.model, []),
        *args.overrides,
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg


def measure_gemm(sizes: list[int], reps: int) -> Result:
    """GFLOP/s and foreign load of every timed fp32 ``torch.mm`` of square matrices, per size."""
    import torch

    per_size: dict[str, list[Result]] = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        for _ in range(2):  # warm up MKL's buffers and the thread pool
            torch.mm(a, b, out=out)
        runs = []
        for _ in range(reps):
            s0 = stamp()
            torch.mm(a, b, out=out)
            s1 = stamp()
            runs.append({"rate": 2 * n**3 / (s1[0] - s0[0]) / 1e9, "foreign": foreign_load(s0, s1)})
        per_size[str(n)] = runs
    return {"gemm": per_size}


def _count_flops(model: Any, batch: Any) -> Result:
    """Forward and forward+backward matmul FLOPs per example as torch.utils.flop_counter counts
    them: a check of ``flops_per_example()`` and of the 3× training convention."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    small = batch.select(torch.arange(min(len(batch), 256)))
    n = len(small)
    try:
        with FlopCounterMode(display=False) as fwd, torch.no_grad():
            model(small)
        with FlopCounterMode(display=False) as train:
            F.binary_cross_entropy_with_logits(model(small), small.labels["click"]).backward()
        model.zero_grad(set_to_none=True)
        return {"counted_fwd": fwd.get_total_flops() / n, "counted_train": train.get_total_flops() / n}
    except Exception as exc:  # the counter is a check, never a reason to lose the measurement
        print(f"[bench] FLOP counter failed: {exc!r}", file=sys.stderr)
        return {"counted_fwd": None, "counted_train": None}


def _batches(loader: Any) -> Iterator[Any]:
    """Batches of ``loader``, epoch after epoch."""
    while True:
        yield from loader


def _optimizers(cfg: Any, model: Any) -> tuple[Any, Any]:
    """The task config's dense and sparse optimisers, built as CTRTask builds them."""
    from hydra.utils import instantiate

    dense = instantiate(cfg.task.optimizer)(model.dense_parameters())
    sparse = instantiate(cfg.task.sparse_optimizer)(model.embedding_parameters())
    return dense, sparse


def run_bare(args: ChildArgs, cfg: Any, datamodule: Any, model: Any) -> Result:
    """The bare PyTorch loop: same model, batches and optimisers as CTRTask, no Lightning.

    Also records, per step, the time of each phase (data, forward, backward, the two optimiser
    steps) and the foreign load, so the parent can break a clean step down.
    """
    import torch
    import torch.nn.functional as F

    dense_opt, sparse_opt = _optimizers(cfg, model)
    label = cfg.task.label
    total = args.warmup + args.steps * args.repeats
    stamps: list[Stamp] = []
    steps: list[Result] = []
    model.train()
    batches = _batches(datamodule.train_dataloader())
    prev = stamp()
    for _ in range(total):
        batch = next(batches)
        t_data = time.perf_counter()
        loss = F.binary_cross_entropy_with_logits(model(batch), batch.labels[label])
        t_fwd = time.perf_counter()
        dense_opt.zero_grad(set_to_none=True)
        sparse_opt.zero_grad(set_to_none=True)
        loss.backward()
        t_bwd = time.perf_counter()
        dense_opt.step()
        t_dense = time.perf_counter()
        sparse_opt.step()
        end = stamp()
        times = (t_data - prev[0], t_fwd - t_data, t_bwd - t_fwd, t_dense - t_bwd, end[0] - t_dense)
        steps.append({"ms": dict(zip(PHASES, (1e3 * t for t in times))), "foreign": foreign_load(prev, end)})
        stamps.append(end)
        prev = end
    train = timed_windows(stamps, args.warmup, args.steps, args.batch_size)

    model.eval()
    stamps = []
    batches = _batches(datamodule.train_dataloader())
    with torch.inference_mode():
        for _ in range(total):
            batch = next(batches)
            torch.sigmoid(model(batch))  # what CTRTask.forward (and so predict) computes
            stamps.append(stamp())
    infer = timed_windows(stamps, args.warmup, args.steps, args.batch_size)
    return {"train": train, "infer": infer, "steps": steps[args.warmup :]}


def run_lightning(args: ChildArgs, cfg: Any, datamodule: Any, task: Any) -> Result:
    """CTRTask under ``Trainer.fit`` then ``Trainer.predict``, timed at batch ends by a callback."""
    import lightning as L
    from hydra.utils import instantiate

    class BatchClock(L.Callback):
        """Stamps the end of every training and prediction batch."""

        def __init__(self) -> None:
            self.train: list[Stamp] = []
            self.predict: list[Stamp] = []

        def on_train_batch_end(self, *_: Any) -> None:
            self.train.append(stamp())

        def on_predict_batch_end(self, *_: Any) -> None:
            self.predict.append(stamp())

    total = args.warmup + args.steps * args.repeats
    clock = BatchClock()
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=-1,
        max_steps=total,
        limit_train_batches=None,
        limit_val_batches=0,
        limit_predict_batches=total,
    )
    trainer.fit(task, train_dataloaders=datamodule.train_dataloader())
    trainer.predict(task, dataloaders=datamodule.train_dataloader(), return_predictions=False)
    return {
        "train": timed_windows(clock.train, args.warmup, args.steps, args.batch_size),
        "infer": timed_windows(clock.predict, args.warmup, args.steps, args.batch_size),
    }


def _phase_of(event: Any) -> str:
    """The outermost ``bench/<phase>`` range enclosing a profiler event (or ``other``)."""
    phase = "other"
    node = event
    while node is not None:
        if node.name.startswith("bench/"):
            phase = node.name.removeprefix("bench/")
        node = node.cpu_parent
    return phase


def run_profile(args: ChildArgs, cfg: Any, datamodule: Any, model: Any) -> Result:
    """torch.profiler over ``--steps`` bare-loop steps: self CPU ms per step by phase (GEMM or
    not) and the most expensive ops."""
    import torch.nn.functional as F
    from torch.autograd.profiler import record_function
    from torch.profiler import ProfilerActivity, profile

    dense_opt, sparse_opt = _optimizers(cfg, model)
    label = cfg.task.label
    batches = _batches(datamodule.train_dataloader())

    def step() -> None:
        with record_function("bench/data"):
            batch = next(batches)
        with record_function("bench/forward"):
            loss = F.binary_cross_entropy_with_logits(model(batch), batch.labels[label])
        with record_function("bench/backward"):
            dense_opt.zero_grad(set_to_none=True)
            sparse_opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("bench/dense_opt"):
            dense_opt.step()
        with record_function("bench/sparse_opt"):
            sparse_opt.step()

    model.train()
    for _ in range(args.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        s0 = stamp()
        for _ in range(args.steps):
            step()
        s1 = stamp()
    per_phase: dict[str, dict[str, float]] = {}
    per_op: dict[str, float] = {}
    for ev in prof.events():
        if ev.name.startswith(("bench/", "Optimizer.")):
            continue
        self_ms = ev.self_cpu_time_total / 1e3 / args.steps
        phase = per_phase.setdefault(_phase_of(ev), {"gemm": 0.0, "other": 0.0})
        phase["gemm" if ev.name in GEMM_OPS else "other"] += self_ms
        per_op[ev.name] = per_op.get(ev.name, 0.0) + self_ms
    return {
        "profile_step_ms": 1e3 * (s1[0] - s0[0]) / args.steps,
        "profile_foreign": foreign_load(s0, s1),
        "profile_phases": per_phase,
        "profile_top_ops": sorted(per_op.items(), key=lambda kv: -kv[1])[:15],
    }


def child_main(args: ChildArgs) -> None:
    """Run one measurement and write its JSON result to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    result: Result = {"kind": args.kind, "model": args.model, "threads": torch.get_num_threads()}
    if args.kind == "gemm":
        result.update(measure_gemm(args.gemm_sizes, reps=max(5, args.repeats)))
    else:
        import lightning as L

        from recsys_lab.runners.train import build

        with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
            cfg = _compose(args, tmp)
            # As recsys_lab.runners.train.run sets them up.
            L.seed_everything(cfg.seed, workers=True, verbose=False)
            torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))
            t0 = time.perf_counter()
            datamodule, model, task = build(cfg)
            result["data_setup_s"] = time.perf_counter() - t0
            result["rss_after_setup_mb"] = peak_rss_mb()
            result["flops_fwd"] = int(model.flops_per_example())
            result["params_dense"] = model.num_params(embedding=False, dense=True)
            result["params_embedding"] = model.num_params(embedding=True, dense=False)
            if args.kind == "bare":
                result.update(_count_flops(model, next(iter(datamodule.train_dataloader()))))
                result.update(run_bare(args, cfg, datamodule, model))
            elif args.kind == "lightning":
                result.update(run_lightning(args, cfg, datamodule, task))
            elif args.kind == "profile":
                result.update(run_profile(args, cfg, datamodule, model))
            else:
                raise ValueError(f"unknown child kind {args.kind!r}")
    result["peak_rss_mb"] = peak_rss_mb()
    args.out.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------
# Parent side: schedule children, aggregate, print
# ------------------------------------------------------------------------------------------------
def run_child(kind: str, model: str, opts: argparse.Namespace, gemm_sizes: list[int]) -> Result:
    """Run one measurement in a fresh interpreter (threads pinned by env and torch); its JSON."""
    with tempfile.TemporaryDirectory(prefix="bench_child_") as tmp:
        out = Path(tmp) / "result.json"
        flags = {
            "--child": kind,
            "--model": model,
            "--data": opts.data,
            "--rows": opts.rows,
            "--batch-size": opts.batch_size,
            "--steps": opts.steps,
            "--warmup": opts.warmup,
            "--repeats": opts.repeats,
            "--threads": opts.threads,
            "--gemm-sizes": ",".join(map(str, gemm_sizes)),
            "--child-out": out,
        }
        cmd = [sys.executable, str(Path(__file__).resolve())]
        cmd += [str(x) for kv in flags.items() for x in kv]
        cmd += [f"--override={o}" for o in opts.override]
        env = dict(os.environ)
        env.update(
            OMP_NUM_THREADS=str(opts.threads),
            MKL_NUM_THREADS=str(opts.threads),
            WANDB_MODE="offline",
            HYDRA_FULL_ERROR="1",
        )
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            sys.stderr.write(proc.stdout + proc.stderr)
            raise RuntimeError(f"benchmark child {kind}/{model} failed with exit code {proc.returncode}")
        return json.loads(out.read_text())


def roofline(gemm_runs: list[Result], max_foreign: float) -> tuple[dict[str, float], float]:
    """Median clean GFLOP/s per matrix size over every round, and the best of them (the roofline)."""
    sizes = gemm_runs[0]["gemm"].keys()
    per_size = {}
    for n in sizes:
        kept, _ = clean([r for g in gemm_runs for r in g["gemm"][n]], max_foreign)
        per_size[n] = median_or_nan([r["rate"] for r in kept])
    return per_size, max(per_size.values())


def summarise(runs: list[Result], peak: float, max_foreign: float) -> list[Result]:
    """One row per (model, driver): medians over the clean windows of every round."""
    rows: list[Result] = []
    keys = sorted({(r["model"], r["kind"]) for r in runs}, key=lambda k: (MODELS.index(k[0]), k[1]))
    for model, driver in keys:
        mine = [r for r in runs if (r["model"], r["kind"]) == (model, driver)]
        train_all = [w for r in mine for w in r["train"]]
        infer_all = [w for r in mine for w in r["infer"]]
        train, train_clean = clean(train_all, max_foreign)
        infer, infer_clean = clean(infer_all, max_foreign)
        fwd = mine[0]["flops_fwd"]
        train_rate = median_or_nan([w["rate"] for w in train])
        infer_rate = median_or_nan([w["rate"] for w in infer])
        row: Result = {
            "model": model,
            "driver": driver,
            "train_samples_per_s": train_rate,
            "infer_samples_per_s": infer_rate,
            "train_windows_kept": f"{len(train) if train_clean else 0}/{len(train_all)}",
            "infer_windows_kept": f"{len(infer) if infer_clean else 0}/{len(infer_all)}",
            "all_clean": train_clean and infer_clean,
            "flops_fwd_per_example": fwd,
            "train_gflops": TRAIN_FLOPS_FACTOR * fwd * train_rate / 1e9,
            "infer_gflops": fwd * infer_rate / 1e9,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            "rss_after_setup_mb": max(r["rss_after_setup_mb"] for r in mine),
            "data_setup_s": median_or_nan([r["data_setup_s"] for r in mine]),
            "params_dense": mine[0]["params_dense"],
            "params_embedding": mine[0]["params_embedding"],
        }
        per_round = [_clean_median(r["train"], max_foreign) for r in mine]
        row["train_per_round"] = per_round
        row["train_roofline_frac"] = row["train_gflops"] / peak
        row["infer_roofline_frac"] = row["infer_gflops"] / peak
        for key in ("counted_fwd", "counted_train"):
            if key in mine[0]:
                row[key] = mine[0][key]
        if driver == "bare":
            steps, _ = clean([s for r in mine for s in r["steps"]], max_foreign)
            row["breakdown_ms"] = {p: statistics.median(s["ms"][p] for s in steps) for p in PHASES}
        rows.append(row)
    for row in rows:
        if row["driver"] != "lightning":
            continue
        # Lightning ÷ bare within each round (the two ran back to back), then the median.
        ratios = {"train": [], "infer": []}
        for rnd in sorted({r["round"] for r in runs}):
            pair = {r["kind"]: r for r in runs if r["model"] == row["model"] and r["round"] == rnd}
            if "bare" in pair and "lightning" in pair:
                for split in ratios:
                    rates = {k: _clean_median(pair[k][split], max_foreign) for k in ("bare", "lightning")}
                    ratios[split].append(rates["lightning"] / rates["bare"])
        if ratios["train"]:
            row["vs_bare"] = statistics.median(ratios["train"])
            row["vs_bare_per_round"] = ratios["train"]
            row["infer_vs_bare"] = statistics.median(ratios["infer"])
    return rows


def _clean_median(windows: list[Result], max_foreign: float) -> float:
    kept, _ = clean(windows, max_foreign)
    return median_or_nan([w["rate"] for w in kept])


TABLE_COLUMNS = (
    "model",
    "driver",
    "train samples/s",
    "infer samples/s",
    "fwd MFLOP/ex",
    "train GFLOP/s",
    "train % roofline",
    "infer % roofline",
    "peak RSS MB",
    "vs bare",
    "rounds: train min–max",
    "clean windows",
)


def table_rows(rows: list[Result]) -> list[list[str]]:
    """The printed cells of the results table (see :data:`TABLE_COLUMNS`)."""
    out = []
    for r in rows:
        out.append(
            [
                r["model"],
                r["driver"],
                f"{r['train_samples_per_s']:,.0f}",
                f"{r['infer_samples_per_s']:,.0f}",
                f"{r['flops_fwd_per_example'] / 1e6:.3f}",
                f"{r['train_gflops']:.1f}",
                f"{100 * r['train_roofline_frac']:.1f}%",
                f"{100 * r['infer_roofline_frac']:.1f}%",
                f"{r['peak_rss_mb']:,.0f}",
                f"{r['vs_bare']:.3f}" if "vs_bare" in r else "",
                f"{min(r['train_per_round']):,.0f}–{max(r['train_per_round']):,.0f}",
                f"{r['train_windows_kept']}" + ("" if r["all_clean"] else " *"),
            ]
        )
    return out


def conventions(peak: float, opts: argparse.Namespace) -> str:
    return (
        "train GFLOP/s = 3 × fwd FLOP/ex × train samples/s (forward + dgrad + wgrad); infer = 1 × fwd. "
        "FLOPs are matmul FLOPs only (2·m·n·k); element-wise ops, embedding lookups and optimiser "
        f"updates count 0. % roofline = GFLOP/s ÷ {peak:.1f} GFLOP/s (fp32 torch.mm, {opts.threads} "
        "threads). vs bare = median over rounds of Lightning ÷ bare-loop train samples/s (run back to back). "
        "Clean windows: "
        f"timed windows with ≤ {100 * opts.max_foreign:.0f}% of the CPUs used by other processes "
        "(train; * = none was, all used)."
    )


def print_report(rows: list[Result], opts: argparse.Namespace, machine: Result) -> None:
    """The results table, the bare loop's time per phase, the FLOP-counter check, and the
    conventions; ``--markdown`` prints the results table as Markdown too."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    peak = machine["roofline_gflops"]
    sizes = ", ".join(f"n={n}: {g:.1f}" for n, g in machine["gemm_gflops_median"].items())
    console.print(
        f"[bold]Machine[/]: {machine['cpu']} · {machine['cores']} cores · {opts.threads} threads · "
        f"torch {machine['torch']} · load avg at start {machine['loadavg_start']:.2f}"
    )
    console.print(f"[bold]Roofline[/]: fp32 torch.mm median GFLOP/s {sizes} → {peak:.1f} GFLOP/s")
    if opts.override:
        console.print(f"[bold]Overrides[/]: {' '.join(opts.override)}")
    n_windows = opts.repeats * opts.rounds
    title = (
        f"{opts.data}, batch {opts.batch_size}, embedding dim 16: median over {n_windows} windows × "
        f"{opts.steps} steps"
    )
    table = Table(title=title, caption=conventions(peak, opts))
    for col in TABLE_COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "driver") else "right")
    for cells in table_rows(rows):
        table.add_row(*cells)
    console.print(table)

    bare_rows = [r for r in rows if "breakdown_ms" in r]
    if bare_rows:
        bd = Table(title="Bare loop: median ms per training step by phase (clean steps)")
        bd.add_column("model")
        for p in (*PHASES, "total", "matmuls at roofline"):
            bd.add_column(p, justify="right")
        for r in bare_rows:
            b = r["breakdown_ms"]
            ideal = 1e3 * TRAIN_FLOPS_FACTOR * r["flops_fwd_per_example"] * opts.batch_size / (peak * 1e9)
            bd.add_row(r["model"], *(f"{b[p]:.1f}" for p in PHASES), f"{sum(b.values()):.1f}", f"{ideal:.1f}")
        console.print(bd)
        checks = [
            f"{r['model']} fwd {r['counted_fwd'] / 1e6:.3f} MFLOP/ex, train/fwd = "
            f"{r['counted_train'] / r['counted_fwd']:.2f}"
            for r in bare_rows
            if r.get("counted_fwd") and r.get("counted_train")
        ]
        if checks:
            console.print("torch.utils.flop_counter check: " + "; ".join(checks))
    if opts.markdown:
        lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
        print("\n".join(lines))


def print_profiles(profiles: list[Result]) -> None:
    """The torch.profiler breakdown: self CPU ms per step by phase (GEMM vs other) and top ops."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 180)
    for prof in profiles:
        t = Table(
            title=f"{prof['model']}: torch.profiler self CPU ms per step (profiled step "
            f"{prof['profile_step_ms']:.1f} ms wall, other processes {100 * prof['profile_foreign']:.0f}% CPU)"
        )
        for col in ("phase", "GEMM", "other", "total"):
            t.add_column(col, justify="left" if col == "phase" else "right")
        for phase in (*PHASES, "other"):
            v = prof["profile_phases"].get(phase)
            if v:
                t.add_row(phase, f"{v['gemm']:.1f}", f"{v['other']:.1f}", f"{v['gemm'] + v['other']:.1f}")
        console.print(t)
        ops = Table(title=f"{prof['model']}: top ops by self CPU ms per step")
        ops.add_column("op")
        ops.add_column("ms", justify="right")
        for name, ms in prof["profile_top_ops"]:
            ops.add_row(name, f"{ms:.2f}")
        console.print(ops)


def parent_main(opts: argparse.Namespace) -> None:
    """Measure the roofline, then every (model, driver) in its own process, round after round."""
    import torch

    models = [m.strip() for m in opts.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_OVERRIDES]
    if unknown:
        sys.exit(f"--models: unknown model(s) {unknown}; choose from {list(MODEL_OVERRIDES)}")
    gemm_sizes = [1024, 2048] if opts.quick else [2048, 3072, 4096]
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"[bench] load average is {load:.2f}: windows disturbed by other processes are left out "
            f"(> {100 * opts.max_foreign:.0f}% foreign CPU).",
            file=sys.stderr,
        )
    machine: Result = {
        "cpu": cpu_model(),
        "cores": available_cores(),
        "threads": opts.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_start": load,
    }
    runs: list[Result] = []
    gemm: list[Result] = []
    t0 = time.perf_counter()
    for rnd in range(1, opts.rounds + 1):
        gemm.append(run_child("gemm", "-", opts, gemm_sizes))
        _, peak = roofline(gemm[-1:], opts.max_foreign)
        print(f"[bench] round {rnd}: roofline {peak:.1f} GFLOP/s", file=sys.stderr)
        for model in models:
            # Alternate which driver goes first, so a slow spell of the host favours neither.
            for driver in DRIVERS if rnd % 2 else DRIVERS[::-1]:
                res = run_child(driver, model, opts, gemm_sizes)
                res["round"] = rnd
                runs.append(res)
                rates = [w["rate"] for w in res["train"]]
                foreign = max(w["foreign"] for w in res["train"]) if res["train"] else float("nan")
                print(
                    f"[bench] round {rnd}: {model}/{driver}: train {median_or_nan(rates):,.0f} samples/s "
                    f"(max foreign load {100 * foreign:.0f}%, {time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                )
    machine["gemm_gflops_median"], machine["roofline_gflops"] = roofline(gemm, opts.max_foreign)
    rows = summarise(runs, machine["roofline_gflops"], opts.max_foreign)
    print_report(rows, opts, machine)
    profiles = [run_child("profile", m, opts, gemm_sizes) for m in models] if opts.profile else []
    if profiles:
        print_profiles(profiles)
    if opts.json:
        payload = {"machine": machine, "options": vars(opts), "rows": rows, "runs": runs, "gemm": gemm}
        payload["profiles"] = profiles
        Path(opts.json).write_text(json.dumps(payload, indent=2))
        print(f"[bench] wrote {opts.json}", file=sys.stderr)


BUSY_LOOP = "import time\nend = time.time() + 3600\nwhile time.time() < end: pass\n"


def _train_rate(threads: str, overrides: list[str], workdir: Path) -> float:
    """``train/samples_per_s`` of one default training run (one epoch) with ``num_threads=threads``."""
    out = workdir / f"run-{time.time_ns()}"
    cmd = [
        sys.executable, "-m", "recsys_lab.train", f"hydra.run.dir={out}", "trainer.max_epochs=1",
        "logger=none", "test=false", "print_table=false", "callbacks.rich_progress_bar=null", *overrides,
    ]  # fmt: skip
    if threads != "default":
        cmd.append(f"num_threads={threads}")
    env = {**os.environ, "WANDB_MODE": "offline"}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return float(json.loads((out / "metrics.json").read_text())["train/samples_per_s"])


def contended_main(opts: argparse.Namespace) -> None:
    """Idle vs beside one busy process, per thread setting, interleaved over ``--rounds``."""
    settings = ["default", *(str(t) for t in sorted({1, available_cores()}))]
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, opts.rounds + 1):
            for load in ("idle", "contended"):
                busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "contended" else None
                try:
                    time.sleep(1.0 if busy else 0.0)
                    for setting in settings:
                        rate = _train_rate(setting, list(opts.override), Path(tmp))
                        rates.setdefault((setting, load), []).append(rate)
                        print(
                            f"[bench] round {rnd}: {load}, threads={setting}: {rate:,.0f} samples/s",
                            file=sys.stderr,
                        )
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
    print(
        f"\nTraining throughput of `python -m recsys_lab.train` (1 epoch, default data and model), "
        f"{available_cores()} CPUs, median of {opts.rounds} round(s); contended = beside one busy process.\n"
    )
    print("| num_threads | idle samples/s | contended samples/s | contended / idle |")
    print("|---|---|---|---|")
    for setting in settings:
        idle = statistics.median(rates[(setting, "idle")])
        busy_rate = statistics.median(rates[(setting, "contended")])
        print(f"| {setting} | {idle:,.0f} | {busy_rate:,.0f} | {busy_rate / idle:.2f} |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: dnn,dcnv2,deepfm")
    p.add_argument("--data", default="synthetic_criteo", help="data config group option")
    p.add_argument(
        "--rows", type=int, default=None, help="training rows (default: one epoch covers every step)"
    )
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10, help="batches per timed window")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches before the first window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows per measurement")
    p.add_argument("--rounds", type=int, default=1, help="run every measurement this many times, interleaved")
    p.add_argument("--threads", type=int, default=available_cores(), help="torch intra-op threads")
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.1,
        help="leave out windows where other processes used more than this fraction of the CPUs",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for every run (repeatable), e.g. --override embedding=hashed",
    )
    p.add_argument("--profile", action="store_true", help="also profile --steps bare-loop steps per model")
    p.add_argument("--quick", action="store_true", help="a fast sanity run (few small steps)")
    p.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    p.add_argument(
        "--contended",
        action="store_true",
        help="end-to-end training samples/s idle and beside one busy process, per thread setting",
    )
    # Internal: the parent runs itself with these to measure one thing in a fresh process.
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default="-", help=argparse.SUPPRESS)
    p.add_argument("--gemm-sizes", default="2048,3072,4096", help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.steps, opts.warmup, opts.repeats = min(opts.steps, 3), min(opts.warmup, 2), min(opts.repeats, 2)
    if min(opts.warmup, opts.steps, opts.repeats, opts.rounds, opts.threads, opts.batch_size) < 1:
        p.error("--warmup, --steps, --repeats, --rounds, --threads and --batch-size must be >= 1")
    if opts.rows is None:
        opts.rows = (opts.warmup + opts.steps * opts.repeats) * opts.batch_size
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    if opts.child:
        child_main(
            ChildArgs(
                kind=opts.child,
                model=opts.model,
                data=opts.data,
                rows=opts.rows,
                batch_size=opts.batch_size,
                steps=opts.steps,
                warmup=opts.warmup,
                repeats=opts.repeats,
                threads=opts.threads,
                gemm_sizes=[int(n) for n in opts.gemm_sizes.split(",")],
                overrides=list(opts.override),
                out=Path(opts.child_out),
            )
        )
    elif opts.contended:
        contended_main(opts)
    else:
        parent_main(opts)


if __name__ == "__main__":
    main()
