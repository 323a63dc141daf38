"""Triton's own HTTP client (`tritonclient[http]`) against a live server on 127.0.0.1, with
binary and JSON tensors; every answer is compared with what /v1 gives for the same inputs."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from model.scores import SCORE_NAMES
from tests.app.test_server import serve


def _image_input(images: np.ndarray, binary: bool) -> triton_http.InferInput:
    tensor = triton_http.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


def test_tritonclient_binary_and_json_against_v1(repository: Path, digit_arrays: np.ndarray) -> None:
    images = digit_arrays  # (4, 1, 28, 28)
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as v1:
        triton = triton_http.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)
        try:
            assert triton.is_server_live() and triton.is_server_ready()
            assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
            assert triton.is_model_ready("digits-encoder", "1") and not triton.is_model_ready("nope-encoder")
            assert triton.get_model_metadata("digits-scorer", "1")["inputs"][0]["shape"] == [-1, 1, 28, 28]
            assert triton.get_model_config("digits-encoder")["max_batch_size"] == 256

            want = v1.post("/v1/encode?sample=true&seed=2", json={"arrays": images.tolist()}).json()["results"]
            for binary in (True, False):
                outputs = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in ("mean", "z")]
                result = triton.infer("digits-encoder", [_image_input(images, binary)], model_version="1",
                                      outputs=outputs, parameters={"seed": 2})  # fmt: skip
                for name in ("mean", "z"):
                    got = result.as_numpy(name)
                    assert got.dtype == np.float32 and got.shape == (4, len(want[0]["mean"]))
                    np.testing.assert_array_equal(got, np.asarray([row[name] for row in want], np.float32))
                assert result.as_numpy("log_var") is None  # not asked for

            # No outputs named: tritonclient asks for every output, in binary. gzip on the way in.
            scored = triton.infer("digits-scorer", [_image_input(images, True)], request_compression_algorithm="gzip",
                                  parameters={"importance_samples": 8, "seed": 1})  # fmt: skip
            want_scores = v1.post("/v1/score?importance_samples=8&seed=1", json={"arrays": images.tolist()}).json()
            for name in (*SCORE_NAMES, "score", "p_value", "is_anomaly"):
                assert scored.as_numpy(name).tolist() == [row[name] for row in want_scores["results"]], name
            assert scored.as_numpy("is_anomaly").dtype == np.bool_

            z = np.asarray([row["mean"] for row in want[:2]], np.float32)
            latent = triton_http.InferInput("z", list(z.shape), "FP32")
            latent.set_data_from_numpy(z, binary_data=False)
            decoded = triton.infer("digits-decoder", [latent]).as_numpy("image")
            arrays = v1.post("/v1/decode", json={"latents": z.tolist(), "format": "array"}).json()["arrays"]
            np.testing.assert_array_equal(decoded, np.asarray(arrays, np.float32))

            with pytest.raises(InferenceServerException, match="unknown model 'nope-encoder'"):
                triton.infer("nope-encoder", [_image_input(images, True)])
            with pytest.raises(InferenceServerException, match="array values must lie in"):
                triton.infer("digits-encoder", [_image_input(images * 3, True)])
        finally:
            triton.close()
