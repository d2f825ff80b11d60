"""What every command shares: the Typer app, the two consoles, and the options several commands take."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from evalsuite.config import invocation  # noqa: F401  re-exported for the commands
from evalsuite.errors import EvalsuiteError
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
CompositionsOpt = Annotated[Optional[int], typer.Option("--compositions", help="Batch compositions a batch-dependent build (dynamic int8) is evaluated and judged under, at least 1; each costs one encode of every corpus with that build (default from --config, else configs/gate.yaml: 5).", show_default=False)]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="onnxruntime threads, at least 1 (default: EVALSUITE_THREADS, else all cores).")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where encoding runs: local (this process) or ray (actors on a Ray cluster; pip install \"evalsuite[ray]\").")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="With --executor ray: the address of a running cluster (ray start --head prints it). Default: start a local one.", show_default=False)]
ActorsOpt = Annotated[Optional[int], typer.Option("--actors", help="With --executor ray: encoding actors, at least 1 (default: the cluster's CPUs / --threads-per-actor).", show_default=False)]
ActorThreadsOpt = Annotated[Optional[int], typer.Option("--threads-per-actor", help="With --executor ray: onnxruntime threads (and CPUs) per actor, at least 1 (default 1).", show_default=False)]


def split_list(value: str | None, option: str) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None when ``option`` was not given. Given but empty (``--tasks ""``) is an error,
    never a silent fall-back to the default."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise EvalsuiteError(f"{option} is empty ({value!r}): name at least one, or leave {option} out for the default")
    return items


def variant_names(values: list[str]) -> list[str]:
    """The ``--variant`` values, each checked to name something (``--variant ""`` is an error)."""
    for value in values:
        split_list(value, "--variant")
    return values


def given(value: str | None, option: str) -> str | None:
    """``value`` unless it is blank (``--model ""``), which is an error naming ``option``."""
    if value is not None and not value.strip():
        raise EvalsuiteError(f"{option} is empty: give a value, or leave {option} out for the default")
    return value


def at_least(minimum: int, **options: int | None) -> None:
    """Check whole-number options, given as ``name=value`` (``batch_size`` is ``--batch-size``): each at least ``minimum``."""
    for name, value in options.items():
        if value is not None and value < minimum:
            raise EvalsuiteError(f"--{name.replace('_', '-')} must be a whole number >= {minimum}, not {value}")


def executor_of(executor: str, address: str | None, actors: int | None, threads_per_actor: int | None) -> object | None:
    """The executor the options name: None for the local default, a ``RayExecutor`` for ``ray`` (checked installed)."""
    one_of("--executor", executor, ("local", "ray"))
    at_least(1, actors=actors, threads_per_actor=threads_per_actor)
    if executor == "local":
        for option, value in (("--address", address), ("--actors", actors), ("--threads-per-actor", threads_per_actor)):
            if value is not None:
                raise EvalsuiteError(f"{option} needs --executor ray")
        return None
    from evalsuite.run.ray_executor import RayExecutor, RayOptions

    return RayExecutor(RayOptions(given(address, "--address"), actors, threads_per_actor or 1))


def one_of(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise EvalsuiteError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value


def say(message: str, style: str = "dim") -> None:
    """A status line on stderr (escaped: a path with brackets is not rich markup)."""
    err.print(f"[{style}]{escape(message)}[/{style}]", highlight=False)
