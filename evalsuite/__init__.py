"""evalsuite: measure what quantizing a sentence-embedding model to ONNX costs in retrieval quality and buys in speed.

The pipeline, one package per stage, in the order a variant name travels::

    models -> variants -> build -> encode -> data -> run -> results -> analysis (stats, gate, report), plus bench
"""

__version__ = "0.1.0"
