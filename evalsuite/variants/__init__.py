"""What to build: variant names, their kinds (one module each, registered) and named sets.

See :mod:`evalsuite.variants.registry` for how a kind plugs in and :mod:`evalsuite.variants.spec` for the grammar.
"""

from evalsuite.variants.registry import DEFAULT_OPT_LEVEL, OPT_LEVELS, Option, VariantKind, kinds, named_sets, register
from evalsuite.variants.spec import BASELINE, VariantSpec, expand, grammar, variant_order

__all__ = ["BASELINE", "DEFAULT_OPT_LEVEL", "OPT_LEVELS", "Option", "VariantKind", "VariantSpec", "expand", "grammar",
           "kinds", "named_sets", "register", "variant_order"]
