"""ONNX export: parity with torch, dynamic batch, no random ops, and failure on disagreement."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.config import DataConfig, ModelConfig
from training.export import RANDOM_OPS, ExportedGraphs, ExportError, check_parity, export_graphs
from training.nets import VAE


@pytest.fixture(scope="module")
def images(digit_images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(digit_images[:32])


@pytest.mark.parametrize(
    "model_config",
    [
        ModelConfig(channels=[8, 16], hidden=[32], latent_dim=6),
        ModelConfig(arch="mlp", hidden=[64, 32], latent_dim=3, likelihood="gaussian"),
    ],
    ids=["conv-bernoulli", "mlp-gaussian"],
)
def test_export_parity_dynamic_batch_and_no_random_ops(model_config: ModelConfig, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = VAE(model_config, DataConfig()).eval()
    graphs = export_graphs(model, images)
    assert max(graphs.max_abs_diff.values()) <= 1e-4
    encoder = ort.InferenceSession(graphs.encoder)
    decoder = ort.InferenceSession(graphs.decoder)
    assert [o.name for o in decoder.get_outputs()] == ["logits" if model_config.likelihood == "bernoulli" else "mean"]
    for n in (1, 7, 32):  # a batch size never seen at export
        mean, log_var = encoder.run(None, {"image": images[:n].numpy()})
        with torch.no_grad():
            want_mean, want_log_var = model.encoder(images[:n])
            want_params = model.decoder(torch.from_numpy(mean))
        np.testing.assert_allclose(mean, want_mean.numpy(), atol=1e-4)
        np.testing.assert_allclose(log_var, want_log_var.numpy(), atol=1e-4)
        np.testing.assert_allclose(decoder.run(None, {"z": mean})[0], want_params.numpy(), atol=1e-4)
    for blob in (graphs.encoder, graphs.decoder):
        proto = onnx.load_from_string(blob)
        assert not {node.op_type for node in proto.graph.node} & RANDOM_OPS
        assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)


def test_parity_failure_fails_the_export(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = VAE(ModelConfig(channels=[8, 16], hidden=[32], latent_dim=6), DataConfig()).eval()
    graphs = export_graphs(model, images)
    with torch.no_grad():
        model.decoder.body[-1].bias.add_(1e-3)  # the graph no longer matches the weights
    with pytest.raises(ExportError, match=r"disagrees with torch on decoder: max abs diff .* > 0.0001"):
        check_parity(model, ExportedGraphs(graphs.encoder, graphs.decoder, graphs.opset, {}), images)
