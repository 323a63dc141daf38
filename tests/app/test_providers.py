"""VAESERVE_ORT_PROVIDERS asking for CUDA on a CPU-only onnxruntime: the service starts on the CPU and logs why."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="a CPU-only onnxruntime")
def test_cuda_provider_falls_back_to_the_cpu(repository: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("VAESERVE_ORT_PROVIDERS", '["CUDAExecutionProvider", "CPUExecutionProvider"]')
    settings = Settings(model_repository=repository)
    assert settings.ort_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="model.providers"), TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/samples?n=1&seed=0").status_code == 200
    assert "CUDAExecutionProvider is not available in this onnxruntime" in caplog.text
