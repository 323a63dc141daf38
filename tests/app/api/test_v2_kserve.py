"""KServe's Python SDK (`kserve`: InferenceRESTClient and its v2 pydantic models) against a live
server, beside Triton's client (test_v2_tritonclient.py). kserve pins its own FastAPI,
uvicorn and pydantic, so it gets a virtual environment of its own, made once per session,
and tests/app/api/kserve_driver.py runs in it; its answers are compared with /v1's."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from tests.app.test_server import serve

KSERVE = "kserve>=0.15,<1"
DRIVER = Path(__file__).with_name("kserve_driver.py")


@pytest.fixture(scope="session")
def kserve_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = tmp_path_factory.mktemp("venv-kserve")
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", KSERVE],
                   check=True, capture_output=True, text=True, timeout=1200)  # fmt: skip
    return python


def test_kserve_sdk_reads_every_answer(kserve_python: Path, repository: Path, digit_arrays, tmp_path: Path) -> None:
    images = digit_arrays[:2]
    np.save(tmp_path / "images.npy", images)
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as v1:
        run = subprocess.run([str(kserve_python), str(DRIVER), url, str(tmp_path / "images.npy")],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        got = json.loads(run.stdout)
        want = v1.post("/v1/encode?sample=true&seed=2", json={"arrays": images.tolist()}).json()["results"]
        scores = v1.post("/v1/score?importance_samples=8", json={"arrays": images.tolist()}).json()["results"]
    assert (got["live"], got["ready"], got["model_ready"], got["unknown_model_ready"]) == (True, True, True, False)
    for binary in (False, True):
        encoded = got[f"encoder_binary_{binary}"]
        for name in ("mean", "z"):
            np.testing.assert_array_equal(
                np.asarray(encoded[name], np.float32), np.asarray([r[name] for r in want], np.float32)
            )
        assert got[f"encoder_id_{binary}"]  # an id, though the SDK sent none
    assert got["scorer_mse"] == [r["mse"] for r in scores]
