"""Invariants of the committed data in results/, read as data and recomputed from the committed per-query results.

tests/test_report.py, test_screen.py and test_tune.py check that README's tables are the JSON they were made from:
that catches drift, not wrong numbers. These checks hold whatever the files say today, over every file that exists
(a check without files is skipped):

* results/screen/*.json: every verdict the screen decided (pass or fail) is the gate's verdict on the full results,
  per variant and per task, and that gate verdict and each measured delta are recomputed here from the committed
  per-query NDCG@10 with the point rule by hand;
* results/**/tune/tune.json (docs/tune-schema.md): each evaluated build's gate outcome is recomputed the same way, no
  screen fail or pass is contradicted by it, and the recommended build is the fastest passing one in the bench file
  beside it (tune/bench.json), at the document's bench point;
* every quoted interval holds its point: each 95% CI of README's quality tables holds its Δ, each gate check's CI in
  a tune document holds its delta, each predicted interval of a screen holds its predicted delta.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from readme_text import REPO, md_rows

SCREEN_DOCS = sorted((REPO / "results" / "screen").glob("*.json"))
TUNE_DOCS = sorted((REPO / "results").rglob("tune/tune.json"))


def _params(paths: list[Path], what: str) -> list:
    return [pytest.param(p, id=str(p.relative_to(REPO))) for p in paths] or [
        pytest.param(None, marks=pytest.mark.skip(reason=f"no committed {what}"))]


def _slug(model_id: str) -> str:
    return model_id.rstrip("/").replace("/", "__").replace(":", "_")


def _per_query(results: Path, slug: str, task: str, split: str, variant: str) -> dict[str, float] | None:
    folder = task if split == "test" else f"{task}.{split}"
    path = results / slug / folder / f"{variant}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["per_query_ndcg_at_10"]


def _delta(variant: dict[str, float], base: dict[str, float]) -> float:
    """The paired mean NDCG@10 delta over the queries both have (the gate pairs by query)."""
    assert variant.keys() == base.keys()
    return math.fsum(variant[q] - base[q] for q in base) / len(base)


def _point_rule(deltas: dict[str, float], baselines: dict[str, float], gate: dict) -> str:
    """README "Gating a release", point rule: a delta >= -limit passes; per task or on the macro mean; relative limits
    are a fraction of Float32's NDCG@10."""
    def limit(base: float) -> float:
        return gate["max_drop"] * base if gate.get("relative") else gate["max_drop"]

    if gate.get("scope", "per-task") == "mean":
        mean_delta = math.fsum(deltas.values()) / len(deltas)
        return "pass" if mean_delta >= -limit(math.fsum(baselines.values()) / len(baselines)) else "fail"
    return "pass" if all(d >= -limit(baselines[t]) for t, d in deltas.items()) else "fail"


# -------------------------------------------------------------------------------------------------------- screen


@pytest.mark.parametrize("path", _params(SCREEN_DOCS, "screen documents (results/screen/*.json)"))
def test_no_screen_verdict_is_contradicted_by_its_gate(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    slug = _slug(doc["model"])
    dirs = [REPO / d for d in doc["results_dirs"]]
    assert doc["rows"]
    for row in doc["rows"]:
        screen, variant = row["screen"], row["variant"]
        deltas, baselines = {}, {}
        for task in screen["tasks"]:
            pair = next(((v, b) for d in dirs
                         if (v := _per_query(d, slug, task["task"], task["split"], variant)) is not None
                         and (b := _per_query(d, slug, task["task"], task["split"], "float32")) is not None), None)
            assert pair is not None, f"{variant} {task['task']}: no committed full result in {doc['results_dirs']}"
            deltas[task["task"]] = _delta(*pair)
            baselines[task["task"]] = math.fsum(pair[1].values()) / len(pair[1])
            assert row["measured"][task["task"]] == pytest.approx(deltas[task["task"]], abs=1e-12)
            low, high = task["predicted_ci"]
            assert low <= task["predicted_delta"] <= high, (variant, task["task"])  # the quoted interval holds its point
            if task["outcome"] != "uncertain":  # a decided task verdict is the measured delta's side of the limit
                assert task["outcome"] == ("pass" if deltas[task["task"]] >= -task["limit"] else "fail"), (variant, task["task"])
        gate = _point_rule(deltas, baselines, {"max_drop": doc["max_drop"], "relative": screen.get("relative", False)})
        assert row["gate"] == gate, variant  # the recorded gate is the gate of the committed results
        if screen["outcome"] != "uncertain":
            assert screen["outcome"] == gate, f"{variant}: screen {screen['outcome']}, gate {gate}"
        assert row["measured_macro"] == pytest.approx(math.fsum(deltas.values()) / len(deltas), abs=1e-12)
    contradicted = [r["variant"] for r in doc["rows"] if r["screen"]["outcome"] not in ("uncertain", r["gate"])]
    assert doc.get("contradicted", []) == contradicted == []


# ---------------------------------------------------------------------------------------------------------- tune


@pytest.mark.parametrize("path", _params(TUNE_DOCS, "tune documents (results/**/tune/tune.json)"))
def test_tune_recommends_the_fastest_passing_build_of_its_bench(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["schema"] == "evalsuite.tune/1"
    results, slug = path.parents[2], path.parents[1].name
    gate = doc["gate"]
    builds = {b["variant"]: b for b in doc["builds"]}
    passing = []
    for name, build in builds.items():
        if build["gate"] is None:
            continue
        checks = {c["scope"]: c for c in build["gate"]["checks"]}
        for check in checks.values():  # every quoted interval holds its point
            assert check["ci_low"] <= check["delta"] <= check["ci_high"], (name, check["scope"])
        if gate["rule"] == "point":  # recomputed from the committed per-query results
            deltas, baselines = {}, {}
            for task in doc["tasks"]:
                v = _per_query(results, slug, task, gate["split"], name)
                b = _per_query(results, slug, task, gate["split"], "float32")
                assert v is not None and b is not None, f"{name} {task}: no committed full result beside {path}"
                deltas[task], baselines[task] = _delta(v, b), math.fsum(b.values()) / len(b)
                assert checks[task]["delta"] == pytest.approx(deltas[task], abs=1e-12)
            assert build["gate"]["outcome"] == _point_rule(deltas, baselines, gate), name
        screen = build["screen"]
        if screen is not None and screen["outcome"] != "uncertain" and gate["rule"] == "point" and gate["scope"] == "per-task":
            assert screen["outcome"] == build["gate"]["outcome"] or any(name in n for n in doc["notes"]), \
                f"{name}: screen {screen['outcome']} contradicted by the gate ({build['gate']['outcome']}) without a note"
        if build["gate"]["outcome"] != "fail":
            passing.append(name)
    bench_file = path.parent / "bench.json"
    if not bench_file.is_file():
        pytest.skip(f"no bench.json beside {path}")
    bench = json.loads(bench_file.read_text(encoding="utf-8"))
    point = doc["bench_point"]
    speed = {r["variant"]: r["speedup"] for r in bench["results"] if (r["length"], r["batch"]) == (point["length"], point["batch"])}
    assert set(passing) <= set(speed), "a passing build was not timed"
    expected = min(passing, key=lambda n: (-speed[n], bench["variants"][n]["size_bytes"], n)) if passing else None
    assert doc["recommended"] == expected
    for name in passing:
        assert builds[name]["speedup"] == pytest.approx(speed[name], rel=1e-12)


# ------------------------------------------------------------------------------------------------ README intervals


def _readme_quality_tables() -> list[tuple[str, int, int, list[str]]]:
    """Every row of a README table with a Δ column and a 95% CI column: (first cell, Δ index, CI index, cells)."""
    tables: list[list[str]] = [[]]
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("|"):
            tables[-1].append(line.strip())
        elif tables[-1]:
            tables.append([])
    rows = []
    for table in tables:
        if not table:
            continue
        header, *body = md_rows("\n".join(table))
        if "Δ" in header and "95% CI" in header:
            d, c = header.index("Δ"), header.index("95% CI")
            rows += [(cells[0], d, c, cells) for cells in body if not set("".join(cells)) <= set(":- ")]
    return rows


QUALITY_ROWS = _readme_quality_tables()


def test_every_quoted_ci_of_readme_holds_its_delta() -> None:
    if not QUALITY_ROWS:
        pytest.skip("README has no table with Δ and 95% CI columns")
    number = re.compile(r"^\[([-+]\d+\.\d+), ([-+]\d+\.\d+)\]$")
    checked = 0
    for name, d, c, cells in QUALITY_ROWS:
        if cells[d] in ("—", ""):
            continue
        match = number.match(cells[c])
        assert match, f"{name}: {cells[c]!r} is not an interval"
        low, high = float(match[1]), float(match[2])
        assert low <= float(cells[d]) <= high, f"{name}: Δ {cells[d]} outside its 95% CI {cells[c]}"
        checked += 1
    assert checked >= 1
