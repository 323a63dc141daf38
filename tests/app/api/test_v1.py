"""The v1 API through the real app: every endpoint, every input format, every error."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.bundle import load_bundle, write_bundle
from model.decision import p_values, threshold_at_fpr
from model.preprocess import COLORMAP, decode_image, heatmap_png
from model.runtime import VAERuntime
from model.scores import SCORE_NAMES
from tests.helpers import png_bytes

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def runtime(repository) -> VAERuntime:
    return VAERuntime(load_bundle(repository / "digits" / "1"))


def _png_to_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def assert_problem(response, status: int, title: str, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["title"], body["detail"]) == (status, title, detail)
    assert body["type"].startswith("urn:vaeserve:problem:")


# -- encode, and every input format ---------------------------------------------------------


def test_encode_raw_png_matches_the_runtime(client: TestClient, runtime: VAERuntime, digit_pngs) -> None:
    r = client.post("/v1/encode", content=digit_pngs[0], headers={"content-type": "image/png"})
    assert r.status_code == 200
    body = r.json()
    assert (body["model"], body["version"], body["latent_dim"]) == ("digits", "1", 4)
    mean, log_var = runtime.encode(decode_image(digit_pngs[0], runtime.input)[None])
    np.testing.assert_allclose(body["results"][0]["mean"], mean[0], rtol=1e-6)
    np.testing.assert_allclose(body["results"][0]["log_var"], log_var[0], rtol=1e-6)
    assert body["results"][0]["z"] is None


def test_every_input_format_gives_the_same_latents(client: TestClient, digit_pngs, digit_arrays) -> None:
    jpeg = png_bytes(_png_to_array(digit_pngs[0]), "JPEG", quality=100)
    answers = [
        client.post("/v1/encode", files=[("file", (f"{i}.png", p, "image/png")) for i, p in enumerate(digit_pngs)]),
        client.post("/v1/encode", json={"images": [base64.b64encode(p).decode() for p in digit_pngs]}),
        client.post(
            "/v1/encode", json={"images": ["data:image/png;base64," + base64.b64encode(digit_pngs[0]).decode()]}
        ),
        client.post("/v1/encode", json={"arrays": digit_arrays.tolist()}),
        client.post("/v1/encode", json={"arrays": [a[0].tolist() for a in digit_arrays]}),  # (H, W)
        client.post("/v1/encode", content=jpeg, headers={"content-type": "image/jpeg"}),
    ]
    means = [np.array([r["mean"] for r in a.json()["results"]]) for a in answers]
    assert [len(m) for m in means] == [4, 4, 1, 4, 4, 1]
    for m in (means[1], means[3], means[4]):
        np.testing.assert_allclose(m, means[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(means[2][0], means[0][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(means[5][0], means[0][0], atol=0.05)  # JPEG is lossy


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_npy_arrays_are_a_binary_fast_path(client: TestClient, digit_arrays) -> None:
    as_json = client.post("/v1/encode", json={"arrays": digit_arrays.tolist()}).json()
    npy = {"content-type": "application/x-npy"}
    for array in (digit_arrays, digit_arrays[:, 0], (digit_arrays * 255).round().astype(np.uint8)):
        r = client.post("/v1/encode", content=_npy(array), headers=npy)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(
            [x["mean"] for x in r.json()["results"]], [x["mean"] for x in as_json["results"]], atol=1e-5
        )
    bad = digit_arrays.copy()
    bad[2, 0, 5, 5] = np.nan
    assert_problem(
        client.post("/v1/encode", content=_npy(bad), headers=npy),
        422,
        "Invalid input",
        "image 2: array holds NaN or infinite values",
    )
    assert_problem(
        client.post("/v1/encode", content=_npy(digit_arrays * 2), headers=npy),
        422,
        "Invalid input",
        "image 0: array values must lie in [0.0, 1.0]",
    )
    assert_problem(
        client.post("/v1/encode", content=_npy(digit_arrays[:, :, :20]), headers=npy),
        422,
        "Invalid input",
        "array shape [4, 1, 20, 28] does not match the model's [N, 1, 28, 28]",
    )
    assert_problem(
        client.post("/v1/encode", content=_npy(digit_arrays.astype(np.int32)), headers=npy),
        422,
        "Invalid input",
        "array dtype int32 is not uint8 or floating point",
    )
    garbage = client.post("/v1/encode", content=b"\x93NUMPY nonsense", headers=npy)
    assert garbage.status_code == 400 and garbage.json()["title"] == "Invalid array"
    assert garbage.json()["detail"].startswith("the body is not a .npy array (")
    many = np.zeros((9, 1, 28, 28), np.float32)
    assert_problem(
        client.post("/v1/encode", content=_npy(many), headers=npy),
        413,
        "Payload too large",
        "9 images is over the limit of 8 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)",
    )


def test_too_many_multipart_files_is_413(client: TestClient, digit_pngs) -> None:
    files = [("f", ("a.png", digit_pngs[0], "image/png"))]
    assert_problem(client.post("/v1/encode", files=files * 9), 413, "Payload too large",
                   "9 images is over the limit of 8 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)")  # fmt: skip
    assert_problem(client.post("/v1/encode", files=files * 12), 413, "Payload too large",
                   "more than 8 images is over the limit of 8 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)")  # the parser stops at 9  # fmt: skip


def test_limits_publish_what_a_client_splits_by(client: TestClient) -> None:
    assert client.get("/v1/limits").json() == {
        "max_body_bytes": 16 * 1024 * 1024, "max_images_per_request": 8, "max_pixels_per_image": 4096 * 4096,
        "max_samples": 64, "max_importance_samples": 5000, "max_total_importance_samples": 16384, "max_interpolation_steps": 64,
        "default_importance_samples": 64,
    }  # fmt: skip


def test_rgb_and_odd_sized_uploads_are_converted(client: TestClient, digit_pngs) -> None:
    grey = _png_to_array(digit_pngs[0])
    rgb = png_bytes(np.dstack([grey] * 3))
    big = png_bytes(np.kron(grey, np.ones((2, 2), np.uint8)))  # 56 x 56
    a, b, c = (
        client.post("/v1/encode", content=data, headers={"content-type": "image/png"}).json()["results"][0]["mean"]
        for data in (digit_pngs[0], rgb, big)
    )
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, a, atol=0.1)


def test_encode_sample_is_seeded(client: TestClient, digit_pngs) -> None:
    def z(seed: int) -> list[float]:
        r = client.post(
            f"/v1/encode?sample=true&seed={seed}", content=digit_pngs[0], headers={"content-type": "image/png"}
        )
        return r.json()["results"][0]["z"]

    assert z(3) == z(3) != z(4)


# -- decode and samples ---------------------------------------------------------------------


def test_decode_png_json_and_arrays(client: TestClient, runtime: VAERuntime) -> None:
    z = [[0.5, -1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]
    expected = runtime.decode(np.array(z, np.float32))
    one = client.post("/v1/decode", json={"latents": z[:1]}, headers={"accept": "image/png"})
    assert one.status_code == 200 and one.headers["content-type"] == "image/png"
    np.testing.assert_allclose(_png_to_array(one.content) / 255.0, expected[0, 0], atol=0.5 / 255 + 1e-6)
    as_json = client.post("/v1/decode", json={"latents": z}).json()
    assert len(as_json["images"]) == 2 and as_json["arrays"] is None
    np.testing.assert_allclose(
        _png_to_array(base64.b64decode(as_json["images"][1])) / 255.0, expected[1, 0], atol=0.5 / 255 + 1e-6
    )
    arrays = client.post("/v1/decode", json={"latents": z, "format": "array"}).json()["arrays"]
    np.testing.assert_allclose(arrays, expected, rtol=1e-6)


def test_samples_png_grid_is_reproducible(client: TestClient) -> None:
    a = client.get("/v1/samples?n=16&seed=7")
    b = client.get("/v1/samples?n=16&seed=7")
    c = client.get("/v1/samples?n=16&seed=8")
    assert a.headers["content-type"] == "image/png"
    assert a.content == b.content != c.content
    assert _png_to_array(a.content).shape == (4 * 30 + 2, 4 * 30 + 2)


def test_samples_json_has_images_and_their_latents(client: TestClient, runtime: VAERuntime) -> None:
    body = client.get("/v1/samples?n=3&seed=1&temperature=0.5&format=json").json()
    assert (body["seed"], body["temperature"], len(body["images"])) == (1, 0.5, 3)
    z, images = runtime.sample(3, seed=1, temperature=0.5)
    np.testing.assert_allclose(body["latents"], z, rtol=1e-6)
    np.testing.assert_allclose(
        _png_to_array(base64.b64decode(body["images"][2])) / 255.0, images[2, 0], atol=0.5 / 255 + 1e-6
    )


# -- reconstruct and score ---------------------------------------------------------------


def test_score_equals_the_runtime_with_the_calibrated_decision(
    client: TestClient, runtime: VAERuntime, digit_pngs, digit_arrays
) -> None:
    r = client.post("/v1/score?seed=5&importance_samples=12", json={"arrays": digit_arrays.tolist()})
    assert r.status_code == 200
    body = r.json()
    cal = runtime.manifest.calibration
    assert (body["importance_samples"], body["seed"], body["score"]) == (12, 5, cal.score)
    assert (body["threshold"], body["false_positive_rate"]) == (cal.threshold, cal.false_positive_rate)
    expected = runtime.score(digit_arrays, importance_samples=12, seed=5)
    for name in SCORE_NAMES:
        np.testing.assert_allclose([x[name] for x in body["results"]], expected[name], rtol=1e-9)
    decided = expected[cal.score]
    p = p_values(cal.scores[cal.score], decided)
    assert [x["p_value"] for x in body["results"]] == pytest.approx(p.tolist())
    assert [x["is_anomaly"] for x in body["results"]] == [bool(v > cal.threshold) for v in decided]


def test_score_defaults_to_the_calibrated_k_and_score_and_flags_noise(client: TestClient, runtime: VAERuntime) -> None:
    noise = np.random.default_rng(0).random((2, 1, 28, 28)).round(3)
    cal = runtime.manifest.calibration
    body = client.post("/v1/score", json={"arrays": noise.tolist()}).json()
    assert body["importance_samples"] == cal.importance_samples and body["score"] == cal.score == "fisher"
    expected = runtime.score(noise.astype(np.float32), cal.importance_samples, 0)["fisher"]
    assert [x["score"] for x in body["results"]] == [x["fisher"] for x in body["results"]] == expected.tolist()
    # This barely trained model's combination has a 30-image reference split, so its p-values
    # stop at 1/31 and fisher cannot rank noise above every calibration digit; mse can.
    strict = client.post("/v1/score?score=mse", json={"arrays": noise.tolist()}).json()
    assert all(x["is_anomaly"] and x["p_value"] == 1 / 61 for x in strict["results"])


def test_score_with_another_score_and_rate(client: TestClient, runtime: VAERuntime, digit_pngs) -> None:
    r = client.post(
        "/v1/score?score=mse&false_positive_rate=0.2", content=digit_pngs[0], headers={"content-type": "image/png"}
    )
    body = r.json()
    cal = runtime.manifest.calibration
    assert body["score"] == "mse" and body["false_positive_rate"] == 0.2
    assert body["threshold"] == threshold_at_fpr(cal.scores["mse"], 0.2)
    assert body["results"][0]["score"] == body["results"][0]["mse"]


def test_reconstruct_returns_images_and_scores(client: TestClient, runtime: VAERuntime, digit_arrays) -> None:
    body = client.post("/v1/reconstruct?importance_samples=4", json={"arrays": digit_arrays[:2].tolist()}).json()
    expected = runtime.reconstruct(digit_arrays[:2])
    first = _png_to_array(base64.b64decode(body["results"][0]["image"])) / 255.0
    np.testing.assert_allclose(first, expected[0, 0], atol=0.5 / 255 + 1e-6)
    scores = runtime.score(digit_arrays[:2], importance_samples=4, seed=0)
    assert body["results"][1]["scores"]["iwae_nll"] == pytest.approx(scores["iwae_nll"][1])
    arrays = client.post("/v1/reconstruct?format=array", json={"arrays": digit_arrays[:1].tolist()}).json()
    np.testing.assert_allclose(arrays["results"][0]["array"], expected[0], rtol=1e-6)


def test_score_with_complexity_is_calibrated(client: TestClient, runtime: VAERuntime, digit_arrays) -> None:
    body = client.post("/v1/score?score=complexity&importance_samples=8", json={"arrays": digit_arrays.tolist()}).json()
    cal = runtime.manifest.calibration
    expected = runtime.score(digit_arrays, importance_samples=8, seed=0)["complexity"]
    assert body["score"] == "complexity" and body["false_positive_rate"] == cal.false_positive_rate
    assert body["threshold"] == threshold_at_fpr(cal.scores["complexity"], cal.false_positive_rate)
    np.testing.assert_allclose([x["score"] for x in body["results"]], expected, rtol=1e-9)
    assert [x["p_value"] for x in body["results"]] == pytest.approx(
        p_values(cal.scores["complexity"], expected).tolist()
    )
    assert all(x["heatmap"] is None for x in body["results"])  # only when asked for


@pytest.fixture(scope="module")
def old_repository(repository, tmp_path_factory: pytest.TempPathFactory):
    """The digits bundle as calibrations were before pixel thresholds: none in its manifest."""
    bundle = load_bundle(repository / "digits" / "1")
    cal = bundle.manifest.calibration.model_copy(update={"pixel_threshold": None})
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    root = tmp_path_factory.mktemp("old")
    write_bundle(root / "digits" / "1", bundle.manifest.model_copy(update={"calibration": cal}), files)
    return root


def _heatmap(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (28, 28))
        return np.asarray(image)


def test_heatmaps_are_on_the_calibrations_scale(client: TestClient, runtime: VAERuntime, digit_arrays) -> None:
    scored = client.post("/v1/score?heatmap=true", json={"arrays": digit_arrays[:2].tolist()}).json()
    recon = client.post("/v1/reconstruct?heatmap=true", json={"arrays": digit_arrays[:2].tolist()}).json()
    pixel_nll = runtime.score(digit_arrays[:2], importance_samples=8, seed=0).pixel_nll
    threshold = runtime.manifest.calibration.pixel_threshold
    for body in (scored["results"], recon["results"]):
        for got, nll in zip(body, pixel_nll, strict=True):
            # the colour scale's entry for each pixel: 0 at 0 nats, 255 at twice the pixel threshold
            entry = np.round(np.clip(nll.sum(axis=0) / (2 * threshold), 0, 1) * 255).astype(int)
            np.testing.assert_array_equal(_heatmap(got["heatmap"]), COLORMAP[entry])
    # the scale is the calibration's, not the image's: a bright map's brightest pixel is not
    # always at the top of the scale, as it was with per-image scaling
    tops = [_heatmap(got["heatmap"]).reshape(-1, 3).tolist() for got in scored["results"]]
    assert [COLORMAP[255].tolist() in top for top in tops] == [bool(m.sum(0).max() >= 2 * threshold) for m in pixel_nll]


def test_without_a_pixel_threshold_heatmaps_use_each_images_own_scale(repository, old_repository, digit_arrays) -> None:
    settings = Settings(model_repository=old_repository, default_model="digits:1")
    with TestClient(create_app(settings)) as old:
        got = old.post("/v1/score?heatmap=true&importance_samples=8", json={"arrays": digit_arrays[:2].tolist()})
        refused = old.post("/v1/score?mask=true", json={"arrays": digit_arrays[:1].tolist()})
        also = old.post("/v1/score?overlay=true", json={"arrays": digit_arrays[:1].tolist()})
    nll = VAERuntime(load_bundle(repository / "digits" / "1")).score(digit_arrays[:2], 8, 0).pixel_nll
    assert [base64.b64decode(r["heatmap"]) for r in got.json()["results"]] == [heatmap_png(m) for m in nll]
    why = (
        "masks and overlays need the calibration's pixel threshold, and model 'digits' version '1' has none (no "
        "calibration, or one older than pixel thresholds): re-calibrate it with python -m training.calibrate"
    )
    assert_problem(refused, 422, "Invalid input", why)
    assert_problem(also, 422, "Invalid input", why)


def _png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def test_masks_and_overlays_follow_the_maps_and_the_decision(
    client: TestClient, runtime: VAERuntime, digit_arrays
) -> None:
    noise = np.random.default_rng(0).uniform(size=(1, 1, 28, 28)).astype(np.float32)
    square = np.zeros((1, 1, 28, 28), np.float32)
    square[0, 0, 2:9, 2:9] = 1.0  # a bright square on a blank image: the tiny model's map lights up there
    images = np.concatenate([digit_arrays[:3], noise, square])
    # the tiny model is a poor judge at 1 %; masks follow the request's decision, here at 20 %
    url = "/v1/score?mask=true&overlay=true&importance_samples=8&false_positive_rate=0.2"
    body = client.post(url, json={"arrays": images.tolist()})
    assert body.status_code == 200, body.text
    results = body.json()["results"]
    scored = runtime.score(images, 8, 0)
    cal = runtime.manifest.calibration
    flagged = scored[cal.score] > threshold_at_fpr(cal.scores[cal.score], 0.2)
    assert [r["is_anomaly"] for r in results] == flagged.tolist() and flagged[4] and not flagged.all()
    maps = scored.pixel_nll.sum(axis=1)  # (N, H, W), nats
    for r, m, anomalous, image in zip(results, maps, flagged, images, strict=True):
        mask = _png(r["mask"])
        assert (mask.mode, mask.size) == ("1", (28, 28))
        np.testing.assert_array_equal(np.asarray(mask), (m > cal.pixel_threshold) & anomalous)
        over = np.asarray(_png(r["overlay"]))
        assert over.shape == (28, 28, 3)
        quiet = m <= 0  # no colour where the map is at 0 nats: the input shows as it is
        np.testing.assert_array_equal(over[quiet], np.repeat(np.round(image[0][quiet] * 255), 3).reshape(-1, 3))
        assert r["heatmap"] is None  # only what was asked for
    square_mask = np.asarray(_png(results[4]["mask"]))
    assert square_mask.any() and square_mask.sum() == square_mask[2:9, 2:9].sum()  # on the square only
    plain = client.post("/v1/score?importance_samples=8", json={"arrays": images[:1].tolist()}).json()["results"][0]
    assert plain["mask"] is None and plain["overlay"] is None


def test_maps_over_the_size_limit_are_refused_before_any_work(repository, digit_pngs) -> None:
    settings = Settings(model_repository=repository, default_model="digits:1", max_body_bytes=16 * 1024)
    pngs = [base64.b64encode(p).decode() for p in digit_pngs]  # a small body: the limit is on the answer here
    with TestClient(create_app(settings)) as small:
        ok = small.post("/v1/score?mask=true&heatmap=true&overlay=true", json={"images": pngs[:1]})
        many = small.post("/v1/score?mask=true&heatmap=true&overlay=true", json={"images": pngs})
    assert ok.status_code == 200
    assert many.status_code == 422 and many.json()["detail"].startswith(f"{len(pngs)} images x 3 PNGs each")
    assert "over the limit of 16384 bytes (VAESERVE_MAX_BODY_BYTES" in many.json()["detail"]


# -- models --------------------------------------------------------------------------------


def test_models_list_and_detail(client: TestClient, runtime: VAERuntime) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["version"], m["default"]) for m in models] == [
        ("digits", "1", True), ("digits", "2", False), ("other", "1", False),
    ]  # fmt: skip
    assert models[0]["calibration"]["threshold"] == runtime.manifest.calibration.threshold
    detail = client.get("/v1/models/digits").json()
    assert (detail["version"], detail["versions"], detail["dataset"]) == (
        "2",
        ["1", "2"],
        runtime.manifest.dataset.source,
    )
    assert detail["files"]["encoder.onnx"] == runtime.manifest.files["encoder.onnx"].sha256
    assert client.get("/v1/models/digits?version=1").json()["default"] is True


def test_requests_pick_a_model_by_name_and_version(client: TestClient, digit_pngs) -> None:
    def served(query: str) -> tuple[str, str]:
        body = client.post(f"/v1/encode{query}", content=digit_pngs[0], headers={"content-type": "image/png"}).json()
        return body["model"], body["version"]

    assert served("") == ("digits", "1")  # the default
    assert served("?model=digits") == ("digits", "2")  # the highest version
    assert served("?model=other&version=1") == ("other", "1")


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status", "title", "detail"),
    [
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "Empty body", "the request has no body"),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400, "Empty body", "the request has no body"),
        ({"content": b"\x89PNG\r\n\x1a\nbroken", "headers": {"content-type": "image/png"}}, 400, "Invalid image",
         "image 0: not a decodable image"),
        ({"json": {"images": ["aGVsbG8="]}}, 400, "Invalid image", "image 0: not a decodable image"),
        ({"json": {"images": ["%%%"]}}, 400, "Invalid image", "image 0: not valid base64: character '%' at position 0"),
        ({"json": {"images": ["aGVs-G8/"]}}, 400, "Invalid image",
         "image 0: not valid base64: it mixes the standard (+/) and URL-safe (-_) alphabets"),
        ({"json": {"images": ["aGVsb"]}}, 400, "Invalid image",
         "image 0: not valid base64: its length is not a whole number of bytes"),
        ({"json": {"images": [], "arrays": [[[0.5] * 28] * 28]}}, 422, "Invalid input",
         'send "images" or "arrays", not both'),
        ({"content": b'{"arrays": [[' + b"1" * 5000 + b"]]}", "headers": {"content-type": "application/json"}}, 400,
         "Invalid JSON", "the body is not valid JSON (an integer of 5000 digits is out of range)"),
        ({"json": {"arrays": [[[0.5] * 27 + [True]] * 28]}}, 422, "Invalid input",
         "image 0: array is not a rectangular array of numbers"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "Invalid JSON",
         "the body is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ({"json": {"pictures": []}}, 422, "Invalid input",
         'the JSON body must be an object with "images" (base64 strings) or "arrays"'),
        ({"json": {"arrays": []}}, 422, "Invalid input", "the request holds no images; send 1 to 8"),
        ({"json": {"arrays": [[[0.5] * 28] * 27 + [[0.5] * 27]]}}, 422, "Invalid input",
         "image 0: array is not a rectangular array of numbers"),
        ({"json": {"arrays": [[[0.5] * 28] * 27]}}, 422, "Invalid input",
         "image 0: array shape [27, 28] does not match the model's [1, 28, 28]"),
        ({"content": b"hi", "headers": {"content-type": "text/plain"}}, 415, "Unsupported media type",
         "content type 'text/plain' is not supported here; send an image (image/png, image/jpeg, ...), "
         "multipart/form-data files, application/json or application/x-npy"),
        ({"data": {"field": "value"}}, 415, "Unsupported media type",
         "content type 'application/x-www-form-urlencoded' is not supported here; send an image (image/png, "
         "image/jpeg, ...), multipart/form-data files, application/json or application/x-npy"),
        ({"content": b"--x\r\nno headers", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400,
         "Invalid multipart body", "the multipart body cannot be parsed (Invalid multipart data)"),
        ({"content": b"", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400,
         "Empty body", "the request has no body"),
        ({"json": {"arrays": [[[0.5] * 28] * 28] * 9}}, 413, "Payload too large",
         "9 images is over the limit of 8 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)"),
    ],
)  # fmt: skip
def test_bad_image_inputs(client: TestClient, kwargs, status: int, title: str, detail: str) -> None:
    assert_problem(client.post("/v1/score", **kwargs), status, title, detail)


def test_the_failing_image_is_named(client: TestClient, digit_pngs) -> None:
    files = [("f", ("a.png", digit_pngs[0], "image/png")), ("f", ("b.png", b"garbage", "image/png"))]
    assert_problem(client.post("/v1/encode", files=files), 400, "Invalid image", "image 1: not a decodable image")
    truncated = digit_pngs[1][: len(digit_pngs[1]) // 2]
    r = client.post("/v1/encode", content=truncated, headers={"content-type": "image/png"})
    assert_problem(r, 400, "Invalid image", "image 0: corrupt image data (image file is truncated)")
    r = client.post("/v1/encode", files=[("field", (None, "just text"))])
    assert_problem(r, 422, "Invalid input", "the request holds no images; send 1 to 8")


@pytest.mark.parametrize(
    ("body", "status", "title", "detail"),
    [
        ({"latents": [[0.0, 0.0, 0.0]]}, 422, "Invalid input", "latent 0 has 3 values, the model takes 4"),
        ({"latents": [[0.0] * 4, [0.0] * 5]}, 422, "Invalid input", "latent 1 has 5 values, the model takes 4"),
        ({"latents": []}, 422, "Invalid input", "the request holds no latents; send 1 to 8"),
        ({"latents": [[0.0] * 4] * 9}, 413, "Payload too large",
         "9 latents is over the limit of 8 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)"),
        # numbers only: strings and booleans are refused, never cast (grader A, 13)
        ({"latents": [[0.0, 0.0, 0.0, "0"]]}, 422, "Invalid request", "body latents.0.3: Input should be a valid number"),
        ({"latents": [[0.0, 0.0, 0.0, True]]}, 422, "Invalid request", "body latents.0.3: Input should be a valid number"),
        ({"z": [[0.0] * 4]}, 422, "Invalid request", "body latents: Field required"),
        ({"latents": [[0.0] * 4], "format": "gif"}, 422, "Invalid request", "body format: Input should be 'png' or 'array'"),
    ],
)  # fmt: skip
def test_bad_latents(client: TestClient, body, status: int, title: str, detail: str) -> None:
    assert_problem(client.post("/v1/decode", json=body), status, title, detail)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_latents(client: TestClient, value: str) -> None:
    r = client.post(
        "/v1/decode", content=f'{{"latents": [[0, {value}, 0, 0]]}}', headers={"content-type": "application/json"}
    )
    assert_problem(r, 422, "Invalid input", "latents hold NaN or infinite values")


def test_decode_wants_json(client: TestClient) -> None:
    r = client.post("/v1/decode", content=b"0,0,0,0", headers={"content-type": "text/csv"})
    assert_problem(
        r, 415, "Unsupported media type", "content type 'text/csv' is not supported here; send application/json"
    )


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("n=0", "n must be between 1 and 64 (VAESERVE_MAX_SAMPLES), got 0"),
        ("n=65", "n must be between 1 and 64 (VAESERVE_MAX_SAMPLES), got 65"),
        ("n=lots", "query n: Input should be a valid integer, unable to parse string as an integer"),
        ("temperature=0", "query temperature: Input should be greater than 0"),
        ("seed=-1", "query seed: Input should be greater than or equal to 0"),
        ("format=gif", "query format: Input should be 'png' or 'json'"),
    ],
)
def test_samples_out_of_range(client: TestClient, query: str, detail: str) -> None:
    r = client.get(f"/v1/samples?{query}")
    assert r.status_code == 422 and r.json()["detail"] == detail and r.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        (
            "importance_samples=0",
            "importance_samples must be between 1 and 5000 (VAESERVE_MAX_IMPORTANCE_SAMPLES), got 0",
        ),
        (
            "importance_samples=5001",
            "importance_samples must be between 1 and 5000 (VAESERVE_MAX_IMPORTANCE_SAMPLES), got 5001",
        ),
        (
            "score=likelihood",
            "query score: Input should be 'neg_elbo', 'iwae_nll', 'mse', 'complexity', "
            "'posterior_mean_nll', 'discretised_nll', 'dssim', 'mahalanobis', 'latent_nll', 'fisher' or 'tippett'",
        ),
        ("false_positive_rate=1", "query false_positive_rate: Input should be less than 1"),
    ],
)
def test_score_parameters_out_of_range(client: TestClient, digit_pngs, query: str, detail: str) -> None:
    r = client.post(f"/v1/score?{query}", content=digit_pngs[0], headers={"content-type": "image/png"})
    assert r.status_code == 422 and r.json()["detail"] == detail


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/v1/models/nope", "no model named 'nope'"),
        ("/v1/models/digits?version=9", "no model named 'digits' with version '9'"),
        ("/v1/samples?model=nope", "no model named 'nope'"),
        ("/v1/samples?version=2", "no model named 'digits' with version '2'"),
    ],
)
def test_unknown_model(client: TestClient, path: str, detail: str) -> None:
    assert_problem(client.get(path), 404, "Model not found", detail)


def test_unknown_route_and_method_are_problems_too(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "Not found", "Not Found")
    assert_problem(client.get("/v1/score"), 405, "Method not allowed", "Method Not Allowed")


def test_openapi_documents_every_endpoint_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/encode", "/v1/decode", "/v1/reconstruct", "/v1/score"):
        content = spec["paths"][path]["post"]["requestBody"]["content"]
        assert "application/json" in content
    for path in ("/v1/encode", "/v1/reconstruct", "/v1/score"):
        assert {"image/png", "multipart/form-data"} <= set(spec["paths"][path]["post"]["requestBody"]["content"])
    assert spec["paths"]["/v1/samples"]["get"]["summary"].startswith("Draw n images from the prior")
    schemas = spec["components"]["schemas"]
    for name in ("EncodeResponse", "ScoreResponse", "SamplesResponse", "ModelList"):
        assert name in schemas
    assert schemas["ScoredImage"]["properties"]["p_value"]["examples"] == [0.42]
    assert client.get("/docs").status_code == 200
