"""Jagged attention kernels: forward and forward+backward time and peak memory against length.

``python scripts/bench_attention.py`` measures, for each op (HSTU, CamA), sequence length and
batch size, these implementations:

* ``reference``: ``Kernel.REFERENCE`` (per-user PyTorch, a ``[H, L, L]`` score matrix per user);
* ``dense``: the padded dense-mask baseline. CamA: ``F.scaled_dot_product_attention`` with a
  boolean ``[B, H, L, L]`` mask. HSTU (SDPA cannot do SiLU weights): the same maths batched over
  padded ``[B, H, L, L]`` scores, mask and bias. Building the mask is part of the timed call;
* ``flex``: ``Kernel.FLEX`` (CamA only; HSTU has no softmax). On CPU this is eager FlexAttention,
  forward only (torch 2.13 has no CPU backward), so its fwd+bwd cells say so;
* ``triton``: ``Kernel.TRITON``. Only on a CUDA GPU: under ``TRITON_INTERPRET`` on CPU it is not a
  timing, so the rows are skipped with the reason printed.

Inputs: B users of exactly L tokens each (8 of them candidates), H heads of dim D, fp16 on GPU and
fp32 on CPU, random timestamps and 3 action bits. Time is the median of ``--repeats`` calls after
one warm-up; on CUDA, with synchronisation. Peak memory is ``torch.cuda.max_memory_allocated``
above the inputs on CUDA; on CPU each cell runs in its own subprocess (``--child``) and reports
the growth of its peak RSS (``ru_maxrss``) over the RSS after the inputs were built.

Prints a table, writes ``--json`` and a PNG (time and memory against L), and with ``--page``
writes the Markdown results page (``docs/results/kernels.md``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_lab.kernels import Kernel, cama_attention, hstu_attention, time_bucket  # noqa: E402
from recsys_lab.kernels.reference import cama_visible  # noqa: E402

IMPLS = ("reference", "dense", "flex", "triton")
NUM_CANDIDATES = 8
NUM_POS, NUM_TIME = 64, 32


def make_inputs(
    batch: int, length: int, heads: int, dim: int, dtype: torch.dtype, device: str, grad: bool
) -> dict:
    g = torch.Generator().manual_seed(0)
    n = batch * length
    offsets = torch.arange(0, n + 1, length, dtype=torch.int64)
    ts = torch.randint(0, 600, (batch, length), generator=g).cumsum(1).reshape(-1)
    actions = torch.randint(0, 8, (n,), generator=g)
    t = {name: torch.randn(n, heads, dim, generator=g) for name in ("q", "k", "v")}
    t["pos_bias"] = 0.1 * torch.randn(heads, NUM_POS, generator=g)
    t["time_bias"] = 0.1 * torch.randn(heads, NUM_TIME, generator=g)
    out = {k: v.to(device=device, dtype=dtype).requires_grad_(grad) for k, v in t.items()}
    out.update(
        offsets=offsets.to(device),
        timestamps=ts.to(device),
        actions=actions.to(device),
        num_candidates=torch.full((batch,), min(NUM_CANDIDATES, length), dtype=torch.int64, device=device),
    )
    return out


def _padded(x, batch: int, length: int):
    return x.reshape(batch, length, *x.shape[1:]).transpose(1, 2)  # [N, H, D] -> [B, H, L, D]


def hstu_dense(x: dict, batch: int, length: int, scale: float) -> torch.Tensor:
    """HSTU over padded ``[B, H, L, L]`` scores with a dense mask and dense bias."""
    q, k, v = (_padded(x[n], batch, length) for n in ("q", "k", "v"))
    pos = torch.arange(length, device=q.device)
    rel = (pos[:, None] - pos[None, :]).clamp(0, NUM_POS - 1)
    ts = x["timestamps"].reshape(batch, length)
    tb = time_bucket(ts[:, :, None] - ts[:, None, :], NUM_TIME)  # [B, L, L]
    hist = length - x["num_candidates"][:, None, None]
    vis = (pos[None, None, :] <= pos[None, :, None]) & ((pos[None, None, :] < hist) | (rel == 0)[None])
    bias = x["pos_bias"][:, rel][None] + x["time_bias"][:, tb].transpose(0, 1)  # [B, H, L, L]
    a = scale * (q @ k.transpose(-1, -2)) + bias
    w = torch.where(vis[:, None], F.silu(a), 0.0) / length
    return (w @ v).transpose(1, 2).reshape(-1, *x["v"].shape[1:])


def cama_dense(x: dict, batch: int, length: int, scale: float, num_channels: int) -> torch.Tensor:
    """CamA through SDPA with a boolean ``[B, H, L, L]`` mask."""
    q, k, v = (_padded(x[n], batch, length) for n in ("q", "k", "v"))
    per = q.shape[1] // num_channels
    ts = x["timestamps"].reshape(batch, length)
    act = x["actions"].reshape(batch, length)
    masks = [cama_visible(ts[b], act[b], int(x["num_candidates"][b]), num_channels) for b in range(batch)]
    mask = torch.stack(masks).repeat_interleave(per, dim=1)  # [B, H, L, L]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(-1, *x["v"].shape[1:])


def run_impl(op: str, impl: str, x: dict, batch: int, length: int, num_channels: int) -> torch.Tensor:
    scale = x["q"].shape[2] ** -0.5
    if impl == "dense":
        if op == "hstu":
            return hstu_dense(x, batch, length, scale)
        return cama_dense(x, batch, length, scale, num_channels)
    if op == "hstu":
        return hstu_attention(
            x["q"],
            x["k"],
            x["v"],
            x["offsets"],
            x["timestamps"],
            x["num_candidates"],
            x["pos_bias"],
            x["time_bias"],
            scale=scale,
            kernel=Kernel(impl),
        )
    return cama_attention(
        x["q"],
        x["k"],
        x["v"],
        x["offsets"],
        x["timestamps"],
        x["actions"],
        x["num_candidates"],
        num_channels=num_channels,
        scale=scale,
        kernel=Kernel(impl),
    )


def skip_reason(op: str, impl: str, device: str, mode: str) -> str | None:
    if impl == "triton" and device != "cuda":
        return "Triton on CPU only runs under TRITON_INTERPRET (a correctness tool, not a timing)"
    if impl == "flex" and op == "hstu":
        return "FlexAttention cannot express HSTU's SiLU weights (always a softmax)"
    if impl == "flex" and mode == "fwd_bwd" and device != "cuda":
        return "torch 2.13 FlexAttention has no CPU backward"
    return None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(
    op: str,
    impl: str,
    mode: str,
    batch: int,
    length: int,
    heads: int,
    dim: int,
    num_channels: int,
    repeats: int,
    device: str,
) -> dict:
    """Time (ms, median) and peak memory (MiB above the inputs) of one cell, in this process."""
    dtype = torch.float16 if device == "cuda" else torch.float32
    x = make_inputs(batch, length, heads, dim, dtype, device, grad=mode == "fwd_bwd")
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def call() -> None:
        out = run_impl(op, impl, x, batch, length, num_channels)
        if mode == "fwd_bwd":
            out.float().square().mean().backward()
            for name in ("q", "k", "v", "pos_bias", "time_bias"):
                x[name].grad = None

    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss_bytes()
    call()  # warm-up (compilation, autotuning, caches)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "op": op,
        "impl": impl,
        "mode": mode,
        "batch": batch,
        "length": length,
        "ms": statistics.median(times),
        "peak_mib": max(peak, 0) / 2**20,
    }


def measure_cell(args, op: str, impl: str, mode: str, batch: int, length: int, device: str) -> dict:
    reason = skip_reason(op, impl, device, mode)
    cell = {"op": op, "impl": impl, "mode": mode, "batch": batch, "length": length}
    if reason:
        return {**cell, "skipped": reason}
    if device == "cuda":
        try:
            return measure(
                op, impl, mode, batch, length, args.heads, args.dim, args.num_channels, args.repeats, device
            )
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {**cell, "skipped": "out of memory"}
        except Exception as e:  # keep measuring the other cells; the table says what failed
            torch.cuda.empty_cache()
            return {**cell, "skipped": f"failed: {type(e).__name__}: {str(e)[:120]}"}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(
            {
                **cell,
                "heads": args.heads,
                "dim": args.dim,
                "num_channels": args.num_channels,
                "threads": args.threads,
                "repeats": args.repeats,
            }
        ),
    ]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.cell_timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**cell, "skipped": f"over --cell-timeout={args.cell_timeout}s"}
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        return {**cell, "skipped": f"failed: {last[:120]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(results: list[dict], device: str) -> str:
    lines = [
        "| op | mode | B | L | " + " | ".join(f"{i} ms | {i} MiB" for i in IMPLS) + " |",
        "|---|---|---|---|" + "---|---|" * len(IMPLS),
    ]
    keys = sorted(
        {(r["op"], r["mode"], r["batch"], r["length"]) for r in results},
        key=lambda k: (k[0], k[1] != "fwd", k[2], k[3]),
    )
    for key in keys:
        row = [str(k) for k in key]
        for impl in IMPLS:
            r = next(
                (
                    r
                    for r in results
                    if (r["op"], r["mode"], r["batch"], r["length"]) == key and r["impl"] == impl
                ),
                None,
            )
            if r is None or "skipped" in r:
                row += ["–", "–"]
            else:
                row += [f"{r['ms']:.1f}", f"{r['peak_mib']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = sorted({r["op"] for r in results})
    batch = max(r["batch"] for r in results)
    fig, axes = plt.subplots(len(ops), 3, figsize=(15, 4 * len(ops)), squeeze=False)
    for row, op in enumerate(ops):
        for col, (mode, metric, label) in enumerate(
            [
                ("fwd", "ms", "forward ms"),
                ("fwd_bwd", "ms", "forward+backward ms"),
                ("fwd_bwd", "peak_mib", "fwd+bwd peak MiB"),
            ]
        ):
            ax = axes[row][col]
            for impl in IMPLS:
                pts = sorted(
                    (r["length"], r[metric])
                    for r in results
                    if r["op"] == op
                    and r["impl"] == impl
                    and r["mode"] == mode
                    and r["batch"] == batch
                    and "skipped" not in r
                )
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=impl)
            ax.set(xscale="log", yscale="log", xlabel="sequence length L", title=f"{op}: {label} (B={batch})")
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_page(
    path: Path, results: list[dict], args, device: str, name: str, command: str, png: Path
) -> None:
    skipped = sorted({(r["impl"], r["op"], r["mode"], r["skipped"]) for r in results if "skipped" in r})
    lines = [
        "# Results: jagged attention kernels (HSTU, CamA)",
        "",
        f"Generated by `scripts/bench_attention.py` on {name}; regenerate with:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Settings: heads H={args.heads}, head dim D={args.dim}, CamA channels={args.num_channels}, "
        f"{NUM_CANDIDATES} candidates per user, every user exactly L tokens, "
        f"{'fp16' if device == 'cuda' else f'fp32, {args.threads} CPU thread(s)'}, median of "
        f"{' or '.join(str(n) for n in sorted({r.get('repeats', args.repeats) for r in results}))} "
        "calls after one warm-up. "
        "`dense` builds its `[B, H, L, L]` mask inside the timed call. Memory: "
        + (
            "`torch.cuda.max_memory_allocated` above the inputs."
            if device == "cuda"
            else "growth of the peak RSS of a fresh subprocess per cell over its RSS after building the "
            "inputs (includes allocator slack; coarse)."
        ),
        *(
            []
            if device == "cuda"
            else [
                "",
                f"CPU caveats: the machine is shared with other jobs (1-minute load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when this page was written), so "
                "timings are noisy (non-monotone steps are noise, not effects). `flex` on CPU is eager "
                "FlexAttention, forward only, with `create_block_mask` evaluating the mask densely "
                "inside the timed call; it shows nothing about the compiled GPU kernel.",
            ]
        ),
        "",
        table(results, device),
        "",
        *([f"- {line}" for line in targets(results)] + [""] if targets(results) else []),
        f"![time and memory against length]({png.name})",
        "",
        *(
            []
            if device == "cuda"
            else [
                "**No GPU was available for this run.** The Triton kernels are tested for correctness on "
                "CPU under `TRITON_INTERPRET=1` (tests/kernels/), but none of their speed or memory is "
                "measured here, and the issue's H100 targets (Triton at least 2× faster than the "
                "dense-mask baseline at L=2048; memory linear in L) were **not measured**. On a CUDA "
                "machine the same command measures all four implementations (default lengths "
                "256…8192, B=8, fp16).",
                "",
            ]
        ),
        "Cells marked – were not measured:",
        "",
    ]
    lines += [f"- {impl} / {op} / {mode}: {why}" for impl, op, mode, why in skipped]
    path.write_text("\n".join(lines) + "\n")


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default="hstu,cama")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--lengths", default=None, help="default: 256..8192 on GPU, 256..1024 on CPU")
    p.add_argument("--batches", default=None, help="default: 8 on GPU, 2 on CPU")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--num-channels", type=int, default=2)
    p.add_argument("--modes", default="fwd,fwd_bwd")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--threads", type=int, default=1, help="CPU: torch threads per cell (1: steadier on a shared machine)"
    )
    p.add_argument("--cell-timeout", type=int, default=300, help="CPU: seconds per subprocess cell")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", type=Path, default=None, help="results, rewritten after every cell")
    p.add_argument(
        "--report-only",
        default=None,
        help="comma-separated result JSONs (from --json) to merge into the table, PNG and page; no timing",
    )
    p.add_argument("--png", type=Path, default=Path("bench_attention.png"))
    p.add_argument("--page", type=Path, default=None, help="write the Markdown results page here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        c = json.loads(args.child)
        torch.set_num_threads(c["threads"])
        print(
            json.dumps(
                measure(
                    c["op"],
                    c["impl"],
                    c["mode"],
                    c["batch"],
                    c["length"],
                    c["heads"],
                    c["dim"],
                    c["num_channels"],
                    c["repeats"],
                    "cpu",
                )
            )
        )
        return
    if args.report_only:
        results = [r for f in args.report_only.split(",") for r in json.loads(Path(f).read_text())]
        report(args, results, results[0].get("device", args.device), results[0].get("device_name"))
        return
    gpu = args.device == "cuda"
    lengths = [
        int(v)
        for v in (args.lengths or ("256,512,1024,2048,4096,8192" if gpu else "256,512,1024")).split(",")
    ]
    batches = [int(v) for v in (args.batches or ("8" if gpu else "2")).split(",")]
    results = []
    for op in args.ops.split(","):
        for mode in args.modes.split(","):
            for batch in batches:
                for length in lengths:
                    for impl in args.impls.split(","):
                        r = measure_cell(args, op, impl, mode, batch, length, args.device)
                        r.update(
                            device=args.device,
                            device_name=device_name(args.device),
                            command=" ".join(["python scripts/bench_attention.py", *sys.argv[1:]]),
                            repeats=args.repeats,
                        )
                        results.append(r)
                        if args.json:  # a run cut short keeps every finished cell
                            args.json.write_text(json.dumps(results, indent=1))
                        what = r.get("skipped") or f"{r['ms']:.1f} ms, {r['peak_mib']:.0f} MiB"
                        print(f"{op:5s} {mode:8s} B={batch:<3d} L={length:<5d} {impl:10s} {what}", flush=True)
    report(args, results, args.device, device_name(args.device))


def report(args, results: list[dict], device: str, name: str | None) -> None:
    """Print the table and the targets, write the PNG and (with ``--page``) the results page."""
    print()
    print(table(results, device))
    reasons = sorted({(r["impl"], r["op"], r["mode"], r["skipped"]) for r in results if "skipped" in r})
    for impl, op, mode, why in reasons:
        print(f"skipped {impl}/{op}/{mode}: {why}")
    for line in targets(results):
        print(line)
    plot(results, args.png)
    print(f"wrote {args.png}")
    if args.page:
        # the measuring runs' own commands (several when partial runs were merged)
        command = "\n".join(
            dict.fromkeys(r.get("command", "python scripts/bench_attention.py") for r in results)
        )
        write_page(args.page, results, args, device, name or device_name(device), command, args.png)
        print(f"wrote {args.page}")


def _cell(results: list[dict], op: str, impl: str, mode: str, length: int) -> dict | None:
    batch = max(r["batch"] for r in results)
    for r in results:
        if (r["op"], r["impl"], r["mode"], r["batch"], r["length"]) == (op, impl, mode, batch, length):
            return None if "skipped" in r else r
    return None


def targets(results: list[dict], at: int = 2048) -> list[str]:
    """The issue's targets, from the measured cells: Triton's speed-up over ``dense`` at L=``at``
    and how Triton's fwd+bwd peak memory grows per doubling of L (2.0 = linear, 4.0 = quadratic)."""
    lines = []
    for op in sorted({r["op"] for r in results}):
        for mode in ("fwd", "fwd_bwd"):
            tri, den = _cell(results, op, "triton", mode, at), _cell(results, op, "dense", mode, at)
            if tri and den:
                lines.append(
                    f"{op} {mode} L={at}: triton {tri['ms']:.2f} ms, dense {den['ms']:.2f} ms, "
                    f"speed-up {den['ms'] / tri['ms']:.1f}x"
                )
        mem = sorted(
            (r["length"], r["peak_mib"])
            for r in results
            if (r["op"], r["impl"], r["mode"]) == (op, "triton", "fwd_bwd")
            and "skipped" not in r
            and r["batch"] == max(x["batch"] for x in results)
        )
        if len(mem) >= 2:
            growth = [b[1] / a[1] for a, b in itertools.pairwise(mem) if a[1] > 0 and b[0] == 2 * a[0]]
            if growth:
                lines.append(
                    f"{op} triton fwd_bwd peak memory per doubling of L: "
                    + ", ".join(f"{g:.2f}x" for g in growth)
                    + f" ({mem[0][1]:.0f} MiB at L={mem[0][0]} -> {mem[-1][1]:.0f} MiB at L={mem[-1][0]})"
                )
    return lines


if __name__ == "__main__":
    main()
