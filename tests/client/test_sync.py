"""VAEClient against a live server: the same answers as the app in process, and its errors as VAEServeError."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from client import VAEClient, VAEServeError
from client import results as r


def multipart(pngs: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]


@pytest.fixture(scope="module")
def vae(live_url: str):
    with VAEClient(live_url) as client:
        yield client


def test_health_readiness_and_models(vae: VAEClient, in_process: TestClient) -> None:
    assert vae.health() == r.Health(status="ok")
    assert vae.ready().models == ["digits:1", "digits:2", "other:1"]
    models = vae.models()
    assert models == r.ModelList.model_validate(in_process.get("/v1/models").json())
    assert [(m.name, m.version, m.default) for m in models.models] == [
        ("digits", "1", True), ("digits", "2", False), ("other", "1", False)
    ]  # fmt: skip
    detail = vae.model("digits", "2")
    assert (detail.version, detail.versions, detail.latent_dim) == ("2", ["1", "2"], 4)
    assert set(detail.files) == {"encoder.onnx", "decoder.onnx", "MODEL_CARD.md", "samples.png",
                                 "reconstructions.png", "loss_curve.png", "golden.json"}  # fmt: skip


def test_encode_paths_bytes_and_arrays(vae: VAEClient, in_process: TestClient, digit_files: list[Path],
                                       digit_pngs: list[bytes], digit_arrays: np.ndarray) -> None:  # fmt: skip
    expected = r.Encoding.model_validate(in_process.post("/v1/encode", files=multipart(digit_pngs)).json())
    by_path = vae.encode(digit_files)
    assert by_path == expected
    assert vae.encode(digit_pngs) == expected
    assert vae.encode(digit_files[0]).results == expected.results[:1]  # one image on its own
    assert by_path.mean.shape == by_path.log_var.shape == (4, 4) and by_path.mean.dtype == np.float32
    assert by_path.z is None
    np.testing.assert_array_equal(by_path.mean[1], np.float32(expected.results[1].mean))
    # Arrays go as application/x-npy: the same pixels as the PNGs, so the same codes.
    np.testing.assert_allclose(vae.encode(digit_arrays).mean, by_path.mean, atol=1e-6)
    np.testing.assert_allclose(vae.encode(list(digit_arrays)).mean, by_path.mean, atol=1e-6)
    drawn = vae.encode(digit_files, sample=True, seed=3, model="other")
    assert drawn.model == "other" and drawn.z is not None and drawn.z.shape == (4, 4)
    same = in_process.post("/v1/encode?sample=true&seed=3&model=other", files=multipart(digit_pngs)).json()
    np.testing.assert_array_equal(drawn.z, np.float32([res["z"] for res in same["results"]]))


def test_pil_images_and_one_2d_array_are_images_too(
    vae: VAEClient, digit_files: list[Path], digit_arrays: np.ndarray
) -> None:
    from PIL import Image

    by_path = vae.encode(digit_files)
    with Image.open(digit_files[0]) as first, Image.open(digit_files[1]) as second:
        np.testing.assert_array_equal(vae.encode(first).mean, by_path.mean[:1])  # one PIL image
        np.testing.assert_array_equal(vae.encode([first, second, digit_files[2]]).mean, by_path.mean[:3])
        with pytest.raises(TypeError, match="not a mix"):
            vae.encode([first, digit_arrays[0]])
    np.testing.assert_allclose(vae.encode(digit_arrays[0, 0]).mean, by_path.mean[:1], atol=1e-6)  # one [H, W] array
    assert vae.limits().max_images_per_request == 8


def test_score_with_every_option(vae: VAEClient, in_process: TestClient, digit_files: list[Path],
                                 digit_pngs: list[bytes]) -> None:  # fmt: skip
    query = "score=iwae_nll&false_positive_rate=0.2&importance_samples=8&seed=5&model=digits&version=2"
    expected = r.Scores.model_validate(in_process.post(f"/v1/score?{query}", files=multipart(digit_pngs)).json())
    scores = vae.score(digit_files, score="iwae_nll", false_positive_rate=0.2, importance_samples=8, seed=5,
                       model="digits", version="2")  # fmt: skip
    assert scores == expected
    assert (scores.score, scores.version, scores.importance_samples, scores.false_positive_rate) == (
        "iwae_nll",
        "2",
        8,
        0.2,
    )
    assert scores.threshold is not None
    np.testing.assert_array_equal(scores.values, [res.iwae_nll for res in scores.results])
    np.testing.assert_array_equal(scores.is_anomaly, scores.values > scores.threshold)
    assert ((scores.p_values > 0) & (scores.p_values <= 1)).all()
    default = vae.score(digit_files)  # the calibration's score and K
    calibration = in_process.app.state.registry.get("digits", "1").manifest.calibration
    assert (default.score, default.importance_samples) == (calibration.score, calibration.importance_samples)


def test_samples_decode_and_reconstruct(vae: VAEClient, in_process: TestClient, digit_files: list[Path],
                                        digit_pngs: list[bytes]) -> None:  # fmt: skip
    assert vae.sample_grid(16, seed=7) == in_process.get("/v1/samples?n=16&seed=7").content
    samples = vae.sample(4, seed=7, temperature=0.5)
    assert samples == r.Samples.model_validate(
        in_process.get("/v1/samples?n=4&seed=7&temperature=0.5&format=json").json()
    )
    assert samples.z.shape == (4, 4) and all(png.startswith(b"\x89PNG") for png in samples.pngs)
    # Decoding the samples' latents gives the samples back: float32 latents survive JSON exactly.
    assert vae.decode(samples.z).pngs == samples.pngs
    assert vae.decode_grid(samples.z[0]) == samples.pngs[0]  # one latent: the image itself, not a grid
    pixels = vae.decode(samples.z, format="array").pixels
    assert pixels.shape == (4, 1, 28, 28) and pixels.min() >= 0 and pixels.max() <= 1
    with pytest.raises(ValueError, match="this answer holds arrays, not PNGs"):
        _ = vae.decode(samples.z, format="array").pngs

    recon = vae.reconstruct(digit_files, importance_samples=8, seed=1)
    expected = in_process.post("/v1/reconstruct?importance_samples=8&seed=1", files=multipart(digit_pngs)).json()
    assert recon.pngs == [base64.b64decode(res["image"]) for res in expected["results"]]
    assert [res.scores.model_dump() for res in recon.results] == [res["scores"] for res in expected["results"]]
    assert vae.reconstruct(digit_files, format="array").pixels.shape == (4, 1, 28, 28)


def test_error_answers_raise_the_problem_details(vae: VAEClient, digit_pngs: list[bytes]) -> None:
    cases = [
        (lambda: vae.model("nope"), 404, "model-not-found", "Model not found", "no model named 'nope'"),
        (lambda: vae.score(digit_pngs[0], model="digits", version="9"), 404, "model-not-found", "Model not found",
         "no model named 'digits' with version '9'"),
        (lambda: vae.encode([digit_pngs[0], b"not an image"]), 400, "invalid-image", "Invalid image",
         "image 1: not a decodable image"),
        (lambda: vae.decode([[0.0, 1.0, 2.0]]), 422, "invalid-input", "Invalid input",
         "latent 0 has 3 values, the model takes 4"),
        (lambda: vae.encode(np.zeros((1, 1, 5000, 5000), np.uint8)), 413, "body-too-large", "Payload too large",
         "the body is over the limit of 16777216 bytes (VAESERVE_MAX_BODY_BYTES)"),  # one image is not split
        (lambda: vae.sample_grid(65), 422, "out-of-range", "Invalid request", "n must be between 1 and 64 (VAESERVE_MAX_SAMPLES), got 65"),
    ]  # fmt: skip
    for call, status, slug, title, detail in cases:
        with pytest.raises(VAEServeError) as caught:
            call()
        error = caught.value
        assert (error.status, error.type, error.title, error.detail) == (
            status,
            f"urn:vaeserve:problem:{slug}",
            title,
            detail,
        )
        assert str(error) == f"{status} {title}: {detail}"


def test_bad_arguments_fail_before_sending(vae: VAEClient) -> None:
    with pytest.raises(ValueError, match="no images given"):
        vae.encode([])
    with pytest.raises(ValueError, match=r"latents must be \[N, latent_dim\] values, got shape \(1, 2, 2\)"):
        vae.decode(np.zeros((1, 2, 2)))
    with pytest.raises(TypeError, match="image 0: expected a path, bytes, a PIL image or an array, got int"):
        vae.encode([3])  # type: ignore[list-item]


def test_interpolate_and_traverse(vae: VAEClient, in_process: TestClient, digit_files: list[Path],
                                  digit_pngs: list[bytes]) -> None:  # fmt: skip
    path = vae.interpolate(digit_files[:2], steps=5, method="linear", model="digits", version="2")
    expected = in_process.post("/v1/interpolate?steps=5&method=linear&model=digits&version=2",
                               files=multipart(digit_pngs[:2])).json()  # fmt: skip
    assert path == r.Interpolation.model_validate(expected)
    assert path.z.shape == (5, 4) and path.version == "2" and all(p.startswith(b"\x89PNG") for p in path.pngs)
    assert vae.interpolate(latents=path.z[[0, -1]], steps=5, method="linear").pngs == path.pngs  # the same ends
    strip = vae.interpolate_strip(latents=path.z[[0, -1]], steps=5)
    assert (
        strip
        == in_process.post("/v1/interpolate?steps=5&format=png", json={"latents": path.z[[0, -1]].tolist()}).content
    )

    sweep = vae.traverse(digit_files[0], dimensions=[2, 0], low=-1, high=1, steps=3)
    expected = in_process.post("/v1/traverse?dimensions=2&dimensions=0&low=-1&high=1&steps=3",
                               files=multipart(digit_pngs[:1])).json()  # fmt: skip
    assert sweep == r.Traversal.model_validate(expected)
    assert sweep.z.shape == (2, 3, 4) and [len(row) for row in sweep.pngs] == [3, 3]
    np.testing.assert_array_equal(sweep.z[0, :, 2], np.float32([-1, 0, 1]))
    by_latent = vae.traverse(latent=sweep.base, dimensions=[2, 0], low=-1, high=1, steps=3)
    assert by_latent.pngs == sweep.pngs
    grid = vae.traverse_grid(latent=sweep.base)  # the most active dimensions, -3 to 3 in 7 steps
    assert grid == in_process.post("/v1/traverse?format=png", json={"latents": [sweep.base]}).content
    with pytest.raises(VAEServeError, match="422 Invalid request: interpolate takes 2 images, got 1"):
        vae.interpolate(digit_files[:1])
    with pytest.raises(ValueError, match="give images or latents, one of the two"):
        vae.traverse(digit_files[0], latent=[0, 0, 0, 0])
