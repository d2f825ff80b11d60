"""The self-contained HTML report (every section, no external reference, every number of the markdown table, hostile
text escaped, with and without bench results) and the mteb export read back by mteb's own API on a tiny model."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_beir
from matplotlib.text import Text
from test_gate import MODEL, noisy, run_cli, write_variant
from test_report import SLUG, write_bench

from evalsuite.analysis.plots import pareto_figure
from evalsuite.analysis.render import render
from evalsuite.analysis.report import build_report
from evalsuite.errors import EvalsuiteError
from evalsuite.results import ResultStore


def _script():  # noqa: ANN202
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "render_html.py"
    spec = importlib.util.spec_from_file_location("render_html", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


page_check = _script()
ALL = ("machine", "quality", "gate", "per-query", "speed", "recommendation", "notes")


def _write_results(root: Path) -> Path:
    write_variant(root, "qint8", {"SciFact": np.full(40, -0.03), "NFCorpus": np.full(30, -0.01)}, size=23_000_000)
    write_variant(root, "float16", {"SciFact": np.zeros(40), "NFCorpus": np.zeros(30)}, size=45_000_000)
    write_variant(root, "qint8-pc-7bit", {"SciFact": noisy(-0.004, 0.01, 40, 1), "NFCorpus": noisy(-0.002, 0.01, 30, 2)}, size=23_000_000)
    return root


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    return _write_results(tmp_path / "results")


@pytest.fixture(scope="module")
def plain_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The HTML page and the markdown of those results, rendered once for the checks that only read them."""
    report = build_report(_write_results(tmp_path_factory.mktemp("page") / "results"))
    return render(report, "html"), render(report, "md")


def float32_mean(root: Path, task: str) -> float:
    values = list(ResultStore(root).get(SLUG, task, "float32").per_query_ndcg_at_10.values())  # type: ignore[union-attr]
    return math.fsum(values) / len(values)


def rows_of(page: str) -> dict[str, list[list[str]]]:
    """HTML table rows by their first cell (several tables can have a row for one variant)."""
    out: dict[str, list[list[str]]] = {}
    for row in page_check.Page(page).rows:
        out.setdefault(row[0], []).append(row)
    return out


# ---------------------------------------------------------------------------------------------------- the page


def test_page_has_every_section_no_external_reference_and_every_markdown_number(results: Path) -> None:
    write_bench(results, {"float32": 1.0, "float16": 0.8, "qint8-pc-7bit": 2.2, "qint8": 2.6})
    report = build_report(results)
    page = render(report, "html", command="evalsuite report --format html")
    check = page_check.check_page(page, render(report, "md"))
    assert check.problems == []
    assert check.sections == list(ALL) and check.images == 3
    assert check.rows == len(report.rows) + 1 and check.numbers > 60  # every markdown row (and header), every number
    # Hand-computed values, found in the right rows.
    sci, nf = float32_mean(results, "SciFact"), float32_mean(results, "NFCorpus")
    rows = rows_of(page)
    comparison = rows["qint8"][0]
    # qint8 is batch-dependent: each task cell adds its spread over the stored batch compositions (identical here)
    assert comparison[5:10] == [f"{nf - 0.01:.4f} ±0.0000", f"{sci - 0.03:.4f} ±0.0000", f"{(nf + sci) / 2 - 0.02:.4f}",
                                "-0.0200", f"{100 * -0.02 / ((nf + sci) / 2):+.2f}%"]
    assert comparison[-1] == "fail" and rows["float16"][0][-1] == "pass" and rows["float32"][0][-1] == "baseline"
    sci_check = next(r for r in page_check.Page(page).rows if r[:2] == ["fail SciFact", f"{sci - 0.03:.4f}"])
    assert sci_check[2:4] == [f"{sci:.4f}", "-0.0300"] and sci_check[-1] == "drop 0.0300 > max drop 0.0100"
    assert "max drop 0.0100 NDCG@10 (absolute)" in page and "every task must pass" in page
    # Speed: the row of the bench point (128 tokens) holds qint8's speedup and median (10 ms / 2.6).
    assert ["128", "10.0", "0.80x (12.5 ms)", "2.20x (4.55 ms)", "2.60x (3.85 ms)"] in rows["128"]
    assert '<div class="rec-name">qint8-pc-7bit</div>' in page  # the fastest build that passes
    assert "evalsuite report --format html" in page


@pytest.mark.parametrize(("bad", "problem"), [
    ('<script src="https://cdn.example/x.js"></script>', "<script>"),
    ("<script>1</script>", "<script>"),
    ('<link rel="stylesheet" href="https://cdn.example/x.css">', "<link>"),
    ('<img src="http://example.org/x.png">', "is not a data: URI"),
    ('<img src="//example.org/x.png">', "is not a data: URI"),
    ('<a href="https://example.org">x</a>', "not a link inside the page"),
    ('<p style="background:url(https://example.org/x.png)">x</p>', "CSS url("),
    ("<style>@import 'x.css';</style>", "CSS @import"),
    ('<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">', "is not an inline base64 PNG"),
    ('<p onclick="x()">x</p>', "event handler"),
])
def test_the_page_check_catches_external_references(plain_page: tuple[str, str], bad: str, problem: str) -> None:
    page, md = plain_page
    page = page.replace("</main>", bad + "</main>")
    assert any(problem in p for p in page_check.check_page(page, md, ALL[:4]).problems)


def test_the_page_check_catches_a_missing_number_or_row(plain_page: tuple[str, str]) -> None:
    page, md = plain_page
    mean = rows_of(page)["qint8"][0][7]
    problems = page_check.check_page(page.replace(f">{mean}<", ">0.xxxx<"), md).problems
    assert any(f"{mean} (row 'qint8')" in p for p in problems)
    assert any("markdown row qint8 |" in p for p in problems)
    assert any("section 'speed' is missing" in p for p in problems)  # no bench results: no speed section


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    root = tmp_path / "results"
    write_variant(root, "qint8", {"SciFact": np.full(20, -0.001)}, model_id=f"org/{evil}")
    report = build_report(root)
    report = dataclasses.replace(report, notes=(evil,))
    page = render(report, "html", command=f"evalsuite report {evil}")
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;") >= 6
    check = page_check.check_page(page, render(report, "md"), tuple(s for s in ALL if s != "speed"))
    assert check.problems == [] and check.images == 2


def test_page_without_bench_results(results: Path) -> None:
    report = build_report(results)
    page = render(report, "html")
    check = page_check.check_page(page, render(report, "md"), tuple(s for s in ALL if s != "speed"))
    assert check.problems == [] and "speed" not in check.sections and check.images == 2
    assert 'id="fig-pareto"' not in page and "No recommendation:" in page and "run `evalsuite bench`" in page


def test_cli_writes_the_page(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "report.html"
    code, out, err = run_cli(monkeypatch, capsys, "report", "--results-dir", str(results), "-o", str(target))
    page = target.read_text(encoding="utf-8")
    assert code == 0 and out == "" and "wrote" in err and page.startswith("<!doctype html>")
    assert f"evalsuite report --results-dir {results} -o {target}" in page  # the command that wrote it


def test_pareto_labels_do_not_overlap(results: Path) -> None:
    write_bench(results, {"float32": 1.0, "float16": 1.01, "qint8-pc-7bit": 2.0, "qint8": 2.02})  # two close pairs
    fig = pareto_figure(build_report(results))
    fig.canvas.draw()
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t) for t in ax.texts]  # the label itself, without its leader line
    assert len(boxes) == 4
    inside = ax.get_window_extent()
    for i, a in enumerate(boxes):
        assert inside.x0 <= a.x0 and a.x1 <= inside.x1 and inside.y0 <= a.y0 and a.y1 <= inside.y1
        assert not any(a.overlaps(b) for b in boxes[i + 1:])


# ---------------------------------------------------------------------------------------------------- mteb export


@pytest.fixture(scope="module")
def tiny_runs(tiny_model: Path, shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real results of a tiny model: float32 and qint8 (two batch compositions) under the default batch policy, qint8
    again with batch 1 (one text per call: one composition)."""
    from evalsuite.encode import BatchPolicy
    from evalsuite.run import SweepConfig, run_sweep
    from evalsuite.variants import VariantSpec

    base = tmp_path_factory.mktemp("tiny-runs")
    make_beir(base / "data" / "scifact", crlf=True)
    default, batch1 = base / "results", base / "policy"
    for folder, policy in ((default, BatchPolicy()), (batch1, BatchPolicy(batch_size=1))):
        run_sweep(SweepConfig(variants=[VariantSpec.parse("qint8")], model=str(tiny_model), tasks=["scifact"],
                              data_dir=base / "data", cache_dir=shared_cache, results_dir=folder, policy=policy,
                              compositions=2))
    return default, batch1


def test_export_is_read_back_by_mteb(tiny_runs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import mteb
    from mteb.results import TaskResult

    default, batch1 = tiny_runs
    cache = tmp_path / "mteb-cache"
    code, out, _ = run_cli(monkeypatch, capsys, "export", "--format", "mteb", "--output", str(cache / "results"),
                           "--results-dir", str(default), "--results-dir", str(batch1))
    assert code == 0 and "wrote 5 mteb result files in 5 folders" in out
    runs = {(r.variant, r.batch_policy["key"]): r for folder in tiny_runs for r in ResultStore(folder).all()}
    assert sorted(runs) == [("float32", "docs1-q1-length"), ("float32", "docs32-q1-length"), ("qint8", "docs1-q1-length"),
                            ("qint8", "docs32-q1-length"), ("qint8", "docs32-q1-length-c1")]
    exact = {k: math.fsum(r.per_query_ndcg_at_10.values()) / len(r.per_query_ndcg_at_10) for k, r in runs.items()}
    slug = runs["float32", "docs32-q1-length"].model_slug
    names = {v: f"evalsuite/{slug}__{v}" for v in ("float32", "qint8")}  # a local folder: mteb needs org/name
    results = mteb.ResultCache(cache_path=cache)
    # The default policy: one model per variant, found by name, with mteb's own loader.
    loaded = results.load_results(models=list(names.values()), tasks=["SciFact"], include_remote=False)
    table = loaded.to_dataframe(format="long", include_model_revision=True)
    got = {(m, rev): s for m, rev, s in table[["model_name", "model_revision", "score"]].itertuples(index=False)}
    assert got == {(names[v], runs[v, "docs32-q1-length"].onnx_sha256[:16]): round(exact[v, "docs32-q1-length"], 5) for v in names}
    # Every file, with the policy's experiment folder for batch 1.
    for (variant, policy), r in runs.items():
        experiment = None if policy == "docs32-q1-length" else f"batch_policy_{policy}"
        task = results.load_task_result("SciFact", names[variant], r.onnx_sha256[:16], experiment_name=experiment)
        assert task is not None and task.get_score(getter=lambda s: s["ndcg_at_10"]) == round(exact[variant, policy], 5)
        folder = cache / "results" / names[variant].replace("/", "__") / r.onnx_sha256[:16]
        folder = folder / "experiments" / experiment if experiment else folder
        assert TaskResult.from_disk(folder / "SciFact.json").get_score(getter=lambda s: s["ndcg_at_10"]) == pytest.approx(exact[variant, policy], abs=5e-6)
        meta = json.loads((folder / "model_meta.json").read_text())
        assert (meta["name"], meta["revision"], meta["framework"]) == (names[variant], r.onnx_sha256[:16], ["ONNX"])
        assert meta["experiment_kwargs"] == ({"batch_policy": policy} if experiment else None)


def test_export_checks_every_result_before_writing(tiny_runs: tuple[Path, Path], results: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from evalsuite.results.mteb_export import export_mteb

    default, _ = tiny_runs
    out = tmp_path / "out"
    # Synthetic results carry no mteb scores: one line naming the file, exit 2, nothing written.
    code, _, err = run_cli(monkeypatch, capsys, "export", "-o", str(out), "--results-dir", str(default), "--results-dir", str(results))
    assert code == 2 and "no mteb_scores" in err and str(ResultStore(results).path(SLUG, "NFCorpus", "float16")) in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    code, _, err = run_cli(monkeypatch, capsys, "export", "-o", str(out), "--results-dir", str(default), "--results-dir", str(default))
    assert code == 2 and "would both be" in err and not out.exists()
    code, _, err = run_cli(monkeypatch, capsys, "export", "--format", "csv", "-o", str(out), "--results-dir", str(default))
    assert code == 2 and "--format must be mteb" in err
    code, _, err = run_cli(monkeypatch, capsys, "export", "-o", str(out), "--results-dir", str(default), "--model", MODEL)
    assert code == 2 and f"no results for model {MODEL!r}" in err
    stored = list(ResultStore(default).items())
    path, r = stored[0]
    with pytest.raises(EvalsuiteError, match="mteb_scores has ndcg_at_10"):
        export_mteb([(path, dataclasses.replace(r, ndcg_at_10=r.ndcg_at_10 + 1e-4))], out)
    assert not out.exists()


def test_splits_of_one_build_share_one_mteb_file(tiny_runs: tuple[Path, Path], tmp_path: Path) -> None:
    from mteb.results import TaskResult

    from evalsuite.results.mteb_export import export_mteb

    path, r = next((p, r) for p, r in ResultStore(tiny_runs[0]).items() if r.variant == "float32")
    dev_ndcg = round(r.ndcg_at_10 - 0.1, 5)  # a made-up dev split, so each split's number is told apart
    scores = json.loads(json.dumps(r.mteb_scores))
    scores["scores"] = {"dev": [{**scores["scores"]["test"][0], "ndcg_at_10": dev_ndcg, "main_score": dev_ndcg}]}
    dev = dataclasses.replace(r, task=dataclasses.replace(r.task, split="dev"), ndcg_at_10=dev_ndcg, mteb_scores=scores)
    (exported,) = export_mteb([(path, r), (tmp_path / "dev.json", dev)], tmp_path / "out")
    assert exported.sources == (path, tmp_path / "dev.json")
    read = TaskResult.from_disk(exported.path)
    assert sorted(read.scores) == ["dev", "test"]
    assert read.get_score(splits=["test"], getter=lambda s: s["ndcg_at_10"]) == round(r.ndcg_at_10, 5)
    assert read.get_score(splits=["dev"], getter=lambda s: s["ndcg_at_10"]) == dev_ndcg
    with pytest.raises(EvalsuiteError, match="would both be split 'test'"):
        export_mteb([(path, r), (tmp_path / "again.json", r)], tmp_path / "other")
