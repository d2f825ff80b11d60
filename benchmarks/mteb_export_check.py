"""Export stored results in mteb's layout and read every one back with mteb's own API: the same NDCG@10 per
(variant, batch policy, task) as evalsuite's results, or a non-zero exit.

    python benchmarks/mteb_export_check.py                        # results/ and results/policy/*, a temporary cache
    python benchmarks/mteb_export_check.py --cache mteb-cache --published ~/mteb-results/results

Each exported file is read by three of mteb's readers, and each must give ``round(ndcg_at_10, 5)`` (mteb rounds
retrieval scores to 5 decimals), within 5e-6 of evalsuite's exact mean of per-query NDCG@10 (recomputed here):
1. ``TaskResult.from_disk(file)``;
2. ``ResultCache(cache).load_task_result(task, name, revision, experiment_name=...)``;
3. ``ResultCache(cache).load_results(models=[ModelMeta], tasks=[task], load_experiments="match_kwargs")``.
With ``--published DIR`` (a folder of the public results repository, github.com/embeddings-benchmark/results:
``results/<org>__<model>/<revision>/<Task>.json``) it is copied to ``<cache>/remote/results`` and the variants are
shown beside it, the way README.md describes.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results-dir", type=Path, action="append", help="default: results/ and results/policy/*")
    ap.add_argument("--cache", type=Path, default=None, help="mteb cache folder to (re)create (default: temporary)")
    ap.add_argument("--published", type=Path, default=None, help="published mteb results to show beside the export")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("mteb").setLevel(logging.ERROR)
    import mteb
    import pandas as pd
    from mteb.results import TaskResult

    from evalsuite.results import ResultStore
    from evalsuite.results.mteb_export import export_mteb

    roots = args.results_dir or [ROOT / "results", *sorted(p for p in (ROOT / "results" / "policy").glob("*") if p.is_dir())]
    cache_dir = args.cache or Path(tempfile.mkdtemp(prefix="mteb-cache-"))
    if args.cache and cache_dir.exists():
        shutil.rmtree(cache_dir)
    stored = [item for root in roots for item in ResultStore(root).items()]
    exported = export_mteb(stored, cache_dir / "results")
    print(f"mteb {mteb.__version__}: exported {len(exported)} results of {', '.join(map(str, roots))} to {cache_dir / 'results'}")
    cache = mteb.ResultCache(cache_path=cache_dir)
    by_source = {str(source): e for e in exported for source in e.sources}
    rows, failures = [], 0
    for source, r in stored:
        e = by_source[str(source)]
        exact = math.fsum(r.per_query_ndcg_at_10.values()) / len(r.per_query_ndcg_at_10)

        def ndcg(task_result: TaskResult | None, split: str = r.task.split) -> float | None:
            return task_result.get_score(splits=[split], getter=lambda s: s["ndcg_at_10"]) if task_result else None

        task = e.task_result.task_name
        read = [ndcg(TaskResult.from_disk(e.path)),
                ndcg(cache.load_task_result(task, e.meta.name, e.meta.revision, experiment_name=e.meta.experiment_name))]
        loaded = cache.load_results(models=[e.meta], tasks=[task], include_remote=False, load_experiments="match_kwargs")
        found = [(m.model_name, m.model_revision, m.experiment_name, ndcg(t)) for m in loaded for t in m.task_results]
        read.append(found[0][3] if found == [(e.meta.name, e.meta.revision, e.meta.experiment_name, found[0][3])] else None)
        ok = abs(exact - r.ndcg_at_10) < 1e-12 and all(v == round(exact, 5) and abs(v - exact) <= 5e-6 for v in read)  # type: ignore[operator]
        failures += not ok
        rows.append({"variant": r.variant, "policy": r.batch_policy.get("key"), "task": r.task.name,
                     "evalsuite": f"{r.ndcg_at_10:.6f}", "from_disk": read[0], "load_task_result": read[1],
                     "load_results": read[2], "equal": ok})
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"{len(rows) - failures}/{len(rows)} (variant, policy, task) read back by mteb with NDCG@10 == round(evalsuite's, 5)")

    if args.published:
        shutil.copytree(args.published, cache_dir / "remote" / "results", dirs_exist_ok=True)
        tasks = sorted({e.task_result.task_name for e in exported})
        beside = mteb.ResultCache(cache_path=cache_dir).load_results(tasks=mteb.get_tasks(tasks=tasks), validate_and_filter=True)
        print(f"\nbeside published results ({args.published}), load_results(tasks=..., validate_and_filter=True):")
        print(beside.to_dataframe().set_index("task_name").drop(columns="is_public", errors="ignore").T.to_string())
    print("OK" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
