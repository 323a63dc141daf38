"""ONNX export: parity with torch, dynamic batch, no random ops, and failure on disagreement."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.config import DataConfig, ModelConfig
from training.export import RANDOM_OPS, ExportedGraphs, ExportError, check_parity, export_graphs
from training.nets import VAE, auto_channels

ROOT = Path(__file__).resolve().parents[2]


DIGITS = DataConfig(channels=1, height=28, width=28)


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
    model = VAE(model_config, DIGITS).eval()
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
        # The exporter's stack traces would ship this machine's paths: none may remain.
        assert ROOT.as_posix().encode() not in blob and sys.prefix.encode() not in blob
        assert not re.search(rb"site-packages|\.py\b|stack_trace", blob)
        proto = onnx.load_from_string(blob)
        assert not {node.op_type for node in proto.graph.node} & RANDOM_OPS
        assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer)


def test_parity_failure_fails_the_export(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = VAE(ModelConfig(channels=[8, 16], hidden=[32], latent_dim=6), DIGITS).eval()
    graphs = export_graphs(model, images)
    with torch.no_grad():
        model.decoder.body[-1].bias.add_(1e-3)  # the graph no longer matches the weights
    with pytest.raises(ExportError, match=r"disagrees with torch on decoder: max abs diff .* > 0.0001"):
        check_parity(model, ExportedGraphs(graphs.encoder, graphs.decoder, graphs.opset, {}), images)


@pytest.mark.parametrize(
    ("height", "width", "channels"),
    [(28, 28, [32, 64]), (64, 64, [32, 64, 128]), (128, 128, [32, 64, 128, 256]), (64, 128, [32, 64, 128, 256]),
     (256, 256, [32, 64, 128, 256, 256]), (30, 30, [32]), (8, 8, [])],
)  # fmt: skip
def test_conv_depth_follows_the_input_size(height: int, width: int, channels: list[int]) -> None:
    assert auto_channels(height, width) == channels


def test_non_square_rgb_conv_vae_exports_with_parity() -> None:
    torch.manual_seed(0)
    data = DataConfig(channels=3, height=32, width=48)
    model = VAE(ModelConfig(hidden=[32], latent_dim=5), data).eval()  # channels "auto": 3 blocks, a 4x6 grid
    assert [m.out_channels for m in model.encoder.body if isinstance(m, torch.nn.Conv2d)][1::2] == [32, 64, 128]
    images = torch.rand(6, 3, 32, 48)
    graphs = export_graphs(model, images)
    decoder = ort.InferenceSession(graphs.decoder)
    assert decoder.run(None, {"z": np.zeros((2, 5), np.float32)})[0].shape == (2, 3, 32, 48)
