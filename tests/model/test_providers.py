"""Execution providers on a CPU-only onnxruntime: CUDA asked for, the CPU used, and the log says why."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from model.bundle import Bundle
from model.providers import check_providers, select_providers
from model.runtime import RuntimeOptions, VAERuntime

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="checks the fallback of a CPU-only onnxruntime"
)


def test_cuda_falls_back_to_the_cpu_with_the_install_line(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="model.providers"):
        chosen = select_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider is not available in this onnxruntime" in caplog.text
    assert "falling back to CPUExecutionProvider" in caplog.text
    assert "pip uninstall -y onnxruntime && pip install onnxruntime-gpu" in caplog.text
    assert select_providers(["CUDAExecutionProvider"]) == ["CPUExecutionProvider"]  # the CPU is always last


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"providers \['CudaProvider'\] are not available in any ONNX Runtime build"):
        check_providers(["CudaProvider", "CPUExecutionProvider"])
    with pytest.raises(ValueError, match=r"providers \[\] are not available"):
        check_providers([])


def test_a_runtime_asked_for_cuda_serves_the_same_numbers_on_the_cpu(bundle: Bundle, digit_images, caplog) -> None:
    cpu = VAERuntime(bundle, RuntimeOptions(intra_op_threads=1))
    with caplog.at_level(logging.WARNING, logger="model.providers"):
        cuda = VAERuntime(bundle, RuntimeOptions(intra_op_threads=1, providers=("CUDAExecutionProvider",)))
    assert cuda.providers == ["CPUExecutionProvider"] and "falling back" in caplog.text
    np.testing.assert_array_equal(cuda.encode(digit_images[:4])[0], cpu.encode(digit_images[:4])[0])
