"""How a variant becomes an ONNX file: the validated Float32 export, then the kind's build, in a content-addressed cache."""

from evalsuite.build.artifacts import CONVERTER_VERSION, Artifact, artifact_dir, build_variant
from evalsuite.build.export import check_onnx, export_onnx
from evalsuite.build.graph import fused_ops

__all__ = ["CONVERTER_VERSION", "Artifact", "artifact_dir", "build_variant", "check_onnx", "export_onnx", "fused_ops"]
