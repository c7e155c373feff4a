"""Serving latency: forward p50/p99 and throughput of the exported serving path, per model.

For each model (the configurations of docs/results/mixers.md, built from the config with random
weights — latency does not depend on training), the serving module of ``recsys-export``
(:class:`recsys_lab.runners.export.ServingModel`: ``(dense, sparse) -> prob``, APG merged) is
timed on real synthetic rows at batch sizes 1, 64 and 512 with four backends:

- ``eager``: the module under ``torch.inference_mode``;
- ``compile``: ``torch.compile`` of the same (default inductor mode; compile time excluded);
- ``export``: the ``torch.export`` program's module (what ``format=torch_export`` writes);
- ``onnxrt``: ONNX Runtime (CPU provider) on the ``format=onnx`` file;

with one thread and with every core (torch intra-op threads / ORT ``intra_op_num_threads``).
Each cell is timed call by call for ``--seconds`` after a warm-up (at least ``--min-iters`` calls).

The machine may be shared: the script measures what other processes used while it ran (busy
CPU time from ``/proc/stat`` minus this process's own, per wall second) and prints it.

    python scripts/bench_serve.py                                   # every model, ~10 min on 2 busy cores
    python scripts/bench_serve.py --models dnn,dnn_apg_self --seconds 0.5
    python scripts/bench_serve.py --json runs/bench_serve.json      # raw numbers too
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from recsys_lab.runners.export import ServingModel, export_onnx, export_program, serving_model  # noqa: E402
from recsys_lab.runners.train import CONFIG_DIR, build  # noqa: E402

MIXER: list[str] = []  # widths: matched_mixer() (the width search of scripts/results_mixers.py)
APG = "{condition:%s,rank:16,overparam:64,hypernet_hidden:32,group_fields:[user]}"
# name -> (label, overrides): the 1x configurations of docs/results/mixers.md on data=synthetic.
MODELS: dict[str, tuple[str, list[str]]] = {
    "dcnv2": (
        "DCNv2 (reference)",
        ["model=dcnv2", "model.num_cross_layers=1", "model.hidden_units=[128,64]"],
    ),
    "rankmixer": ("RankMixer", ["model=rankmixer", *MIXER]),
    "unimixer": ("UniMixer", ["model=unimixer", *MIXER]),
    "unimixer_lite": ("UniMixing-Lite", ["model=unimixer_lite", *MIXER]),
    "fm_block": ("FM block", ["model=fm_block", *MIXER]),
    "dnn": ("DNN (static)", ["model=dnn", "model.hidden_units=[128,64]"]),
    "dnn_apg_self": (
        "DNN + APG (self)",
        ["model=dnn", "model.hidden_units=[128,64]", f"model.apg={APG % 'self'}"],
    ),
    "dnn_apg_group": (
        "DNN + APG (group: user)",
        ["model=dnn", "model.hidden_units=[128,64]", f"model.apg={APG % 'group'}"],
    ),
}
BACKENDS = ("eager", "compile", "export", "onnxrt")


# -- contention ------------------------------------------------------------------------------------


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Contention:
    """What other processes used while a block ran: their busy cores (average) and the load."""

    def __enter__(self) -> Contention:
        self.t0, self.cpu0, (self.busy0, _) = time.perf_counter(), _own_cpu_s(), _busy_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        busy = (_busy_jiffies()[0] - self.busy0) / os.sysconf("SC_CLK_TCK")
        self.own_cores = (_own_cpu_s() - self.cpu0) / wall
        self.other_cores = max(busy / wall - self.own_cores, 0.0)
        self.wall = wall
        self.loadavg = os.getloadavg()[0]


# -- timing ----------------------------------------------------------------------------------------


def time_calls(
    fn: Callable[[], Any], seconds: float, min_iters: int, max_seconds: float, warmup: int = 3
) -> np.ndarray:
    """Latencies (s) of successive calls of ``fn`` for ``seconds`` and at least ``min_iters`` calls,
    but never past ``max_seconds`` (then at least 3 calls)."""
    for _ in range(warmup):
        fn()
    out: list[int] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t)
        elapsed = time.perf_counter() - start
        if (len(out) >= min_iters and elapsed >= seconds) or (len(out) >= 3 and elapsed >= max_seconds):
            break
    return np.asarray(out, dtype=np.float64) * 1e-9


def matched_mixer(family: str) -> list[str]:
    """The overrides of docs/results/mixers.md's 1x ``family`` on data=synthetic: T = 4, 2 blocks,
    width D and FFN hidden matched to the DCNv2 reference's dense parameters by the same search."""
    sys.path.insert(0, str(REPO / "scripts"))
    import results_mixers as rm

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        target = rm._dense_params("dcnv2", rm._schema("synthetic"), rm.DCN_REF)
        dim, hidden, _ = rm.search_width(family, "synthetic", target)
    return rm.mixer_overrides(dim, hidden)


def build_model(name: str, test_rows: int) -> tuple[ServingModel, Any, int, int]:
    """The serving module of ``name``, a real batch of ``test_rows`` rows, dense and embedding params."""
    _, overrides = MODELS[name]
    if name in ("rankmixer", "unimixer", "unimixer_lite", "fm_block"):
        overrides = [*overrides, *matched_mixer(name)]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "data=synthetic",
                "data.num_train=64",
                "data.num_val=64",
                f"data.num_test={test_rows}",
                f"data.eval_batch_size={test_rows}",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="bench_serve_")
    data, model, _ = build(cfg)
    batch = next(iter(data.test_dataloader()))
    dense_params = model.num_params(embedding=False, dense=True)
    flops = model.flops_per_example()
    return serving_model(model), batch, dense_params, flops


def bench_model(name: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import onnxruntime as ort

    wrapper, batch, dense_params, flops = build_model(name, max(args.batch_sizes))
    inputs = {b: wrapper.inputs(batch.select(torch.arange(b))) for b in args.batch_sizes}
    example = inputs[max(args.batch_sizes)]
    result: dict[str, Any] = {
        "model": name,
        "params/dense": dense_params,
        "flops/per_example": flops,
        "cells": [],
    }
    runners: dict[str, Callable[[tuple], Callable[[], Any]]] = {}
    started = time.perf_counter()
    if "eager" in args.backends:
        runners["eager"] = lambda x: lambda: wrapper(*x)
    if "compile" in args.backends:
        compiled = torch.compile(wrapper)
        runners["compile"] = lambda x: lambda: compiled(*x)
    if "export" in args.backends:
        program = export_program(wrapper, example).module()
        runners["export"] = lambda x: lambda: program(*x)
    onnx_path = tmp / f"{name}.onnx"
    if "onnxrt" in args.backends:
        export_onnx(wrapper, example, onnx_path)
    result["prepare_s"] = time.perf_counter() - started
    for threads in args.threads:
        torch.set_num_threads(threads)
        sessions = {}
        if "onnxrt" in args.backends:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            sessions["onnxrt"] = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        for backend in args.backends:
            for b in args.batch_sizes:
                x = inputs[b]
                if backend == "onnxrt":
                    feed = {n: t.numpy() for n, t in zip(wrapper.input_names, x)}
                    session = sessions["onnxrt"]

                    def call(session: Any = session, feed: dict = feed) -> Any:
                        return session.run(None, feed)
                else:
                    call = runners[backend](x)
                with torch.inference_mode():
                    lat = time_calls(call, args.seconds, args.min_iters, args.max_seconds)
                result["cells"].append(
                    {
                        "backend": backend,
                        "threads": threads,
                        "batch": b,
                        "p50_ms": float(np.percentile(lat, 50) * 1e3),
                        "p99_ms": float(np.percentile(lat, 99) * 1e3),
                        "rows_per_s": float(b * len(lat) / lat.sum()),
                        "calls": len(lat),
                    }
                )
    return result


def _k(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = []
    for r in results:
        label = MODELS[r["model"]][0]
        lines += [
            f"#### {label} — {r['params/dense']:,} dense params, {r['flops/per_example']:,} FLOPs/example",
            "",
            "| backend | threads | "
            + " | ".join(f"B={b}: p50 / p99 ms, rows/s" for b in args.batch_sizes)
            + " |",
            "|---|---|" + "---|" * len(args.batch_sizes),
        ]
        for backend in args.backends:
            for threads in args.threads:
                cells = {
                    c["batch"]: c for c in r["cells"] if c["backend"] == backend and c["threads"] == threads
                }
                row = [
                    f"{cells[b]['p50_ms']:.3f} / {cells[b]['p99_ms']:.3f}, {_k(cells[b]['rows_per_s'])}"
                    for b in args.batch_sizes
                ]
                lines.append(f"| {backend} | {threads} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def mixing_share(name: str, batch: int = 1, calls: int = 50) -> str:
    """One thread: the eager forward of ``name`` at ``batch`` rows against rebuilding its mixers'
    parameter-only matrices (``mixing_matrices()``: UniMixer's G and W_i) alone."""
    torch.set_num_threads(1)
    wrapper, rows, _, _ = build_model(name, max(batch, 64))
    mixers = [m for m in wrapper.modules() if callable(getattr(m, "mixing_matrices", None))]
    x = wrapper.inputs(rows.select(torch.arange(batch)))
    with torch.inference_mode():
        full = np.median(time_calls(lambda: wrapper(*x), 0.0, calls, 60.0))
        part = np.median(time_calls(lambda: [m.mixing_matrices() for m in mixers], 0.0, calls, 60.0))
    return (
        f"{MODELS[name][0]}, B={batch}, 1 thread: forward p50 {full * 1e3:.2f} ms; rebuilding the "
        f"mixing matrices of its {len(mixers)} mixers alone p50 {part * 1e3:.2f} ms ({100 * part / full:.0f}%)"
    )


SERVING_BEGIN = "<!-- serving-cost: generated by scripts/bench_serve.py --write-docs -->"
SERVING_END = "<!-- /serving-cost -->"
MIXERS_PAGE = REPO / "docs" / "results" / "mixers.md"
FRAGMENT = REPO / "docs" / "results" / "mixers_serving.md"


def _cell(r: dict[str, Any], backend: str, batch: int, threads: int = 1) -> dict[str, Any] | None:
    return next(
        (
            c
            for c in r["cells"]
            if c["backend"] == backend and c["batch"] == batch and c["threads"] == threads
        ),
        None,
    )


def serving_fragment(results: list[dict[str, Any]], header: str, command: str) -> str:
    """The "Serving cost" section of docs/results/mixers.md (mixers and APG, one thread)."""
    by = {r["model"]: r for r in results}
    cols = [("eager", 1), ("eager", 512), ("export", 1), ("onnxrt", 1), ("onnxrt", 512)]

    def row(name: str, ref: str) -> str:
        r = by[name]
        out = [MODELS[name][0], f"{r['params/dense']:,}", f"{r['flops/per_example']:,}"]
        for backend, b in cols:
            c = _cell(r, backend, b)
            out.append("–" if c is None else f"{c['p50_ms']:.3f}" if b == 1 else _k(c["rows_per_s"]))
        mine, base = _cell(r, "onnxrt", 512), _cell(by[ref], "onnxrt", 512) if ref in by else None
        out.append(f"{base['rows_per_s'] / mine['rows_per_s']:.2f}×" if mine and base else "–")
        return "| " + " | ".join(out) + " |"

    head = (
        "| model | dense params | FLOPs/example | eager p50 ms, B=1 | eager rows/s, B=512 | torch.export p50 ms, B=1 "
        "| ONNX Runtime p50 ms, B=1 | ONNX Runtime rows/s, B=512 | cost vs reference (ONNX Runtime, B=512) |"
    )
    sep = "|" + "---|" * 9
    lines = [
        SERVING_BEGIN,
        "## Serving cost (measured)",
        "",
        "The serving path that `recsys-export` writes (eval mode, APG factors merged), with random weights "
        "(latency does not depend on them), on real synthetic rows; one thread; p50 latency per call and "
        "throughput. Full tables (torch.compile, both thread counts, p99) and the method: "
        "[../benchmarks.md](../benchmarks.md#serving-latency). Command:",
        "",
        "```",
        command,
        "```",
        "",
        header,
        "",
    ]
    mixers = [m for m in ("dcnv2", "rankmixer", "unimixer", "unimixer_lite", "fm_block") if m in by]
    if mixers:
        lines += [
            "### Token mixers (matched dense parameters, the 1x widths above; reference: DCNv2)",
            "",
            "Claims: RankMixer's token mixing is parameter-free and its per-token FFNs are plain GEMMs, "
            "chosen for serving efficiency; UniMixing-Lite is the cheaper UniMixer (low-rank global mixing, "
            "shared bases). Their per-example FLOPs differ by a few percent at matched parameters; the "
            "measured cost is the ratio of throughputs in the last column (> 1× = slower than the reference).",
            "",
            head,
            sep,
            *(row(m, "dcnv2") for m in mixers),
            "",
        ]
    apg = [m for m in ("dnn", "dnn_apg_self", "dnn_apg_group") if m in by]
    if apg:
        lines += [
            "### APG against its static twin (DNN, hidden [128, 64]; reference: the static DNN)",
            "",
            "Claim: APG variants beat their static twins *at equal serving cost* (with the factors merged "
            "for inference). The last column is the measured serving cost relative to the static DNN.",
            "",
            head,
            sep,
            *(row(m, "dnn") for m in apg),
            "",
        ]
    lines.append(SERVING_END)
    return "\n".join(lines) + "\n"


def splice(page: Path, fragment: str) -> None:
    """Put ``fragment`` into ``page`` in place of an earlier one (or at the end)."""
    text = page.read_text()
    if SERVING_BEGIN in text and SERVING_END in text:
        head, rest = text.split(SERVING_BEGIN, 1)
        tail = rest.split(SERVING_END, 1)[1].lstrip("\n")
        text = head + fragment + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + fragment
    page.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--batch-sizes", default="1,64,512")
    p.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = every core")
    p.add_argument("--seconds", type=float, default=0.3, help="timed seconds per cell (after warm-up)")
    p.add_argument("--min-iters", type=int, default=20)
    p.add_argument("--max-seconds", type=float, default=5.0, help="cap per cell on a slow or busy machine")
    p.add_argument("--json", default=None, help="also write the raw numbers here")
    p.add_argument(
        "--from-json", default=None, help="do not measure: report the numbers of an earlier --json"
    )
    p.add_argument(
        "--write-docs",
        action="store_true",
        help=f"write the serving-cost section into {FRAGMENT.relative_to(REPO)} and {MIXERS_PAGE.relative_to(REPO)}",
    )
    p.add_argument("--mixing-share", action="store_true", help="only time UniMixer's parameter-only matrices")
    args = p.parse_args()
    if args.mixing_share:
        for name in ("unimixer", "unimixer_lite"):
            print(mixing_share(name))
        return
    command = "python scripts/bench_serve.py " + " ".join(sys.argv[1:])
    args.models = args.models.split(",")
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown models {unknown}; known: {list(MODELS)}")
    args.backends = [b for b in args.backends.split(",") if b]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    cores = os.cpu_count() or 1
    args.threads = sorted({cores if t == "all" else int(t) for t in args.threads.split(",")})
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        header, results, command = saved["header"], saved["results"], saved.get("command", command)
        args.backends, args.batch_sizes, args.threads = (
            saved["args"][k] for k in ("backends", "batch_sizes", "threads")
        )
        report(header, results, args, command)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp, Contention() as load:
        for name in args.models:
            with Contention() as c:
                r = bench_model(name, args, Path(tmp))
            r["other_cores"], r["loadavg"] = c.other_cores, c.loadavg
            results.append(r)
            print(
                f"# {name}: done in {c.wall:.0f} s; other processes used {c.other_cores:.2f} cores",
                flush=True,
            )
    header = (
        f"Machine: {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
        f"onnxruntime {__import__('onnxruntime').__version__}. Wall {load.wall:.0f} s; this process used "
        f"{load.own_cores:.2f} cores on average and **other processes {load.other_cores:.2f} of the {cores} "
        f"cores** (from /proc/stat; load average {load.loadavg:.2f} at the end)."
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"header": header, "command": command, "args": vars(args), "results": results},
                indent=1,
                default=str,
            )
        )
    report(header, results, args, command)


def report(header: str, results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> None:
    print(header + "\n\n" + markdown(results, args))
    if args.write_docs:
        fragment = serving_fragment(results, header, command)
        FRAGMENT.write_text(fragment)
        splice(MIXERS_PAGE, fragment)
        print(f"wrote {FRAGMENT} and the serving-cost section of {MIXERS_PAGE}")


if __name__ == "__main__":
    main()
