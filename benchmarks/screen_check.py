"""How well `evalsuite screen` predicts the full evaluation: every variant with stored full results, screened cold.

For each variant with results on every task, the screen's predicted NDCG@10 delta (per task and macro mean) is
printed beside the measured one, and the screen's verdict beside the gate's (0.01 per task, point rule), with
Pearson r of predicted against measured macro deltas and the screen's wall and CPU seconds for the seed set.

The candidates' embeddings go to a fresh cache (only the ONNX files and Float32's embeddings are linked in from
--cache-dir), so each screen embeds its sample as it would the first time; Float32 costs a file read, as the
brief of the screen assumes (its first load on a machine tokenizes the tasks once and is reported separately).

    python benchmarks/screen_check.py --data-dir ../shared/data/beir --output results/screen/all-MiniLM-L6-v2.json \
        --results-dir results --results-dir results/kinds --results-dir results/tune

With several ``--results-dir``, every variant with full results in any of them is screened once (each judged on its
own folder's results, all against the same Float32); run it from the repository root so mixed builds find
``configs/mixed/``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from scipy.stats import pearsonr

from evalsuite.analysis.compare import compare_variant
from evalsuite.analysis.gate import GateConfig, judge
from evalsuite.build import build_variant
from evalsuite.config import default_cache_dir
from evalsuite.data.tasks import find_task
from evalsuite.files import atomic_write_json
from evalsuite.machine import cpu_info, versions
from evalsuite.models import DEFAULT_MODEL, resolve_model
from evalsuite.results import load_results
from evalsuite.screen import Screener, ScreenSample
from evalsuite.ui import console
from evalsuite.variants import BASELINE, named_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/beir"))
    parser.add_argument("--results-dir", type=Path, action="append", help="repeatable (default: results)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--warm", action="store_true", help="use --cache-dir for the candidates too (a repeated screen)")
    parser.add_argument("--output", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    out = console()

    source = resolve_model(args.model)
    cfg = GateConfig(max_drop=args.max_drop)
    stores = [load_results(folder, args.model) for folder in args.results_dir or [Path("results")]]
    where = {}  # variant -> the first store that holds its full results
    for data in stores:
        for v in data.variants():
            if all(v in data.results[t] for t in data.tasks) and data.tasks == stores[0].tasks:
                where.setdefault(v, data)
    variants = list(where)
    data = stores[0]
    seed = set(named_sets()["seed"])
    float32 = build_variant(source, BASELINE, args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="screen-cache-") as tmp:
        cache = args.cache_dir if args.warm else _cold_cache(Path(tmp), args.cache_dir, float32.sha256)
        screener = Screener(source, [find_task(t) for t in data.tasks], data_dir=args.data_dir, cache_dir=cache,
                            sample=ScreenSample(), say=lambda m: out.print(f"[dim]{m}[/dim]"))
        screener.prepare()
        rows, wall0, cpu0 = [], time.perf_counter(), time.process_time()
        seed_wall = seed_cpu = 0.0
        for name in variants:
            w, c = time.perf_counter(), time.process_time()
            result = screener.screen(name, args.max_drop)
            w, c = time.perf_counter() - w, time.process_time() - c
            if name in seed:
                seed_wall, seed_cpu = seed_wall + w, seed_cpu + c
            verdict = judge(compare_variant(where[name], name, cfg), cfg)
            measured = {t: verdict_delta(verdict, t) for t in data.tasks}
            rows.append({"variant": name, "screen": result.to_dict(), "gate": verdict.outcome, "measured": measured,
                         "measured_macro": sum(measured.values()) / len(measured), "wall_s": w, "cpu_s": c})
            out.print(_line(rows[-1], data.tasks), highlight=False)
        total_wall, total_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    predicted = [r["screen"]["predicted_macro_delta"] for r in rows]
    measured = [r["measured_macro"] for r in rows]
    r_value = float(pearsonr(predicted, measured).statistic) if len(rows) > 2 else float("nan")
    wrong = [r["variant"] for r in rows if r["screen"]["outcome"] != "uncertain" and r["screen"]["outcome"] != r["gate"]]
    uncertain = [r["variant"] for r in rows if r["variant"] in seed and r["screen"]["outcome"] == "uncertain"]
    baseline_s = screener.baseline_seconds
    out.print(f"\nPearson r (predicted vs measured macro NDCG@10 delta, {len(rows)} variants): {r_value:.4f}")
    out.print(f"verdicts contradicted by the gate: {len(wrong)} {wrong}; uncertain seed variants: {len(uncertain)} {uncertain}")
    out.print(f"seed set ({sum(r['variant'] in seed for r in rows)} variants): {seed_wall:.1f} s wall, {seed_cpu:.1f} s CPU "
              f"(all {len(rows)} screens {total_wall:.1f} s wall, {total_cpu:.1f} s CPU); Float32 and task loading {baseline_s:.1f} s, once")
    load = os.getloadavg()
    out.print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores; cpu {cpu_info()}")
    if args.output:
        atomic_write_json(args.output, {
            "model": source.model_id, "results_dirs": [str(p) for p in args.results_dir or [Path("results")]], "max_drop": args.max_drop, "sample": ScreenSample().to_dict(), "cold": not args.warm,
            "pearson_r": r_value, "contradicted": wrong, "uncertain_seed": uncertain, "seed_wall_s": seed_wall,
            "seed_cpu_s": seed_cpu, "baseline_load_s": baseline_s, "total_wall_s": total_wall, "total_cpu_s": total_cpu,
            "load_average": load, "machine": cpu_info(), "versions": versions(), "rows": rows})
        out.print(f"wrote {args.output}")


def verdict_delta(verdict: object, task: str) -> float:
    return next(c.comparison.mean_delta for c in verdict.checks if c.scope == task)  # type: ignore[attr-defined]


def _cold_cache(tmp: Path, cache: Path, float32_sha: str) -> Path:
    """A cache that shares the ONNX files and Float32's embeddings with ``cache`` and holds nothing else."""
    (tmp / "embeddings").mkdir(parents=True)
    (tmp / "onnx").symlink_to((cache / "onnx").resolve(), target_is_directory=True)
    (tmp / "embeddings" / float32_sha[:16]).symlink_to((cache / "embeddings" / float32_sha[:16]).resolve(), target_is_directory=True)
    return tmp


def _line(row: dict, tasks: list[str]) -> str:  # type: ignore[type-arg]
    s = row["screen"]
    by_task = {t["task"]: t for t in s["tasks"]}
    cells = "  ".join(f"{t} pred {by_task[t]['predicted_delta']:+.4f} [{by_task[t]['predicted_ci'][0]:+.4f}, "
                      f"{by_task[t]['predicted_ci'][1]:+.4f}] meas {row['measured'][t]:+.4f}" for t in tasks)
    ok = "uncertain" if s["outcome"] == "uncertain" else ("agrees" if s["outcome"] == row["gate"] else "WRONG")
    return (f"{row['variant']:<15} macro pred {s['predicted_macro_delta']:+.4f} meas {row['measured_macro']:+.4f}  {cells}  "
            f"screen {s['outcome']:<9} gate {row['gate']:<4} {ok}  {row['wall_s']:.1f} s wall {row['cpu_s']:.1f} s CPU")


if __name__ == "__main__":
    main()
