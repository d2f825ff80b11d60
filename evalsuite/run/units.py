"""How one work unit is done: build a variant's ONNX file, or evaluate it on a task and store the result.

A stored result is reused when its identity (the hash of everything that decides its numbers) matches;
otherwise the unit evaluates under the result file's lock, so a run killed at any point resumes where it
stopped and two runs at once share the work instead of corrupting it. Executors call :class:`UnitRunner`;
it keeps what units of one process share (the model, loaded tasks, one encoder per variant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from evalsuite.config import invocation
from evalsuite.build import Artifact, build_variant
from evalsuite.data.loading import LoadedTask, data_fingerprint, load_task
from evalsuite.encode import BatchPolicy, OnnxEncoder
from evalsuite.files import file_lock, remove_leftovers
from evalsuite.models import ModelSource, resolve_model
from evalsuite.results import ResultStore, RunResult, identity
from evalsuite.run.evaluate import evaluate
from evalsuite.run.plan import Plan, WorkUnit
from evalsuite.variants import VariantSpec

Say = Callable[[str], None]
Progress = Callable[[str, str, int, int], None]  # (variant, what, done, total)


@dataclass
class Events:
    """Where units report: status lines and progress of encoding (both optional)."""

    say: Say = field(default=lambda _m: None)
    progress: Progress | None = None


class UnitRunner:
    """Does the units of one plan in this process, sharing the model, loaded tasks and encoders between them."""

    def __init__(self, plan: Plan, events: Events | None = None) -> None:
        self.plan = plan
        self.cfg = plan.config
        self.events = events or Events()
        self.source: ModelSource = resolve_model(self.cfg.model)
        self.store = ResultStore(self.cfg.results_dir)
        self.artifacts: dict[str, Artifact] = {}
        self._fingerprints: dict[str, str] = {}
        self._loaded: dict[str, LoadedTask] = {}
        self._encoders: dict[tuple[str, int], OnnxEncoder] = {}
        self._current: dict[str, str] = {}  # variant -> task it is encoding, for progress labels
        self.command = invocation()

    def build(self, unit: WorkUnit) -> Artifact:
        spec = VariantSpec.parse(unit.variant)
        self.artifacts[unit.variant] = build_variant(self.source, spec, self.cfg.cache_dir, self.events.say)
        return self.artifacts[unit.variant]

    def identity(self, unit: WorkUnit) -> str:
        """The identity the unit's result must have to be reused (the data is hashed, not loaded)."""
        task = self.plan.task(unit.task)  # type: ignore[arg-type]
        if task.name not in self._fingerprints:
            self._fingerprints[task.name] = data_fingerprint(task, self.cfg.data_dir)
        artifact = self.artifacts.get(unit.variant) or self.build(WorkUnit("build", unit.variant))
        return identity(self.source.weights_sha256, self.source.tokenizer_sha256, unit.variant, artifact.sha256, task.name,
                        task.split, self._fingerprints[task.name], self.source.settings.to_dict(),
                        self.policy(unit).to_dict(), artifact.kernels)

    def policy(self, unit: WorkUnit) -> BatchPolicy:
        return self.cfg.policy.with_composition(unit.composition)

    def evaluate(self, unit: WorkUnit) -> tuple[RunResult, bool]:
        """The unit's result and whether it was computed now (False: a stored one was reused).

        Raises :class:`DataUnavailable` when the task's data cannot be loaded.
        """
        task = self.plan.task(unit.task)  # type: ignore[arg-type]
        path = self.store.path(self.source.slug, task.name, unit.variant, task.split, unit.composition)
        with file_lock(path):
            remove_leftovers(path)  # temporary files of runs killed while writing it
            existing = self.stored(unit)
            if existing is not None:
                return existing, False
            loaded = self.loaded(task.name)
            self._current[unit.variant] = task.name
            self.events.say(str(unit).replace("evaluate", "evaluating", 1))
            result = evaluate(self._encoder(unit), loaded, self.source, self.artifacts[unit.variant],
                              self.identity(unit), self.command)
            self.store.put(result)
            return result, True

    def stored(self, unit: WorkUnit) -> RunResult | None:
        """The stored result of an evaluate unit when it can be reused as it is; None when it must be computed."""
        task = self.plan.task(unit.task)  # type: ignore[arg-type]
        existing = self.store.get(self.source.slug, task.name, unit.variant, task.split, unit.composition)
        reusable = existing is not None and existing.identity == self.identity(unit) and not self.cfg.force
        return existing if reusable else None

    def loaded(self, name: str) -> LoadedTask:
        """The task's data, loaded once per runner. Raises :class:`DataUnavailable` when it cannot be loaded."""
        if name not in self._loaded:
            self.events.say(f"loading {name}")
            self._loaded[name] = load_task(self.plan.task(name), self.cfg.data_dir)
        return self._loaded[name]

    def _encoder(self, unit: WorkUnit) -> OnnxEncoder:
        variant, key = unit.variant, (unit.variant, unit.composition)
        if key not in self._encoders:
            report = self.events.progress
            label = variant + (f" c{unit.composition}" if unit.composition else "")
            progress = None if report is None else (
                lambda kind, done, total: report(label, f"{self._current[variant]} {kind}", done, total))
            self._encoders[key] = OnnxEncoder(self.artifacts[variant], self.source, self.policy(unit),
                                              cache_dir=self.cfg.cache_dir, threads=self.cfg.threads,
                                              progress=progress, variant_name=variant)
        return self._encoders[key]
