"""evalsuite: measure what quantizing a sentence-embedding model to ONNX costs in retrieval quality and buys in speed.

The pipeline, one module per stage::

    variants -> convert -> encoder -> tasks/beir -> evaluate -> results -> stats -> gate / report, plus bench
"""

__version__ = "0.1.0"
