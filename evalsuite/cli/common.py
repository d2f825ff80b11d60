"""What every command shares: the Typer app, the two consoles, and the options several commands take."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from evalsuite.ui import console

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Is a quantized ONNX build of your embedding model good enough to ship? Measures NDCG@10 against Float32.")
out = console()
err = console(stderr=True)

VariantOpt = Annotated[list[str], typer.Option("--variant", "-v", help="Variant name or named set (seed, levels, all); repeatable or comma-separated.")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id or local model folder.")]
TasksOpt = Annotated[Optional[str], typer.Option("--tasks", "-t", help="Comma-separated tasks (case-insensitive), MTEB task names or BEIR folder paths. Default: SciFact,NFCorpus,FiQA2018, skipping those without data.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data-dir", envvar="EVALSUITE_DATA_DIR", help="Folder of local BEIR folders (scifact/, nfcorpus/, fiqa/). Without it, data comes from the Hub through mteb.", file_okay=False)]
TasksDirOpt = Annotated[Optional[Path], typer.Option("--tasks-dir", help="Extra folder of task YAML files.", exists=True, file_okay=False)]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache-dir", envvar="EVALSUITE_CACHE_DIR", help="ONNX artifacts and embeddings (default: ~/.cache/evalsuite).", file_okay=False)]
ResultsOpt = Annotated[Optional[Path], typer.Option("--results-dir", envvar="EVALSUITE_RESULTS_DIR", help="Where results are stored (default: results/).", file_okay=False)]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Evaluate this split (e.g. dev, train) of every task instead of the one its spec names (test for the built-in tasks).", show_default=False)]
JudgeSplitOpt = Annotated[Optional[str], typer.Option("--split", help="The split to judge (default from --config: test); with --run, also the split evaluated.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
ModelSlugOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, folder or slug of the model (default: the only model in the results folder).")]
CompareTasksOpt = Annotated[Optional[str], typer.Option("--tasks", "-t", help="Comma-separated tasks to compare (default: the config's tasks, else every task with a Float32 result).")]
GateConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="Gate and statistics settings, YAML (default: configs/gate.yaml).", dir_okay=False)]


def split_list(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def invocation() -> str:
    """The command line as typed (for results and reports), or empty when not run as ``evalsuite``."""
    import shlex
    import sys

    return " ".join(shlex.quote(a) for a in ["evalsuite", *sys.argv[1:]]) if sys.argv[0].endswith("evalsuite") else ""
