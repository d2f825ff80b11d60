"""``evalsuite export``: stored results in another tool's layout (mteb's own results folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from evalsuite.cli.common import ModelSlugOpt, app, err
from evalsuite.errors import EvalsuiteError


@app.command(name="export")
def export_cli(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write into; for mteb's ResultCache(cache_path=C), pass C/results.", file_okay=False, show_default=False)],
    fmt: Annotated[str, typer.Option("--format", "-f", help="mteb: mteb's results layout (<model>/<revision>/<Task>.json and model_meta.json), one mteb model per variant.")] = "mteb",
    results_dir: Annotated[Optional[list[Path]], typer.Option("--results-dir", envvar="EVALSUITE_RESULTS_DIR", help="Results folder; repeat it to export several (e.g. results/policy/*: other batch policies go to mteb's experiments/). Default: results/.", file_okay=False, show_default=False)] = None,
    model: ModelSlugOpt = None,
) -> None:
    """Write stored results in mteb's own layout, so mteb's loaders (ResultCache, TaskResult) read them beside published MTEB results."""
    from evalsuite.config import default_results_dir
    from evalsuite.results import ResultStore
    from evalsuite.results.queries import is_model
    from evalsuite.results.mteb_export import export_mteb

    if fmt.lower() != "mteb":
        raise EvalsuiteError(f"--format must be mteb, not {fmt!r}")
    roots = results_dir or [default_results_dir()]
    stored = [item for root in roots for item in ResultStore(root).items()]
    if model is not None:
        stored = [(p, r) for p, r in stored if is_model(r, model)]
    if not stored:
        where = ", ".join(f"{r}/" for r in roots)
        raise EvalsuiteError(f"no results{f' for model {model!r}' if model else ''} in {where}")
    written = export_mteb(stored, output)
    folders = sorted({str(e.path.parent.relative_to(output)) for e in written})
    for folder in folders:
        err.print(f"[dim]{output / folder}[/dim]", highlight=False)
    print(f"wrote {len(written)} mteb result files in {len(folders)} folders under {output}")
