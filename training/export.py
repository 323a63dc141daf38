"""Export a trained VAE to two single-file ONNX graphs and check them against torch.

    encoder.onnx: image (N, C, H, W) -> mean, log_var (N, D)
    decoder.onnx: z (N, D) -> logits (Bernoulli) or mean (Gaussian), (N, C, H, W)

N is dynamic. The graphs must hold no random op, and ONNX Runtime must reproduce
torch within `PARITY_TOLERANCE` on real inputs, or the export fails. The exporter's
metadata (stack traces with this machine's file paths, FX node dumps) is stripped, so a
bundle says nothing about where it was made.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from training.nets import VAE

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
RANDOM_OPS = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
}


class ExportError(RuntimeError):
    """The exported graphs are unusable or disagree with torch."""


@dataclass(frozen=True)
class ExportedGraphs:
    encoder: bytes
    decoder: bytes
    opset: int
    max_abs_diff: dict[str, float]  # per output, ONNX Runtime vs torch


def _export(
    module: torch.nn.Module, example: torch.Tensor, input_name: str, output_names: list[str]
) -> onnx.ModelProto:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[input_name],
            output_names=output_names,
            dynamic_shapes={input_name: {0: batch}},
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    proto = strip_metadata(program.model_proto)
    random_ops = {node.op_type for node in proto.graph.node} & RANDOM_OPS
    if random_ops:
        raise ExportError(f"{input_name} graph holds random ops {sorted(random_ops)}")
    return proto


def strip_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop every doc string and metadata property, at every level, in place; return `proto`.

    torch.onnx.export records each node's Python stack trace (absolute paths of this
    checkout and its virtual environment), module names and FX dumps there; none of it is
    needed to run the graph."""
    _clear(proto)
    _strip_graph(proto.graph)
    for function in proto.functions:
        _clear(function)
        for node in function.node:
            _strip_node(node)
    return proto


def _clear(message: Any) -> None:
    if hasattr(message, "metadata_props"):
        del message.metadata_props[:]
    if hasattr(message, "doc_string"):
        message.doc_string = ""


def _strip_graph(graph: onnx.GraphProto) -> None:
    _clear(graph)
    for item in [*graph.input, *graph.output, *graph.value_info, *graph.initializer, *graph.sparse_initializer]:
        _clear(item)
    for node in graph.node:
        _strip_node(node)


def _strip_node(node: onnx.NodeProto) -> None:
    _clear(node)
    for attribute in node.attribute:
        _clear(attribute)
        if attribute.HasField("g"):
            _strip_graph(attribute.g)
        for subgraph in attribute.graphs:
            _strip_graph(subgraph)


def export_graphs(model: VAE, images: torch.Tensor) -> ExportedGraphs:
    """Export both graphs; check parity on `images` (real inputs) and their latents."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    model = model.eval()
    decoder_output = "logits" if model.config.likelihood == "bernoulli" else "mean"
    example = images[:2]
    with torch.no_grad():
        mean, _log_var = model.encoder(example)
    encoder = _export(model.encoder, example, "image", ["mean", "log_var"])
    decoder = _export(model.decoder, mean, "z", [decoder_output])
    opset = next(o.version for o in encoder.opset_import if o.domain in ("", "ai.onnx"))
    graphs = ExportedGraphs(encoder.SerializeToString(), decoder.SerializeToString(), opset, {})
    diffs = check_parity(model, graphs, images)
    log.info("ONNX parity with torch: %s", diffs)
    return ExportedGraphs(graphs.encoder, graphs.decoder, opset, diffs)


def check_parity(model: VAE, graphs: ExportedGraphs, images: torch.Tensor) -> dict[str, float]:
    """Max abs difference of every output, ONNX Runtime vs torch; raise over tolerance.

    The decoder is checked on the posterior means of `images` and on prior draws.
    """
    encoder = ort.InferenceSession(graphs.encoder, providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(graphs.decoder, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        mean, log_var = model.encoder(images)
        prior = torch.randn(len(images), mean.shape[1], generator=torch.Generator().manual_seed(0))
        z = torch.cat([mean, prior])
        params = model.decoder(z)
    ort_mean, ort_log_var = encoder.run(None, {"image": images.numpy()})
    (ort_params,) = decoder.run(None, {"z": z.numpy()})
    diffs = {
        "mean": float(np.abs(ort_mean - mean.numpy()).max()),
        "log_var": float(np.abs(ort_log_var - log_var.numpy()).max()),
        "decoder": float(np.abs(ort_params - params.numpy()).max()),
    }
    worst = max(diffs, key=lambda k: diffs[k])
    if not diffs[worst] <= PARITY_TOLERANCE:  # also catches NaN
        raise ExportError(
            f"ONNX Runtime disagrees with torch on {worst}: max abs diff {diffs[worst]:.3g} > {PARITY_TOLERANCE}"
        )
    return diffs
