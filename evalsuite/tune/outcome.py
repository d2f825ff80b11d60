"""``evalsuite tune`` end to end: the search, the bench of what it confirmed, the front and the recommendation.

The document (``evalsuite.tune/1``, docs/tune-schema.md) is printed by ``tune --json`` and written to
``<results>/<model>/tune/tune.json``; the bench of the builds goes to ``<results>/<model>/tune/bench.json`` (an
``evalsuite.bench/1`` document), so the seed benchmark in ``bench.json`` is never overwritten.

Example:
    >>> outcome = tune(TuneConfig(tasks=["scifact", "nfcorpus"], data_dir=Path("beir")), say=print)  # doctest: +SKIP
    >>> print("\\n".join(outcome.lines()))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from evalsuite.bench import BenchConfig, BenchResult, run_bench
from evalsuite.files import atomic_write_json
from evalsuite.run.executor import Executor
from evalsuite.run.units import Progress
from evalsuite.tune.pareto import Point, front, recommend
from evalsuite.tune.search import Say, Search, TuneConfig, search
from evalsuite.variants import BASELINE, VariantSpec

SCHEMA = "evalsuite.tune/1"


@dataclass
class TuneOutcome:
    """What tune found: the search, the bench, every build as a point, the front and the recommended build."""

    cfg: TuneConfig
    found: Search
    bench: BenchResult | None
    points: list[Point]
    command: str = ""
    created: str = ""

    @property
    def front(self) -> list[Point]:
        return front(self.points)

    @property
    def recommended(self) -> Point | None:
        return recommend([p for p in self.points if p.variant != BASELINE.name])

    @property
    def speedups(self) -> dict[str, float]:
        """Speedup over Float32 at the bench point of every timed build (evaluated ones and their starts)."""
        g = self.cfg.gate
        measured = self.bench.measurements if self.bench else []
        return {m.variant: m.speedup for m in measured if (m.length, m.batch) == (g.speed_length, g.speed_batch)}

    def to_dict(self) -> dict[str, object]:
        """The documented ``evalsuite.tune/1`` document."""
        g = self.cfg.gate
        on_front = {p.variant for p in self.front}
        speed = self.speedups
        builds = []
        for name, b in self.found.builds.items():
            builds.append({
                "variant": name, "base": b.base, "float_nodes": list(b.float_nodes),
                "full_range_nodes": list(b.full_range), "config_file": b.config_file,
                "progressive": b.progressive.to_dict() if b.progressive else None,
                "gate": None if b.verdict is None else {"outcome": b.verdict.outcome, "reason": b.verdict.reason, "checks": [
                    {"scope": c.scope, "outcome": c.outcome, "decides": c.decides, "limit": c.limit, "ndcg_at_10": c.comparison.mean_variant,
                     "float32_ndcg_at_10": c.comparison.mean_baseline, "delta": c.comparison.mean_delta, "ci_low": c.comparison.ci_low,
                     "ci_high": c.comparison.ci_high, "p_value": c.comparison.p_value} for c in b.verdict.checks]},
                "speedup": speed.get(name),
                "speedup_kept": speed[name] / speed[b.base] if name in speed and b.base != name and b.base in speed else None,
                "size_bytes": b.size_bytes, "on_front": name in on_front,
            })
        rec = self.recommended
        return {
            "schema": SCHEMA, "model": {"id": self.found.source.model_id, "weights_sha256": self.found.source.weights_sha256},
            "tasks": self.found.tasks, "starts": list(self.cfg.starts),
            "gate": {"max_drop": g.max_drop, "relative": g.relative, "scope": g.scope, "rule": g.rule, "split": g.split,
                     "compositions": g.compositions},
            "stopping": self.cfg.stopping.to_dict(),
            "bench_point": {"length": g.speed_length, "batch": g.speed_batch, "repeats": self.cfg.bench_repeats},
            "builds": builds, "points": [p.to_dict() for p in self.points], "front": [p.variant for p in self.front],
            "recommended": rec.variant if rec else None,
            "sensitivity": {k: v.to_dict() for k, v in self.found.rankings.items()},
            "budget_minutes": self.cfg.budget_minutes, "budget_exhausted": self.found.budget_exhausted,
            "notes": self.found.notes, "created": self.created, "command": self.command,
        }

    def lines(self) -> list[str]:
        """The front as a table, then the recommended build with its evidence."""
        g = self.cfg.gate
        out = [f"tune {self.found.source.model_id} on {', '.join(self.found.tasks)}: {g.describe()}; speed at "
               f"{g.speed_length} tokens, batch {g.speed_batch}",
               f"{'build':<26} {'gate':<12} {'worst delta':>11} {'speedup':>8} {'of base':>7} {'MB':>6}  front  float nodes"
               "  8-bit nodes"]
        on_front = {p.variant for p in self.front}
        speed = self.speedups
        for p in sorted(self.points, key=lambda p: (-p.speedup, p.variant)):
            kept = f"{100 * p.speedup / speed[p.base]:>6.1f}%" if p.base != p.variant and p.base in speed else f"{'':>7}"
            out.append(f"{p.variant:<26} {p.gate:<12} {p.worst_delta:>+11.4f} {p.speedup:>7.2f}x {kept} {p.size_bytes / 1e6:>6.1f}  "
                       f"{'yes' if p.variant in on_front else '':<5}  {len(p.float_nodes):>11}  {len(p.full_range):>11}")
        rec = self.recommended
        if rec is None:
            out.append("no build passes the gate")
        else:
            build = self.found.builds[rec.variant]
            assert build.verdict is not None
            out.append(f"recommended: {rec.variant} ({rec.speedup:.2f}x Float32, {rec.size_bytes / 1e6:.1f} MB, "
                       f"{len(rec.float_nodes)} node(s) in float{': ' + ', '.join(rec.float_nodes) if rec.float_nodes else ''}"
                       f"{'; 8-bit weights: ' + ', '.join(rec.full_range) if rec.full_range else ''})")
            out.extend("  " + c.line() for c in build.verdict.checks)
        out.extend(f"decided early, not evaluated in full: {b.progressive.reason}" for b in self.found.builds.values()
                   if b.verdict is None and b.progressive is not None and b.progressive.outcome == "fail")
        out.extend(f"note: {n}" for n in self.found.notes)
        return out


def tune(cfg: TuneConfig, say: Say | None = None, progress: Progress | None = None, command: str = "",
         executor: Executor | None = None) -> TuneOutcome:
    """Search (full evaluations on ``executor``, default this process), then time Float32, every evaluated build and its
    start side by side on this machine, then save the document."""
    say = say or (lambda _m: None)
    found = search(cfg, say, progress, executor)
    evaluated = [name for name, b in found.builds.items() if b.verdict is not None]
    # a start that failed progressively is timed too (not evaluated in full), so a mixed build's share of its speedup
    # is known
    timed = list(dict.fromkeys([found.builds[n].base for n in evaluated] + evaluated))
    bench = None
    points: list[Point] = []
    if evaluated:
        say(f"timing {len(timed)} build(s) against Float32 at {cfg.gate.speed_length} tokens, batch {cfg.gate.speed_batch}")
        bench = run_bench(BenchConfig(
            variants=tuple(VariantSpec.parse(n) for n in timed), model=cfg.model, lengths=(cfg.gate.speed_length,),
            batches=(cfg.gate.speed_batch,), repeats=cfg.bench_repeats, warmup=1, level_families=(), cache_dir=cfg.cache_dir,
            measure_memory=False), say=say, command=command)
        atomic_write_json(_folder(cfg, found) / "bench.json", bench.to_dict())
        points.append(Point(BASELINE.name, BASELINE.name, (), "pass", 0.0, 1.0, bench.variants[BASELINE.name].size_bytes))
        for name in evaluated:
            b = found.builds[name]
            assert b.verdict is not None
            worst = min(c.comparison.mean_delta for c in b.verdict.checks if c.scope != "mean")
            cell = bench.cell(name, cfg.gate.speed_length, cfg.gate.speed_batch)
            points.append(Point(name, b.base, b.float_nodes, b.verdict.outcome, worst, cell.speedup, bench.variants[name].size_bytes,
                                b.full_range))
    outcome = TuneOutcome(cfg, found, bench, points, command, datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    atomic_write_json(_folder(cfg, found) / "tune.json", outcome.to_dict())
    return outcome


def _folder(cfg: TuneConfig, found: Search) -> Path:
    return cfg.results_dir / found.source.slug / "tune"
