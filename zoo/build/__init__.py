"""The conversion orchestrator: request -> canonical ONNX (shared between targets) -> target artifact.

``request``: what is asked and the keys that identify it; ``checkpoint``: the weights to load;
``canonical``: the validated canonical ONNX, content-addressed and reused; ``source_checks``: the
canonical model against the registry and the source; ``target_checks``: the artifact against the
canonical model; ``pipeline``: the two stages in order, and the manifest.
"""
