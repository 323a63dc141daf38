"""Any number of images in one call: the clients and the CLI split them to fit GET /v1/limits.

Against a live server with small limits (3 images, 8 KiB of body, images x K <= 16 per
request): every call below would be refused in one request (the first test shows it), and
each must give, in order, exactly what the images give one at a time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image

from bench.harness import PORT, serve, without_settings
from client import AsyncVAEClient, VAEClient, VAEServeError
from client.batching import Budget

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"VAESERVE_MAX_IMAGES_PER_REQUEST": "3", "VAESERVE_MAX_BODY_BYTES": "8192",
          "VAESERVE_MAX_TOTAL_IMPORTANCE_SAMPLES": "16"}  # fmt: skip
CALIBRATED_K = 8  # tests/helpers.py's bundle


@pytest.fixture(scope="module")
def small_url(repository: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--default-model", "digits:1",
            "--log-level", "warning"]  # fmt: skip
    with serve(argv, env=without_settings(**LIMITS)) as live:
        yield live.url


@pytest.fixture(scope="module")
def ten_arrays(digit_arrays: np.ndarray) -> np.ndarray:
    """Ten different images (N, 1, 28, 28) float32: float32 pixels are 3136 bytes, so 2 fit in 8 KiB of .npy."""
    return np.concatenate([digit_arrays, 1.0 - digit_arrays, digit_arrays[:2, :, ::-1]])


@pytest.fixture
def ten_files(tmp_path: Path, ten_arrays: np.ndarray) -> list[Path]:
    files = [tmp_path / f"img{i}.png" for i in range(len(ten_arrays))]
    for path, image in zip(files, ten_arrays, strict=True):
        Image.fromarray(np.round(image[0] * 255).astype(np.uint8)).save(path)
    return files


def test_the_limits_refuse_one_request_and_the_budget_follows_them(small_url: str, ten_files: list[Path]) -> None:
    files = [("file", (p.name, p.read_bytes(), "image/png")) for p in ten_files[:4]]
    assert httpx.post(f"{small_url}/v1/encode", files=files).status_code == 413  # 4 images > 3
    assert httpx.post(f"{small_url}/v1/score", files=files[:3]).status_code == 422  # 3 x K=8 > 16
    with VAEClient(small_url) as vae:
        limits = vae.limits()
        assert (limits.max_total_importance_samples, limits.default_importance_samples) == (16, 64)
        assert vae.budget() == Budget(max_images=3, max_bytes=8192)
        assert vae.budget(max_images=2) == Budget(max_images=2, max_bytes=8192)
        assert vae.budget(scored=True) == Budget(max_images=16 // CALIBRATED_K, max_bytes=8192)  # the calibration's K
        assert vae.budget(scored=True, importance_samples=16) == Budget(max_images=1, max_bytes=8192)
        assert vae.budget(scored=True, importance_samples=4) == Budget(max_images=3, max_bytes=8192)
        assert vae.budget(scored=True, importance_samples=5000).max_images == 1  # K alone over: the server says why
        with pytest.raises(VAEServeError) as empty:  # nothing to split: the server's own answer
            vae.encode(np.zeros((0, 1, 28, 28), np.float32))
        assert empty.value.status in (400, 422)


def test_the_sync_client_splits_every_kind_of_images(
    small_url: str, ten_arrays: np.ndarray, ten_files: list[Path]
) -> None:
    with VAEClient(small_url) as vae:
        alone = np.concatenate([vae.encode(path).mean for path in ten_files])  # (10, 4)
        for images in (ten_files, [p.read_bytes() for p in ten_files], [Image.open(p) for p in ten_files]):
            np.testing.assert_array_equal(vae.encode(images).mean, alone)  # 4 requests of 3, 3, 3, 1
        from_pixels = vae.encode(ten_arrays).mean  # 5 requests of 2 (.npy bytes)
        np.testing.assert_allclose(from_pixels, alone, atol=2e-3)  # PNG rounds pixels to 1/255
        np.testing.assert_array_equal(vae.encode(list(ten_arrays)).mean, from_pixels)
        np.testing.assert_array_equal(from_pixels, np.concatenate([vae.encode(a).mean for a in ten_arrays]))

        scores = vae.score(ten_files)  # K = 8: 2 images per request
        assert scores.importance_samples == CALIBRATED_K and len(scores.results) == 10
        assert [r.score for r in scores.results] == [vae.score(p).results[0].score for p in ten_files]
        k16 = vae.score(ten_files[:3], importance_samples=16, seed=2)  # 1 image per request
        assert [r.score for r in k16.results] == [
            vae.score(p, importance_samples=16, seed=2).results[0].score for p in ten_files[:3]
        ]
        recon = vae.reconstruct(ten_files[:5], importance_samples=8, format="array")
        assert recon.pixels.shape == (5, 1, 28, 28)
        assert recon.results[4] == vae.reconstruct(ten_files[4], importance_samples=8, format="array").results[0]


def test_the_async_client_splits_too(small_url: str, ten_arrays: np.ndarray, ten_files: list[Path]) -> None:
    async def scenario() -> tuple[np.ndarray, np.ndarray, list[float]]:
        async with AsyncVAEClient(small_url) as vae:
            by_file = (await vae.encode(ten_files)).mean
            by_array = (await vae.encode(ten_arrays)).mean
            scores = await vae.score(ten_files[:5])
            return by_file, by_array, [r.score for r in scores.results]

    by_file, by_array, scores = asyncio.run(scenario())
    with VAEClient(small_url) as vae:
        np.testing.assert_array_equal(by_file, vae.encode(ten_files).mean)
        np.testing.assert_array_equal(by_array, vae.encode(ten_arrays).mean)
        assert scores == [r.score for r in vae.score(ten_files[:5]).results]


def test_the_cli_splits_by_the_importance_sample_budget(small_url: str, ten_files: list[Path], tmp_path: Path) -> None:
    env = without_settings(VAESERVE_URL=small_url, PYTHONPATH=str(ROOT))

    def vaeserve(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "client", *args], cwd=tmp_path, env=env, capture_output=True,
                              timeout=120)  # fmt: skip

    folder = str(ten_files[0].parent)
    done = vaeserve("score", folder, "-k", "16", "--json")  # 10 requests of one image: 16 x 1 <= 16
    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert answer["importance_samples"] == 16
    with VAEClient(small_url) as vae:
        expected = [vae.score(p, importance_samples=16).results[0].score for p in ten_files]
    assert [(res["file"], res["score"]) for res in answer["results"]] == list(
        zip(map(str, ten_files), expected, strict=True)
    )
    default_k = vaeserve("reconstruct", folder, "-o", str(tmp_path / "recon"))  # K = 8: 2 per request
    assert default_k.returncode == 0, default_k.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "recon").iterdir()) == sorted(p.name for p in ten_files)
