"""Over the wire: a real uvicorn process on 127.0.0.1, start-up failures, and the torch-free install."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from bench import harness
from bench.harness import PORT
from model.bundle import Bundle, load_bundle, write_bundle
from model.errors import BundleError

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serve(repository: Path, python: str = sys.executable, *args: str, cwd: Path = ROOT) -> Iterator[str]:
    """Run `python -m app` on a free port until the block ends; yield its base URL once ready."""
    argv = [python, "-m", "app", "--repository", str(repository), "--port", PORT, "--log-level", "warning", *args]
    with harness.serve(argv, cwd=cwd) as live:
        yield live.url


def exercise_every_endpoint(url: str, png: bytes) -> dict[str, object]:
    """Hit every v1 endpoint once over HTTP and return what they answered."""
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ready"
        encoded = c.post("/v1/encode?sample=true", content=png, headers={"content-type": "image/png"}).json()
        multipart = c.post("/v1/encode", files=[("f", ("a.png", png, "image/png"))] * 2).json()
        z = encoded["results"][0]["mean"]
        decoded = c.post("/v1/decode", json={"latents": [z]}, headers={"accept": "image/png"})
        assert decoded.headers["content-type"] == "image/png"
        samples = c.get("/v1/samples?n=4&seed=7")
        samples_json = c.get("/v1/samples?n=2&seed=7&format=json").json()
        recon = c.post("/v1/reconstruct", json={"images": [base64.b64encode(png).decode()]}).json()
        score = c.post("/v1/score?importance_samples=8", content=png, headers={"content-type": "image/png"}).json()
        models = c.get("/v1/models").json()
        detail = c.get(f"/v1/models/{models['models'][0]['name']}").json()
        missing = c.get("/v1/models/nope")
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert c.get("/openapi.json").status_code == 200
        path = c.post("/v1/interpolate?steps=3", files=[("f", ("a.png", png, "image/png"))] * 2).json()
        assert len(path["images"]) == 3 and path["latents"][0] == pytest.approx(z, abs=1e-6)
        swept = c.post("/v1/traverse?steps=3&dimensions=0", json={"latents": [z]}).json()
        assert [len(row["images"]) for row in swept["dimensions"]] == [3]
        for page in sorted(p.name for p in (ROOT / "app" / "playground").iterdir()):  # the installed package's files
            assert c.get(f"/playground/{page}").status_code == 200, page
        assert c.get("/playground", follow_redirects=True).text.startswith("<!doctype html>")
    return {
        "mean": z, "multipart": multipart, "samples": samples.content, "samples_json": samples_json,
        "recon": recon, "score": score, "detail": detail,
    }  # fmt: skip


def test_a_real_uvicorn_process_serves_every_endpoint(repository: Path, digit_pngs, client: TestClient) -> None:
    with serve(repository, sys.executable, "--default-model", "digits:1") as url:
        answers = exercise_every_endpoint(url, digit_pngs[0])
    in_process = client.post(
        "/v1/score?importance_samples=8", content=digit_pngs[0], headers={"content-type": "image/png"}
    )
    assert answers["score"] == in_process.json()  # the same numbers over the wire as in process
    assert len(answers["multipart"]["results"]) == 2  # type: ignore[index]


def test_samples_are_the_same_bytes_across_processes(repository: Path) -> None:
    grids = []
    for _ in range(2):
        with serve(repository) as url:
            grids.append(httpx.get(f"{url}/v1/samples?n=16&seed=7", timeout=30).content)
    assert grids[0] == grids[1] and grids[0].startswith(b"\x89PNG")


def _rehash(path: Path, **changed: bytes) -> None:
    """Replace files of the bundle at `path` and re-hash them in its manifest: only the golden set can tell."""
    manifest = load_bundle(path).manifest
    write_bundle(path, manifest, {name: (path / name).read_bytes() for name in manifest.files} | changed, force=True)


def _edit_golden(path: Path) -> None:
    raw = json.loads((path / "golden.json").read_text())
    raw["images"][0]["scores"]["mse"] *= 1.5
    _rehash(path, **{"golden.json": json.dumps(raw).encode()})


def _edit_calibration(path: Path, **changed: object) -> None:
    """Edit fields of the manifest's calibration by hand, as a person with an editor would."""
    raw = json.loads((path / "manifest.json").read_text())
    raw["calibration"] |= changed
    (path / "manifest.json").write_text(json.dumps(raw, indent=2))


def _calibration(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())["calibration"]


def _shift_a_weight(path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string((path / "encoder.onnx").read_bytes())
    bias = next(t for t in graph.graph.initializer if numpy_helper.to_array(t).ndim == 1)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, bias.name))
    _rehash(path, **{"encoder.onnx": graph.SerializeToString()})


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda b: (b / "decoder.onnx").write_bytes(b"x" + (b / "decoder.onnx").read_bytes()[1:]),
         "decoder.onnx: sha256 does not match the manifest"),
        (lambda b: (b / "encoder.onnx").unlink(), "encoder.onnx: missing file listed in the manifest"),
        (lambda b: (b / "manifest.json").write_text("{}"), "manifest.json: invalid manifest at name: Field required"),
        (lambda b: _edit_golden(b), r"golden.json: image 0 \(normal: held-out image 0\): score mse is [0-9.e-]+ here "
         r"but [0-9.e-]+ in the golden set \(\|difference\| [0-9.e-]+ > tolerance [0-9.e-]+\)"),
        (lambda b: _shift_a_weight(b), r"golden.json: image 0 \(normal: held-out image 0\): latent mean\[0\] is"),
        # an edited calibration is the manifest's fault, named before any golden value is compared
        (lambda b: _edit_calibration(b, false_positive_rate=0.05),
         r"manifest.json: calibration.threshold [0-9.]+ is not the threshold of calibration.scores.\w+ at "
         r"calibration.false_positive_rate 0.05, [0-9.]+: one of them was changed"),
        (lambda b: _edit_calibration(b, threshold=_calibration(b)["threshold"] * 1.01),
         r"manifest.json: calibration.threshold [0-9.]+ is not the threshold of calibration.scores"),
        (lambda b: _edit_calibration(b, score="kl"),
         r"manifest.json: calibration.score 'kl' has no calibration scores \(calibration.scores holds neg_elbo, "),
        (lambda b: _edit_calibration(b, score=next(n for n in _calibration(b)["scores"] if n != _calibration(b)["score"])),
         r"manifest.json: calibration.threshold [0-9.]+ is not the threshold of calibration.scores.\w+ at "),
    ],
)  # fmt: skip
def test_a_broken_bundle_stops_the_service_at_start_up(
    repository: Path, tmp_path: Path, breakage, message: str
) -> None:
    broken = tmp_path / "repo"
    shutil.copytree(repository, broken)
    breakage(broken / "digits" / "2")
    with pytest.raises(BundleError, match=message), TestClient(create_app(Settings(model_repository=broken))):
        pass
    port = harness.free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--repository", str(broken), "--port", str(port)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3  # uvicorn's start-up failure status
    assert proc.stderr.startswith(f"error: cannot serve: {broken / 'digits' / '2'}") and re.search(message, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr  # one clear line, nothing after it


def test_bad_settings_fail_fast(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--repository", str(tmp_path / "none")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "VAESERVE_MAX_SAMPLES": "0"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "error: setting model_repository: Value error, model repository" in proc.stderr
    assert "error: setting max_samples: Input should be greater than or equal to 1" in proc.stderr


def test_the_service_never_imports_torch_or_training(repository: Path) -> None:
    code = (
        "import sys; from fastapi.testclient import TestClient; from app.main import create_app; "
        "from app.settings import Settings; "
        f"c = TestClient(create_app(Settings(model_repository={str(repository)!r}))).__enter__(); "
        "assert c.get('/v1/samples?n=2').status_code == 200; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training', 'onnx', 'onnxscript')); "
        "print(json.dumps(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    for package in ("app", "model"):
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text()
            assert "import torch" not in source and "from torch" not in source, path
            assert "from training" not in source and "import training" not in source, path


def test_the_base_install_serves_every_endpoint_without_torch(
    base_install: Path, repository: Path, tmp_path: Path, digit_pngs
) -> None:
    probe = subprocess.run([str(base_install), "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    # Run from outside the checkout, so only the installed package can be imported.
    with serve(repository, str(base_install), cwd=tmp_path) as url:
        answers = exercise_every_endpoint(url, digit_pngs[0])
    assert answers["samples"].startswith(b"\x89PNG")  # type: ignore[union-attr]
    assert len(answers["mean"]) == 4  # type: ignore[arg-type]


def test_several_worker_processes_serve(repository: Path, digit_pngs) -> None:
    with serve(repository, sys.executable, "--workers", "2", "--default-model", "other") as url:
        answers = [
            httpx.post(
                f"{url}/v1/encode", content=digit_pngs[0], headers={"content-type": "image/png"}, timeout=30
            ).json()
            for _ in range(6)
        ]
    assert {a["model"] for a in answers} == {"other"}  # the flag reached every worker
    assert all(a["results"] == answers[0]["results"] for a in answers)


def test_a_real_server_serves_an_int8_bundle_and_says_so(quantized: Bundle, digit_pngs) -> None:
    png = {"content": digit_pngs[0], "headers": {"content-type": "image/png"}}
    with (
        serve(quantized.path.parent.parent, sys.executable, "--default-model", "digits:2") as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        models = {f"{m['name']}:{m['version']}": m for m in c.get("/v1/models").json()["models"]}
        score = c.post("/v1/score?importance_samples=8", **png)  # type: ignore[arg-type]
        encoded = c.post("/v1/encode", **png)  # type: ignore[arg-type]
    assert models["digits:1"]["quantization"] is None
    q = models["digits:2"]["quantization"]
    assert q["parent"] == {"name": "digits", "version": "1", "sha256": quantized.manifest.quantization.parent.sha256}
    assert q["graphs"] == ["encoder", "decoder"] and len(q["quality"]) == len(quantized.manifest.quantization.quality)
    assert score.status_code == 200 and score.json()["version"] == "2"
    assert score.json()["threshold"] == quantized.manifest.calibration.threshold
    assert encoded.status_code == 200 and len(encoded.json()["results"][0]["mean"]) == quantized.manifest.latent_dim


def test_workers_stopped_by_sigterm_write_every_access_line(repository: Path, digit_pngs, tmp_path: Path) -> None:
    """uvicorn's workers die by the SIGTERM it re-raises after their graceful shutdown, without
    running logging.shutdown: their held-back access lines must be out by then (app/logs.py)."""
    port = str(harness.free_port())
    log_path = tmp_path / "server.log"
    env = harness.without_settings(VAESERVE_LOG_FORMAT="json")
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--workers", "2", "--port", port]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while not _ready(url) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _ready(url), log_path.read_text()[-2000:]
            ids = [f"sigterm-{i}" for i in range(20)]
            with httpx.Client(base_url=url, timeout=30) as c:
                for request_id in ids:
                    headers = {"content-type": "image/png", "x-request-id": request_id}
                    assert c.post("/v1/encode", content=digit_pngs[0], headers=headers).status_code == 200
            proc.send_signal(signal.SIGTERM)  # at once: the access lines are still held back
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole: none torn by another worker's
    logged = {r.get("request_id") for r in records if r.get("name") == "app.access"}
    assert set(ids) <= logged
    assert sum("Finished server process" in r["message"] for r in records) >= 2  # each worker's last words


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
