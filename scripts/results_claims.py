"""The claims table at the top of ``docs/results.md``: one row per seed-method claim, with the
mechanism measured on planted data by its claim test (``tests/claims``, several seeds: each seed
draws a new planted world *and* a new test set, so the interval includes test-sampling noise) and
the state of the convergence study on the synthetic world.

    python scripts/results_claims.py                  # 3 seeds per claim (~10 min on 2 idle cores)
    python scripts/results_claims.py --seeds 0 1 2 3 4
    python scripts/results_claims.py --report-only    # rewrite the table from the cached results

Resumable: each (claim, seed) result is cached as JSON under ``--out`` and skipped when present.
The verdict columns are rules, not opinions: on planted data a claim is **shown** when the lower
end of the 95% interval of its effect is above the claim's threshold, **refuted** when the upper
end is below 0, otherwise **inconclusive**. At convergence, rows say **not yet measured at
convergence** until the study's command has been run to convergence (early stopping, ≥ 3 seeds,
bootstrap intervals), with that command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from recsys_lab.runners.stage import write_json_atomic  # noqa: E402

START, END = "<!-- claims table: start (scripts/results_claims.py) -->", "<!-- claims table: end -->"
# Two-sided 95% Student t quantiles by degrees of freedom (n seeds - 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Claim:
    """One row. ``measure(seed)`` returns the effect (a float) and the figures behind it."""

    key: str
    method: str
    claim: str  # with the paper's figure where METHODS.md gives one
    effect: str  # what the number is
    threshold: float  # the effect the planted test requires
    test: str  # pytest node of the claim test
    measure: Callable[[int], tuple[float, dict]]
    convergence: str  # the command of the convergence study on the synthetic world
    paper: float | None = None  # the paper's figure in the effect's units, when there is one
    # The convergence study's (result cell, verdict) from its run outputs, None while not run.
    converged: Callable[[Path], tuple[str, str] | None] | None = None


def _grab_cama(seed: int) -> tuple[float, dict]:
    from tests.claims.test_grab_claim import grab_auc

    c, s = (
        grab_auc("clicked", seed, 4, 10, channels="cama"),
        grab_auc("clicked", seed, 4, 10, channels="single"),
    )
    return c - s, {"cama": c, "single": s}


def _grab_history(seed: int) -> tuple[float, dict]:
    from tests.claims.test_grab_claim import grab_auc

    f, s = grab_auc("early", seed, 8, 12), grab_auc("early", seed, 8, 12, max_history=4)
    return f - s, {"whole_history": f, "latest_4": s}


def _lum(seed: int) -> tuple[float, dict]:
    from tests.claims.test_lum_claim import run

    r = run(seed)
    return r["with_lum"] - r["without"], r


def _unimixer(seed: int) -> tuple[float, dict]:
    from tests.claims.test_unimixer_claim import run

    r = run(seed)
    return r["learned"] - r["rankmixer"], r


def _apg(seed: int) -> tuple[float, dict]:
    from tests.claims.test_apg_claim import apg_and_static_auc

    a, s = apg_and_static_auc(True, seed)
    a0, s0 = apg_and_static_auc(False, seed)
    return a - s, {"apg": a, "static": s, "control_apg": a0, "control_static": s0}


def _bh(seed: int) -> tuple[float, dict]:
    from tests.claims.test_bh_claim import lifts

    r = lifts(seed)
    return r["bh"] / r["full"], r


def _amtl(seed: int) -> tuple[float, dict]:
    from tests.claims.test_amtl_claim import run

    r = run(seed, rank_one=True)
    saved = 1 - r["amtl_values"] / r["full_values"]
    return saved, {**r, "auc_difference": r["amtl_auc"] - r["full_auc"]}


def _pcf(seed: int) -> tuple[float, dict]:
    from tests.claims.test_pcf_gnn_claim import run

    r = run(seed)
    return r["gnn_unseen"] - r["exact_unseen"], r


def _exfm(seed: int) -> tuple[float, dict]:
    from tests.claims.test_exfm_claim import vm_aucs

    r = vm_aucs(seed, strong_fm=True)
    return r["aux"] - r["none"], r


def _ocarm(seed: int) -> tuple[float, dict]:
    from tests.claims.test_ocarm_claim import gain

    g, plain = gain(0.9, seed)
    g0, plain0 = gain(0.0, seed)
    return g, {"gain_predictable": g, "plain_predictable": plain, "gain_noise": g0, "plain_noise": plain0}


def _conv_pcf(out: Path) -> tuple[str, str] | None:
    f = out / "pcf_storage" / "summary.json"
    if not f.is_file():
        return None
    rows = json.loads(f.read_text())["crossovers"]

    def cell(r: dict) -> str:
        c = r["crossover_rows"]
        where = (
            f"≈ {c:,.0f} rows"
            if c and c > 0
            else (f"beyond the grid (extrapolated ≈ {-c:,.0f})" if c else "–")
        )
        return f"{r['pairs']} pairs, vocab ≤ {r['max_vocab']:,}: {where}"

    text = (
        "storage (counted exactly, seed 0, `python scripts/claims_pcf_storage.py`): the exact table "
        "outgrows the GNN at " + "; ".join(cell(r) for r in rows if r["pairs"] in (4, 66))
    )
    return text, (
        "storage: reproduced above the crossover, contradicted below it (see "
        "[results/claims.md](results/claims.md#pcf-gnn-storage-crossover)); AUC at scale not measured"
    )


def _conv_bh(out: Path) -> tuple[str, str] | None:
    f = out / "bh" / "summary.json"
    if not f.is_file():
        return None
    rows = json.loads(f.read_text())
    if not rows:
        return None
    cells, verdicts = [], []
    for r in sorted(rows.values(), key=lambda r: r["ratio"]):
        above = f", bootstrap above 0.99 in {r['seeds_above']}/{r['n']} seeds" if "seeds_above" in r else ""
        cells.append(
            f"{r['ratio']:.0f}×: {r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['n']}){above}"
        )
        if r["n"] < 2:
            v = "one seed"
        elif r["low"] >= 0.99:
            v = "reproduced"
        elif r["high"] < 0.99:
            v = "not reproduced"
        else:
            v = "inconclusive"
        verdicts.append(f"{r['ratio']:.0f}×: {v}")
    return (
        "lift kept, 1.09M values, code_bits 21, early stopping (`python scripts/claims_bh.py`): "
        + "; ".join(cells),
        "; ".join(verdicts) + " (against 0.99; [results/claims.md](results/claims.md#bh-at-1000))",
    )


def _conv_exfm(out: Path) -> tuple[str, str] | None:
    f = out / "exfm" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text()).get("vm_aux-vm_none")
    if not r:
        return None
    stale = {d: x for d, x in json.loads(f.read_text()).get("staleness", {}).items() if d != "1"}
    if not stale:
        return (
            f"ΔAUC aux head − no FM, FM early-stopped and stronger than the VMs on their rows "
            f"(`python scripts/claims_exfm.py`): {r['mean']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] ({r['n']})",
            f"{r['verdict']} ([results/claims.md](results/claims.md#exfm-with-a-stronger-fm))",
        )
    cells = "; ".join(
        f"δ = {d}: {x['aux']['mean']:+.4f} [{x['aux']['low']:+.4f}, {x['aux']['high']:+.4f}] ({x['n']})"
        + (
            f", {x['decay']['mean']:+.4f} [{x['decay']['low']:+.4f}, {x['decay']['high']:+.4f}] vs δ = 1"
            if "decay" in x
            else ""
        )
        for d, x in sorted(stale.items(), key=lambda kv: int(kv[0]))
    )
    verdicts = "; ".join(
        f"δ = {d}: {x['verdict']}"
        + (", smaller than at δ = 1" if x.get("decay", {}).get("high", 0) < 0 else "")
        for d, x in sorted(stale.items(), key=lambda kv: int(kv[0]))
    )
    return (
        f"ΔAUC aux head − no FM, FM early-stopped and stronger than the VMs on their rows "
        f"(`python scripts/claims_exfm.py --deltas 1 3 5`): δ = 1: {r['mean']:+.4f} [{r['low']:+.4f}, "
        f"{r['high']:+.4f}] ({r['n']}); staler FM (gain, and its change from δ = 1): {cells}",
        f"δ = 1: {r['verdict']}; {verdicts} ([results/claims.md](results/claims.md#exfm-with-a-stale-fm))",
    )


def _conv_mixers(out: Path) -> tuple[str, str] | None:
    f = out / "mixers" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    moved = (
        f"; mixing moved {r['moved']:.2f} initial sds, {r['destinations_changed']:.0%} of destinations changed"
        if "moved" in r
        else ""
    )
    anneal = (
        f"annealed to 0.05 within the first {r['anneal_epochs']:g} of {r['epochs']} epochs (tested at "
        f"≤ {r['max_tested_temperature']:.2f})"
        if "anneal_epochs" in r
        else "annealed over a stated budget"
    )
    return (
        f"ΔAUC UniMixer − RankMixer at matched parameters, {anneal} "
        f"(`python scripts/claims_mixers.py`): {r['mean']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] "
        f"({r['n']}){moved}",
        f"{r['verdict']} ([results/claims.md](results/claims.md#unimixer-vs-rankmixer))",
    )


def _conv_amtl(out: Path) -> tuple[str, str] | None:
    f = out / "amtl" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    link = "([results/claims.md](results/claims.md#amtl-penalty-sweep))"
    if "equal_auc" not in r:
        return "penalty sweep (`python scripts/claims_amtl.py`): no equal-AUC point found", f"– {link}"
    e = r["equal_auc"]
    m, lo, hi = e["saved"]
    return (
        f"values saved at the equal-AUC point `{e['variant']}` (`python scripts/claims_amtl.py`): "
        f"{m:.3f} [{lo:.3f}, {hi:.3f}]",
        f"{e['verdict']} (against 0.6) {link}",
    )


def _conv_grab(out: Path) -> tuple[str, str] | None:
    f = out / "grab" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    if "slope" not in r:
        return None
    sl = r["slope"]
    steps = "; ".join(
        f"{a}→{b} {g['mean']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]"
        for (a, b), g in ((g["step"], g) for g in r["gains"])
    )
    return (
        f"packed GRAB test AUC vs K = {r['ks']} on `long_history`, early stopping (`python scripts/claims_grab.py`): "
        f"slope {sl['mean']:+.4f} [{sl['low']:+.4f}, {sl['high']:+.4f}] per doubling ({sl['n']}), oracle's "
        f"{r['oracle_slope']:+.4f}; gains {steps}"
        + (f"; mean AUC peaks at K = {r['peak']['k']}" if "peak" in r else ""),
        f"{r['verdict']} ([results/claims.md](results/claims.md#grab-history-length))",
    )


def _conv_grab_cama(out: Path) -> tuple[str, str] | None:
    f = out / "grab_cama" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    g = r["action_gap"]
    return (
        f"ΔAUC CamA − single channel, packed GRAB at K = {r['k']} on `long_history`, early stopping "
        f"(`python scripts/claims_grab_cama.py`): {r['mean']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}] ({r['n']}); "
        f"AUC CamA {r['cama_auc']:.4f}, single {r['single_auc']:.4f}; knowing each event's action is worth "
        f"{g['mean']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}] oracle AUC (oracle@K {r['oracle_k']:.4f}, "
        f"action-blind {r['oracle_blind']:.4f})",
        f"{r['verdict']} ([results/claims.md](results/claims.md#grab-cama-vs-single-channel))",
    )


def _conv_apg(out: Path) -> tuple[str, str] | None:
    f = out / "apg" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    main, control = r.get(r.get("main", "")), r.get("0")
    if not main:
        return None

    def cell(x: dict) -> str:
        return f"{x['mean']:+.4f} [{x['low']:+.4f}, {x['high']:+.4f}] ({x['n']})"

    cost = r.get("cost", {})
    ratio = (
        f"; serving FLOPs APG / static {cost['apg']['flops'] / cost['static']['flops']:.2f}×" if cost else ""
    )
    return (
        f"ΔAUC APG (group: user) − static twin (same widths), per-user weights of sd {r['main']} "
        f"(`data.instance_scale`), early stopping (`python scripts/claims_apg.py`): {cell(main)}, the per-user "
        f"term worth {main['gap'][0]:+.4f} oracle AUC"
        + (f"; control (`instance_scale=0`): {cell(control)}" if control and r["main"] != "0" else "")
        + ratio,
        f"{main['verdict']}"
        + (f"; control: {control['verdict']}" if control and r["main"] != "0" else "")
        + " ([results/claims.md](results/claims.md#apg-vs-its-static-twin))",
    )


def _conv_ocarm(out: Path) -> tuple[str, str] | None:
    f = out / "ocarm" / "summary.json"
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    if "verdict" not in r:
        return None
    v, rho = r["variant"], r["rho"]
    cells = []
    for key, name in ((f"{rho:g}", f"ρ = {rho:g}"), ("0", "ρ = 0 (control)")):
        d = r["rhos"][key][v]
        cells.append(f"{name}: {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] ({d['n']})")
    other = [
        f"{k}: {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] at ρ = {rho:g}"
        for k, d in r["rhos"][f"{rho:g}"].items()
        if k != v
    ]
    t = r["teacher"]
    return (
        f"ΔAUC distilled ({v}) − plain student, `data.preset=retention`, every stage early-stopped "
        f"(`python scripts/claims_ocarm.py`): " + "; ".join(cells + other) + f"; teacher AUC "
        f"{t['teacher']:.3f} (oracle {t['full']:.3f}, observables-only oracle {t['observables']:.3f})",
        f"{r['verdict']} ([results/claims.md](results/claims.md#ocarm-at-convergence))",
    )


def _conv_lum(out: Path) -> tuple[str, str] | None:
    f = out / "lum_plateau" / "summary.json"  # supersedes lum/ (pre-training capped at 800 steps)
    if not f.is_file():
        return None
    r = json.loads(f.read_text())
    gains, growth = r["gain"], r["growth"]
    sizes = list(gains)

    def fmt(g: dict) -> str:
        return f"{g['mean']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]"

    shown = [s for s in sizes if gains[s]["low"] > 0]
    against = [s for s in sizes if gains[s]["high"] < 0]
    pre = r.get("pretrain")
    stopped = (
        f"pre-training early-stopped in {pre['runs'] - pre['capped']}/{pre['runs']} runs (lr {pre['lr']:g}, "
        f"cap {pre['max_steps']} steps), DCNv2 early-stopped"
        if pre
        else "DCNv2 early-stopped (pre-training stops not recorded)"
    )
    return (
        f"ΔAUC LUM + DCNv2 − DCNv2 per LUM size (dim × layers), {stopped} "
        "(`python scripts/claims_lum.py`): "
        + "; ".join(f"{s}: {fmt(gains[s])}" for s in sizes)
        + f" ({growth['n']}); gain growth {sizes[-1]} − {sizes[0]}: {fmt(growth)}",
        f"gain > 0: {'reproduced at ' + ', '.join(shown) if shown else 'not reproduced'}"
        f"{'; contradicted at ' + ', '.join(against) if against else ''}; grows with size: "
        f"{growth['verdict']} ([results/claims.md](results/claims.md#lum-at-three-sizes))",
    )


CLAIMS = [
    Claim(
        "grab_cama",
        "GRAB",
        "CamA beats single-channel causal attention when actions carry signal",
        "ΔAUC CamA − single channel",
        0.05,
        "tests/claims/test_grab_claim.py",
        _grab_cama,
        "python scripts/claims_grab_cama.py (CamA vs model.channels=single, packed GRAB, K = 128, long_history)",
        converged=_conv_grab_cama,
    ),
    Claim(
        "grab_history",
        "GRAB",
        "quality rises with the history length (≈ linear in log length)",
        "ΔAUC whole history − latest 4 events (effect planted beyond them)",
        0.2,
        "tests/claims/test_grab_claim.py",
        _grab_history,
        "python scripts/claims_grab.py (data.preset=long_history, packed GRAB, oracle at each K beside)",
        converged=_conv_grab,
    ),
    Claim(
        "lum",
        "LUM",
        "a DLRM with LUM features beats the same DLRM without them",
        "ΔAUC with − without LUM features (new users)",
        0.1,
        "tests/claims/test_lum_claim.py",
        _lum,
        "python scripts/claims_lum.py",
        converged=_conv_lum,
    ),
    Claim(
        "unimixer",
        "UniMixer",
        "learned mixing ≥ RankMixer's fixed transpose",
        "ΔAUC learned mixing − RankMixer transpose (planted pairing)",
        0.1,
        "tests/claims/test_unimixer_claim.py",
        _unimixer,
        "python scripts/results_mixers.py --logit-lr-scale 10 --epochs 5",
        converged=_conv_mixers,
    ),
    Claim(
        "apg",
        "APG",
        "APG beats its static twin at equal serving cost",
        "ΔAUC APG − static twin (instance-specific weights)",
        0.04,
        "tests/claims/test_apg_claim.py",
        _apg,
        "python scripts/claims_apg.py (data.instance_scale > 0: per-user weights; 0: control)",
        converged=_conv_apg,
    ),
    Claim(
        "bh",
        "BH",
        "≈ 99% of the full table's AUC lift with a 1000× smaller table",
        "fraction of the full table's lift kept at 128× (code_bits = ceil(log2 V))",
        0.85,
        "tests/claims/test_bh_claim.py",
        _bh,
        "python scripts/results_embeddings.py --studies bh",
        paper=0.99,
        converged=_conv_bh,
    ),
    Claim(
        "amtl",
        "AMTL",
        "≈ 60% fewer stored embedding values at equal quality",
        "fraction of values saved (rank-1 fields; AUC within 0.01 asserted by the test)",
        0.6,
        "tests/claims/test_amtl_claim.py",
        _amtl,
        "python scripts/results_embeddings.py --studies amtl",
        paper=0.6,
        converged=_conv_amtl,
    ),
    Claim(
        "pcf_gnn",
        "PCF-GNN",
        "better than no cross features, close to the exact table, useful on unseen pairs",
        "ΔAUC on unseen pairs, GNN feature − exact table",
        0.15,
        "tests/claims/test_pcf_gnn_claim.py",
        _pcf,
        "python scripts/results_embeddings.py --studies pcf",
        converged=_conv_pcf,
    ),
    Claim(
        "exfm",
        "ExFM",
        "VMs distilling the FM through the auxiliary head beat VMs without the FM",
        "ΔAUC aux head − no FM (FM trained on 20× the VM's rows)",
        0.02,
        "tests/claims/test_exfm_claim.py",
        _exfm,
        "python scripts/results_streaming.py --only exfm --fm-batches 0",
        converged=_conv_exfm,
    ),
    Claim(
        "ocarm",
        "OCARM",
        "the distilled student beats the plain student",
        "ΔAUC distilled − plain student (engagement 90% predictable)",
        0.03,
        "tests/claims/test_ocarm_claim.py",
        _ocarm,
        "python scripts/claims_ocarm.py",
        converged=_conv_ocarm,
    ),
]


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval over seeds (a point when one seed)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, m, m
    half = T95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def verdict(c: Claim, low: float, high: float, n: int) -> str:
    """With a paper figure: reproduced (low ≥ it) / not reproduced (high < it) / inconclusive.
    Otherwise: shown (the interval excludes no effect, 0) / contradicted (it lies below 0) /
    inconclusive."""
    if n < 2:
        return "one seed: no interval"
    if c.paper is not None:
        if low >= c.paper:
            return f"reproduced (≥ {c.paper:g})"
        if high < c.paper:
            return f"not reproduced (< {c.paper:g})"
        return f"inconclusive (paper {c.paper:g})"
    if low > 0:
        return "shown"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def measure_all(out: Path, seeds: list[int], only: list[str] | None) -> None:
    for c in CLAIMS:
        if only and c.key not in only:
            continue
        for seed in seeds:
            path = out / f"{c.key}_seed{seed}.json"
            if path.exists():
                continue
            t0 = time.time()
            effect, figures = c.measure(seed)
            write_json_atomic(
                path,
                {
                    "claim": c.key,
                    "seed": seed,
                    "effect": effect,
                    "figures": figures,
                    "seconds": time.time() - t0,
                },
            )
            print(f"{c.key} seed {seed}: effect {effect:+.4f} ({time.time() - t0:.0f} s)", flush=True)


def previous_planted(page: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, claim) -> (planted cell, planted verdict) of the table now on the page: kept for a
    claim whose per-seed results are not cached here (``outputs/`` is not committed), so that
    rewriting the convergence column never erases measured planted results."""
    if not page.is_file() or START not in page.read_text():
        return {}
    block = page.read_text().split(START, 1)[1].split(END, 1)[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0] not in ("method", "---") and not cells[0].startswith("---"):
            rows[(cells[0], cells[1])] = (cells[3], cells[4])
    return rows


def table(
    out: Path, seeds: list[int], previous: dict[tuple[str, str], tuple[str, str]] | None = None
) -> list[str]:
    lines = [
        START,
        "## Claims",
        "",
        "Generated by `scripts/results_claims.py` (do not edit by hand). *Planted data*: the claim "
        f"test's mechanism, seeds {seeds} (each seed a new planted world and test set), mean and 95% "
        "t-interval over seeds; **shown** when the interval excludes no effect (0), **contradicted** when "
        "it lies below 0; where the paper gives a figure in the same units, **reproduced** / **not "
        "reproduced** against it. The test itself asserts the threshold on seed 0. "
        "*At convergence*: the paper-scale question on the synthetic world, with the command that "
        "answers it.",
        "",
        "| method | claim (paper) | effect measured on planted data | planted data: mean [95% interval] (n) | "
        "verdict (planted) | at convergence on the synthetic world | verdict (at convergence) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in CLAIMS:
        rs = [json.loads(p.read_text()) for s in seeds if (p := out / f"{c.key}_seed{s}.json").exists()]
        if rs:
            m, lo, hi = interval([r["effect"] for r in rs])
            cell = f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] ({len(rs)})"
            v = verdict(c, lo, hi, len(rs))
        elif previous and (c.method, c.claim) in previous:
            cell, v = previous[(c.method, c.claim)]
        else:
            cell, v = "not run", "–"
        conv = c.converged(out) if c.converged is not None else None
        conv_cell, conv_v = conv or (f"not yet measured at convergence: `{c.convergence}`", "–")
        lines.append(
            f"| {c.method} | {c.claim} | {c.effect} (test: `{c.test}`, threshold {c.threshold:g}) | {cell} | "
            f"{v} | {conv_cell} | {conv_v} |"
        )
    lines += [
        "",
        "Known departures at the measured budgets (details in each test's comments and the pages below): "
        "BH keeps 88–92% of the lift at 128× on the planted test (200 full-batch steps), while at "
        "convergence on a 1.09M-value world it matches or beats a full table that is itself the weaker "
        "baseline there (see its section); AMTL's widths follow the penalty, not "
        "each field's need (on a rank-4 task the same penalty loses 0.04–0.06 AUC); ExFM's gain needs "
        "one pass over the VM's stream (many full-batch epochs erase it) and an FM that beats the VMs; "
        "LUM's gain needs the InfoNCE pre-training to leave its plateau, and with the pre-training "
        "early-stopped in every run and DCNv2 early-stopped it was not measurable at any of the three "
        "LUM sizes of its section (the +0.035 of the LUM page is against a one-epoch DCNv2); packed "
        "GRAB gains with the history up to K = 128 on the 400-user world and loses beyond it, where "
        "the oracle still gains; APG needs per-instance weights the static network cannot learn "
        "itself, and on a world with per-user weights (a skewed user field) the static twin learns "
        "most of that term and APG does not beat it. PCF-GNN's storage claim is "
        "contradicted by the embeddings page's own runs (the GNN stores 55.6× more values than the "
        "exact table on synthetic_criteo, 11.7× on synthetic; issue 13): its storage advantage needs "
        "more field pairs and rows than those runs have — the crossover study in "
        "[results/claims.md](results/claims.md#pcf-gnn-storage-crossover) counts where the table "
        "outgrows the GNN.",
        END,
    ]
    return lines


def write(lines: list[str], page: Path) -> None:
    text = page.read_text()
    block = "\n".join(lines)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:  # after the page's first paragraph block (the title and its introduction)
        title, _, body = text.partition("\n\n")
        intro, _, tail = body.partition("\n\n")
        text = f"{title}\n\n{intro}\n\n{block}\n\n{tail}"
    page.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", nargs="+", choices=[c.key for c in CLAIMS], default=None)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "claims"))
    ap.add_argument("--page", default=str(ROOT / "docs" / "results.md"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.report_only:
        import torch

        torch.set_num_threads(1)
        measure_all(out, args.seeds, args.only)
    write(table(out, args.seeds, previous_planted(Path(args.page))), Path(args.page))
    print(f"wrote the claims table into {args.page}")


if __name__ == "__main__":
    main()
