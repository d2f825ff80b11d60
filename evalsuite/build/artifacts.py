"""Model -> ONNX file per variant, through the variant's kind, in a content-addressed cache.

Every artifact is addressed by content (the model files the export reads: weights, ``config.json`` and the
tokenizer; the variant name, the kind's own key extras, converter and library versions), built in a temporary
folder, renamed into place, and verified by hash when read, so a killed or concurrent build never leaves a broken
file that is later used. A variant is built from its kind's parent (the raw export for Float32, the optimized
Float32 for the others), recursively.

Example:
    >>> art = build_variant(resolve_model(DEFAULT_MODEL), VariantSpec.parse("qint8-pc-7bit"), cache_dir)  # doctest: +SKIP
    >>> art.path.name, art.size_bytes  # doctest: +SKIP
    ('model.onnx', 23068254)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evalsuite.build.export import export_onnx
from evalsuite.build.graph import Int8Profile, artifact_fused_ops, artifact_int8_profile, fused_ops, int8_profile
from evalsuite.files import atomic_write_json, file_lock, remove_leftovers, sha256_file, sha256_text
from evalsuite.machine import int8_kernels, versions
from evalsuite.models import ModelSource
from evalsuite.variants import VariantSpec

# Bump when a change here changes the bytes of any artifact.
# 2: the optimizer gets every family's head count and hidden size (DistilBERT's n_heads/dim): DistilBERT's
#    Float32 and derived files gain Attention/EmbedLayerNormalization; other families' bytes are unchanged.
CONVERTER_VERSION = "2"
_EXPORT = "export"  # cache name of the raw export

log = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass(frozen=True)
class Artifact:
    """An ONNX file in the cache and what is known about it."""

    variant: VariantSpec
    path: Path
    sha256: str
    size_bytes: int
    meta: dict[str, object]

    @property
    def fused_ops(self) -> dict[str, int]:
        """Node count per fused (onnxruntime contrib) operator type in the file, e.g. ``{"Attention": 6, ...}``."""
        return artifact_fused_ops(self.meta, self.path)

    @property
    def int8(self) -> Int8Profile:
        """What of the file goes through int8 kernels (see :func:`int8_profile`)."""
        return artifact_int8_profile(self.meta, self.path)

    @property
    def kernels(self) -> str | None:
        """The int8 kernel family this file runs through on this machine (None: it quantizes nothing)."""
        profile = self.int8
        return int8_kernels(profile.quantizes, profile.weight_peak)


def build_variant(source: ModelSource, spec: VariantSpec, cache_dir: Path, progress: Say | None = None) -> Artifact:
    """The ONNX file for ``spec``, built (with everything it derives from) only when not already cached."""
    say = progress or (lambda _msg: None)
    kind = spec.kind
    folder = artifact_dir(source, spec.name, cache_dir, kind.key_extras(source, spec))
    cached = _load(folder, spec)
    if cached is not None:
        return cached
    parent_spec = kind.parent(spec)
    parent = _raw_export(source, cache_dir, say) if parent_spec is None else build_variant(source, parent_spec, cache_dir, progress)
    with file_lock(folder):
        cached = _load(folder, spec)
        if cached is not None:  # another process built it while we waited
            return cached
        say(f"building {spec.name}")
        started = time.perf_counter()
        info: dict[str, object] = {"parent_sha256": parent.sha256}

        def produce(out: Path) -> None:
            info.update(kind.build(source, spec, parent.path, out))

        return _commit(folder, spec, produce, started, info)


def artifact_dir(source: ModelSource, name: str, cache_dir: Path, extras: tuple[str, ...] = ()) -> Path:
    lib = versions()
    key = sha256_text(source.export_sha256, name, CONVERTER_VERSION,
                      *(lib[p] for p in ("torch", "transformers", "onnx", "onnxruntime")), *extras)
    return cache_dir / "onnx" / source.weights_sha256[:16] / f"{name}-{key[:12]}"


def _raw_export(source: ModelSource, cache_dir: Path, say: Say) -> Artifact:
    folder = artifact_dir(source, _EXPORT, cache_dir)
    spec = VariantSpec("float32", opt_level=0)
    cached = _load(folder, spec)
    if cached is not None:
        return cached
    with file_lock(folder):
        cached = _load(folder, spec)
        if cached is not None:
            return cached
        say("exporting Float32 ONNX")
        started = time.perf_counter()
        info: dict[str, object] = {}

        def produce(out: Path) -> None:
            info.update(export_onnx(source, out))

        return _commit(folder, spec, produce, started, info)


def _commit(folder: Path, spec: VariantSpec, produce: Callable[[Path], None], started: float,
            extra: dict[str, object]) -> Artifact:
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(folder)  # temporary folders of builds that were killed; we hold the folder's lock
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        produce(tmp / "model.onnx")
        meta = {
            "variant": spec.name,
            "sha256": sha256_file(tmp / "model.onnx"),
            "size_bytes": (tmp / "model.onnx").stat().st_size,
            "build_seconds": round(time.perf_counter() - started, 2),
            "versions": versions(),
            "fused_ops": fused_ops(tmp / "model.onnx"),
            "int8": dataclasses.asdict(int8_profile(tmp / "model.onnx")),
            **extra,
        }
        atomic_write_json(tmp / "meta.json", meta)
        if folder.exists():
            shutil.rmtree(folder)  # a corrupt entry that _load rejected
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = _load(folder, spec)
    assert loaded is not None  # just written and verified
    return loaded


def _load(folder: Path, spec: VariantSpec) -> Artifact | None:
    """The cached artifact if its file matches the hash recorded at build time, else None."""
    meta_path, onnx_path = folder / "meta.json", folder / "model.onnx"
    if not folder.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        valid = (isinstance(meta, dict) and meta.get("variant") == spec.name and onnx_path.is_file()
                 and onnx_path.stat().st_size == meta.get("size_bytes") and sha256_file(onnx_path) == meta.get("sha256"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON; or removed while we read it
        valid = False
    if not valid:
        log.warning("cache entry %s is incomplete or corrupted; rebuilding it", folder)
        return None
    return Artifact(spec, onnx_path, meta["sha256"], meta["size_bytes"], meta)
