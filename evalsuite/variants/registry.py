"""Variant kinds register here; the grammar, the named sets, `evalsuite variants` and report columns come from them.

A kind is one module in this package that subclasses :class:`VariantKind` and decorates the class with
:func:`register`. Modules are discovered on first use, so adding a kind means adding one file. A kind
declares the dtype names it owns, its name options (``-pc``, ``-7bit``, ...), what it derives from, what
else its cache key depends on, and how it builds its ONNX file.

Example:
    >>> [k.name for k in kinds()][:3]
    ['float32', 'float16', 'dynamic']
    >>> kind_of("qint8").name
    'dynamic'
"""

from __future__ import annotations

import functools
import importlib
import itertools
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from evalsuite.models import ModelSource
    from evalsuite.variants.spec import VariantSpec

OPT_LEVELS = (0, 1, 2, 99)
DEFAULT_OPT_LEVEL = 1
_NOT_KINDS = {"registry", "spec"}
_VALUE = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class Option:
    """One setting a kind reads from a variant name.

    Args:
        name: key in ``spec.settings`` and in CSV/JSON reports, e.g. ``per_channel``.
        label: report column, e.g. ``per-chan``.
        help: one line for ``evalsuite variants``.
        tokens: name token -> value, e.g. ``{"pc": True}``; a value not listed is the default.
        default: the value when no token is given (left out of the canonical name).
        prefix: for a valued option, the token is ``prefix`` followed by the value (lower-case letters and digits),
            e.g. prefix ``x`` reads ``-xtuned1`` as ``"tuned1"``; the value names something outside the name
            (a file), so the kind must put what it refers to into its :meth:`VariantKind.key_extras`.
        metavar: what the value is, for ``evalsuite variants`` (``-x<NAME>``).
    """

    name: str
    label: str
    help: str
    tokens: Mapping[str, object] = field(default_factory=dict)
    default: object = False
    prefix: str = ""
    metavar: str = "NAME"

    def token_for(self, value: object) -> str | None:
        """The name token for ``value`` (None for the default)."""
        if value == self.default:
            return None
        fixed = next((t for t, v in self.tokens.items() if v == value), None)
        return fixed if fixed is not None else f"{self.prefix}{value}"

    def read(self, token: str) -> tuple[bool, object]:
        """``(True, value)`` when ``token`` is one of this option's tokens, else ``(False, None)``."""
        if token in self.tokens:
            return True, self.tokens[token]
        if self.prefix and token.startswith(self.prefix) and _VALUE.match(token[len(self.prefix):]):
            return True, token[len(self.prefix):]
        return False, None

    def accepts(self, value: object) -> bool:
        return (value == self.default or value in self.tokens.values()
                or bool(self.prefix and isinstance(value, str) and _VALUE.match(value)))

    def spellings(self) -> list[str]:
        """The tokens as ``evalsuite variants`` shows them: ``pc``, ``x<NAME>``."""
        return [*self.tokens, *([f"{self.prefix}<{self.metavar}>"] if self.prefix else [])]

    def values(self) -> list[object]:
        """The default and every fixed value (a valued option's free values are not enumerable)."""
        return [self.default, *(v for v in self.tokens.values() if v != self.default)]


class VariantKind:
    """Base of every variant kind; subclasses set the class attributes and override :meth:`build`."""

    name: ClassVar[str]
    dtypes: ClassVar[tuple[str, ...]]
    summary: ClassVar[str]
    options: ClassVar[tuple[Option, ...]] = ()
    rank: ClassVar[int] = 100  # position in tables and listings
    # Named sets this kind adds (``evalsuite run --variant NAME``).
    sets: ClassVar[dict[str, tuple[str, ...]]] = {}
    # Whether every combination of this kind joins the ``all`` set (the float and dynamic grid); kinds with many
    # settings stay out of it and name their own sets instead.
    in_all: ClassVar[bool] = True
    # Whether an embedding depends on the other texts of its onnxruntime call (activation scales computed per call):
    # such a build is evaluated under several batch compositions, the others under one.
    batch_dependent: ClassVar[bool] = False

    def validate(self, spec: VariantSpec) -> None:
        """Raise :class:`EvalsuiteError` for a combination of settings that makes no sense."""

    def parent(self, spec: VariantSpec) -> VariantSpec | None:
        """What ``spec`` is derived from; None means the raw Float32 export. Default: Float32 at the same level."""
        from evalsuite.variants.spec import VariantSpec

        return VariantSpec("float32", opt_level=spec.opt_level)

    def key_extras(self, source: ModelSource, spec: VariantSpec) -> tuple[str, ...]:
        """Whatever besides the name, the model and library versions decides the built file (e.g. a data hash)."""
        return ()

    def build(self, source: ModelSource, spec: VariantSpec, parent: Path, out: Path) -> dict[str, object]:
        """Write the ONNX file of ``spec`` to ``out`` from ``parent``; return facts to keep in its metadata."""
        raise NotImplementedError

    def combinations(self) -> Iterator[dict[str, object]]:
        """Every combination of option values, for the ``all`` set (default: the product of all options)."""
        for values in itertools.product(*(o.values() for o in self.options)):
            yield dict(zip((o.name for o in self.options), values, strict=True))

    def grammar(self) -> str:
        """``qint8 | quint8 [-pc] [-7bit]``: this kind's part of the name grammar."""
        parts = [" | ".join(self.dtypes)]
        for option in self.options:
            parts.append("[-" + "|-".join(option.spellings()) + "]")
        return " ".join(parts)


_KINDS: dict[str, VariantKind] = {}


def register(cls: type[VariantKind]) -> type[VariantKind]:
    """Class decorator: make a kind known to the grammar. Dtype names must be unique across kinds."""
    kind = cls()
    for dtype in cls.dtypes:
        owner = next((k.name for k in _KINDS.values() if dtype in k.dtypes and k.name != cls.name), None)
        if owner is not None:
            raise ValueError(f"dtype {dtype!r} of kind {cls.name!r} is already owned by kind {owner!r}")
    _KINDS[cls.name] = kind
    return cls


@functools.cache
def _discover() -> None:
    import evalsuite.variants as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in _NOT_KINDS and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def kinds() -> list[VariantKind]:
    """Every registered kind, in table order."""
    _discover()
    return sorted(_KINDS.values(), key=lambda k: (k.rank, k.name))


def kind_of(dtype: str) -> VariantKind | None:
    """The kind that owns a dtype name, or None."""
    return next((k for k in kinds() if dtype in k.dtypes), None)


def dtypes() -> list[str]:
    return [d for k in kinds() for d in k.dtypes]


def option_owners(token: str) -> list[str]:
    """Dtypes whose kinds accept ``token`` (for "-pc applies to qint8/quint8 only")."""
    return [d for k in kinds() if any(o.read(token)[0] for o in k.options) for d in k.dtypes]


def options() -> list[Option]:
    """Every option of every kind, in table order, one per name."""
    seen: dict[str, Option] = {}
    for k in kinds():
        for o in k.options:
            seen.setdefault(o.name, o)
    return list(seen.values())


# The seven configurations of the reference quality table, and the optimizer-level comparison.
_FIXED_SETS: dict[str, tuple[str, ...]] = {
    "seed": ("float32", "float16", "quint8-pc-7bit", "qint8-pc-7bit", "qint8-pc", "qint8-7bit", "qint8"),
    "levels": tuple(f"float32-o{n}" for n in OPT_LEVELS) + tuple(f"qint8-pc-7bit-o{n}" for n in OPT_LEVELS),
}


def named_sets() -> dict[str, tuple[str, ...]]:
    """``seed``, ``levels``, ``all`` (every combination of every kind with ``in_all`` at every level) and the kinds' own sets."""
    from evalsuite.variants.spec import VariantSpec

    every = tuple(
        VariantSpec(dtype, settings, level).name
        for kind in kinds() if kind.in_all
        for dtype in kind.dtypes for settings in _valid(kind, dtype) for level in OPT_LEVELS
    )
    out = {**_FIXED_SETS, "all": every}
    for kind in kinds():
        out.update(kind.sets)
    return out


def _valid(kind: VariantKind, dtype: str) -> Iterator[dict[str, object]]:
    from evalsuite.errors import EvalsuiteError
    from evalsuite.variants.spec import VariantSpec

    for settings in kind.combinations():
        try:
            VariantSpec(dtype, settings)
        except EvalsuiteError:
            continue
        yield settings
