"""A deployed network, whichever way it was deployed: lwtnn ``network.json`` (run by the numpy
lwtnn evaluator) or, for networks lwtnn cannot express, ONNX ``model.onnx`` (run by
onnxruntime). Both offer the same interface to evaluate and inject: ``inputs`` and
``input_sequences`` (input nodes), ``output_names``, ``labels(output)``,
``compute(raw inputs, raw sequences, output, replace_nan)``, and ``spec``, the input-node
description that :func:`flavourflow.core.inputs.lwtnn_inputs` reads. No TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from flavourflow.core.errors import FlavourflowError
from flavourflow.export.evaluator import LightweightGraph


def is_onnx(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an ONNX deployment (by its suffix)."""
    return Path(path).suffix == ".onnx"


def load(path: str | os.PathLike[str], threads: int | None = None) -> Any:
    """The deployed network at ``path``: a LightweightGraph (``.json``) or an OnnxGraph
    (``.onnx``), with ``spec`` set."""
    if is_onnx(path):
        from flavourflow.export.onnxonly import OnnxGraph

        return OnnxGraph(path, threads)
    graph = LightweightGraph.from_file(path)
    try:
        graph.spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:  # read once already: only a race gets here
        raise FlavourflowError(f"cannot read network: {err}", path=path) from None
    return graph
