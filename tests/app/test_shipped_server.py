"""The shipped model repository over the wire: a real uvicorn serving both bundles of model/zoo,
the digits and the colour fundus patches, with masks and overlays on /v1/score."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image

from app.settings import SHIPPED_REPOSITORY
from tests.app.test_server import serve
from tests.helpers import shipped_test_split
from training.config import load_config
from training.defects import add_defects
from training.fundus import CONFIG, split_patches


@pytest.fixture(scope="module")
def shipped() -> Iterator[httpx.Client]:
    with serve(SHIPPED_REPOSITORY) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def _png(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image)


def test_both_shipped_models_are_ready_and_the_digits_are_the_default(shipped: httpx.Client) -> None:
    # ready means loaded, warmed up and each golden set recomputed and matched (app/serving/registry.py)
    assert shipped.get("/readyz").json()["models"] == ["fundus-vae:1", "mnist-vae:1"]
    models = {m["name"]: m for m in shipped.get("/v1/models").json()["models"]}
    assert models["mnist-vae"]["default"] and not models["fundus-vae"]["default"]
    assert models["fundus-vae"]["input"]["channels"] == 3 and models["fundus-vae"]["input"]["height"] == 64


def test_a_digit_with_a_bright_square_gets_a_mask_on_the_square(shipped: httpx.Client) -> None:
    _, test = shipped_test_split()  # held-out digits: neither trained nor calibrated on
    normal = test[:1]
    square = normal.copy()
    square[0, 0, 2:9, 2:9] = 1.0  # 7 x 7, in a corner the digit leaves blank
    body = {"arrays": np.concatenate([normal, square]).tolist()}
    r = shipped.post("/v1/score?mask=true&overlay=true&heatmap=true", json=body)
    assert r.status_code == 200, r.text
    plain, defective = r.json()["results"]
    assert (plain["is_anomaly"], defective["is_anomaly"]) == (False, True)
    assert not _png(plain["mask"]).any()  # judged normal: an empty mask
    mask = _png(defective["mask"])
    assert mask.shape == (28, 28) and mask.dtype == bool
    inside = mask[2:9, 2:9].sum()
    assert inside >= 0.5 * 49 and inside >= 0.9 * mask.sum()  # covers the square, and little else
    overlay = _png(defective["overlay"])
    assert overlay.shape == (28, 28, 3)
    assert overlay[2:9, 2:9].mean() > overlay[20:, :8].mean() + 50  # coloured where the square is


def test_the_fundus_model_scores_a_defective_patch_above_a_normal_one(shipped: httpx.Client) -> None:
    patches = split_patches("test", 3, load_config(CONFIG, []).data)  # held-out blocks of the photograph
    scratched, truth = add_defects(patches[1:], "scratch", np.random.default_rng(0))  # bright lines on 2 and 3
    body = {"arrays": np.concatenate([patches[:1], scratched]).tolist()}
    r = shipped.post("/v1/score?model=fundus-vae&mask=true&overlay=true", json=body)
    assert r.status_code == 200, r.text
    normal, faint, bright = r.json()["results"]
    assert faint["score"] > normal["score"] and bright["score"] > normal["score"]
    # at the 1 % threshold the second scratch (191 pixels) is flagged, the first (82) is not
    assert (normal["is_anomaly"], faint["is_anomaly"], bright["is_anomaly"]) == (False, False, True)
    assert not _png(normal["mask"]).any() and not _png(faint["mask"]).any()
    mask = _png(bright["mask"])
    assert mask.shape == (64, 64) and (mask & truth[1]).sum() >= 0.9 * mask.sum() and mask.sum() >= 0.5 * truth[1].sum()
    assert _png(bright["overlay"]).shape == (64, 64, 3)
