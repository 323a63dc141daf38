"""`vaeserve` run as a subprocess against the live server: what a person sees, and its exit codes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench.harness import PORT, free_port, serve, without_settings
from client import VAEClient
from client.output import number

ROOT = Path(__file__).resolve().parents[2]


def multipart(files: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f.name, f.read_bytes(), "image/png")) for f in files]


@pytest.fixture
def vaeserve(live_url: str, tmp_path: Path):
    """Run `vaeserve ARGS` (as `python -m client`) in tmp_path against the live server."""

    def run(*args: str, stdin: bytes | None = None, url: str = live_url) -> subprocess.CompletedProcess[bytes]:
        env = without_settings(VAESERVE_URL=url, PYTHONPATH=str(ROOT))
        return subprocess.run([sys.executable, "-m", "client", *args], cwd=tmp_path, env=env, input=stdin,
                              capture_output=True, timeout=60)  # fmt: skip

    return run


def test_health_and_models(vaeserve) -> None:
    health = vaeserve("health")
    assert health.returncode == 0 and health.stdout.decode().startswith(
        "ready: digits:1, digits:2, other:1 at http://127.0.0.1:"
    )
    table = vaeserve("models").stdout.decode().splitlines()
    assert table[0].split() == [
        "model",
        "(*",
        "default)",
        "input",
        "latent",
        "likelihood",
        "test",
        "neg_elbo",
        "anomaly",
        "when",
    ]
    assert [line.split()[:4] for line in table[1:]] == [
        ["digits:1", "*", "1x28x28", "4"], ["digits:2", "1x28x28", "4", "bernoulli"], ["other:1", "1x28x28", "4", "bernoulli"]
    ]  # fmt: skip
    detail = json.loads(vaeserve("models", "digits:2").stdout)
    assert (detail["name"], detail["version"], detail["versions"]) == ("digits", "2", ["1", "2"])


def test_encode_a_table_or_json(vaeserve, digit_files: list[Path], in_process: TestClient) -> None:
    table = vaeserve("encode", *map(str, digit_files)).stdout.decode().splitlines()
    assert (
        table[:2]
        == [
            "model digits:1",
            "file                                                    mean (4 values)"[: len(table[1])],
        ]
        or table[0] == "model digits:1"
    )
    assert [line.split()[0] for line in table[2:]] == [str(f) for f in digit_files]
    expected = in_process.post("/v1/encode", files=multipart(digit_files)).json()
    answer = json.loads(vaeserve("encode", "--json", *map(str, digit_files)).stdout)
    assert [res.pop("file") for res in answer["results"]] == [str(f) for f in digit_files]
    assert answer == expected
    # A table value is the mean, rounded.
    first = [float(v) for v in table[2].split()[1:]]
    assert first == [round(v, 2) for v in expected["results"][0]["mean"]]


def test_sample_decode_and_reconstruct_write_images(
    vaeserve, digit_files: list[Path], in_process: TestClient, tmp_path: Path
) -> None:
    done = vaeserve("sample", "-n", "16", "--seed", "7", "-o", "grid.png")
    assert done.stdout.decode() == "wrote grid.png (16 samples, seed 7, temperature 1)\n"
    assert (tmp_path / "grid.png").read_bytes() == in_process.get("/v1/samples?n=16&seed=7").content
    to_stdout = vaeserve("sample", "-n", "4", "--seed", "7", "-t", "0.5", "-o", "-")
    assert to_stdout.stdout == in_process.get("/v1/samples?n=4&seed=7&temperature=0.5").content
    samples = json.loads(vaeserve("sample", "-n", "2", "--json").stdout)
    assert samples == in_process.get("/v1/samples?n=2&format=json").json()

    # encode --json | decode -: the image decoded from the first digit's mean.
    encoded = vaeserve("encode", "--json", str(digit_files[0])).stdout
    assert vaeserve("decode", "-", "-o", "back.png", stdin=encoded).stdout.decode() == "wrote back.png (1 image)\n"
    mean = json.loads(encoded)["results"][0]["mean"]
    same = in_process.post("/v1/decode", json={"latents": [mean]}, headers={"accept": "image/png"}).content
    assert (tmp_path / "back.png").read_bytes() == same
    assert vaeserve("decode", "-z", ",".join(map(str, mean)), "-z", "0 0 0 0", "-o", "two.png").returncode == 0

    done = vaeserve("reconstruct", str(digit_files[0].parent), "-o", "recon", "-k", "8")
    expected = in_process.post("/v1/reconstruct?importance_samples=8", files=multipart(digit_files)).json()
    for path, res in zip(digit_files, expected["results"], strict=True):
        assert (tmp_path / "recon" / path.name).read_bytes() == base64.b64decode(res["image"])
    lines = done.stdout.decode().splitlines()
    assert lines[0].split() == ["file", "reconstruction", "neg_elbo", "mse"] and len(lines) == 5


def test_score_a_table_json_and_the_exit_code(vaeserve, digit_files: list[Path], in_process: TestClient) -> None:
    expected = in_process.post("/v1/score", files=multipart(digit_files)).json()
    table = vaeserve("score", *map(str, digit_files)).stdout.decode().splitlines()
    assert (
        table[0] == f"model digits:1  score {expected['score']}  K=8  threshold {number(expected['threshold'])} "
        "(false positive rate 0.01)"
    )
    assert table[1].split() == ["file", "score", "p-value", "anomaly"]
    for line, path, res in zip(table[2:], digit_files, expected["results"], strict=True):
        decision = "ANOMALY" if res["is_anomaly"] else "no"
        assert line.split() == [str(path), number(res["score"]), f"{res['p_value']:.3g}", decision]
    # A directory stands for its images; three a request gives the same numbers as four.
    answer = json.loads(vaeserve("score", str(digit_files[0].parent), "--json", "--batch-size", "3").stdout)
    assert [res.pop("file") for res in answer["results"]] == [str(f) for f in digit_files]
    assert answer == expected

    # At a 99 % false positive rate nearly everything is an anomaly: exit 1 only when asked to fail.
    strict = ["score", *map(str, digit_files), "--score", "mse", "--fpr", "0.99"]
    flagged = in_process.post("/v1/score?score=mse&false_positive_rate=0.99", files=multipart(digit_files)).json()
    assert any(res["is_anomaly"] for res in flagged["results"])
    assert vaeserve(*strict).returncode == 0
    assert vaeserve(*strict, "--fail-on-anomaly").returncode == 1
    assert vaeserve("score", str(digit_files[0]), "--fail-on-anomaly", "--fpr", "0.0001").returncode == 0


def test_interpolate_and_traverse_write_pngs_or_json(
    vaeserve, digit_files: list[Path], in_process: TestClient, tmp_path: Path
) -> None:
    a, b = map(str, digit_files[:2])
    done = vaeserve("interpolate", a, b, "--steps", "5", "--method", "linear", "-o", "path.png")
    assert done.stdout.decode() == "wrote path.png (5 images, linear)\n"
    expected = in_process.post("/v1/interpolate?steps=5&method=linear&format=png", files=multipart(digit_files[:2]))
    assert (tmp_path / "path.png").read_bytes() == expected.content
    answer = json.loads(vaeserve("interpolate", a, b, "--json").stdout)
    assert answer == in_process.post("/v1/interpolate", files=multipart(digit_files[:2])).json()
    z = [",".join(map(str, row)) for row in answer["latents"][:: len(answer["latents"]) - 1]]  # the two ends
    from_latents = json.loads(vaeserve("interpolate", "-z", z[0], "-z", z[1], "--json").stdout)
    assert from_latents["images"] == answer["images"]

    done = vaeserve("traverse", a, "-d", "2", "-d", "0", "--low", "-1", "--high", "1", "--steps", "3", "-o", "-")
    query = "dimensions=2&dimensions=0&low=-1&high=1&steps=3&format=png"
    assert done.stdout == in_process.post(f"/v1/traverse?{query}", files=multipart(digit_files[:1])).content
    done = vaeserve("traverse", "-z", "0,0,0,0", "-o", "sweep.png")
    assert done.stdout.decode() == "wrote sweep.png (the most active dimensions x 7 values)\n"
    sweep = json.loads(vaeserve("traverse", "-z", "0 0 0 0", "--json").stdout)
    assert sweep == in_process.post("/v1/traverse", json={"latents": [[0, 0, 0, 0]]}).json()


def test_errors_are_one_line_on_stderr(vaeserve, digit_files: list[Path], tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    port = free_port()  # nothing listens there
    cases = [
        (["encode", "-m", "nope", str(digit_files[0])], 1, "error: 404 Model not found: no model named 'nope'\n"),
        (["--url", f"http://127.0.0.1:{port}", "--retries", "0", "models"], 1,
         f"error: cannot reach http://127.0.0.1:{port}: connection refused or host unreachable; is the server running? (--url or VAESERVE_URL)\n"),
        (["sample", "-n", "2"], 2, "Error: give -o grid.png (or -o - for stdout), or --json\n"),
        (["sample", "-n", "65", "-o", "x.png"], 1, "error: 422 Invalid request: n must be between 1 and 64 (VAESERVE_MAX_SAMPLES), got 65\n"),
        (["decode", "-o", "x.png"], 2, "Error: give latents: a FILE (.npy or JSON), '-' for stdin, or -z values\n"),
        (["interpolate", str(digit_files[0]), "-o", "x.png"], 2, "Error: give 2, not 1: image files\n"),
        (["interpolate", str(digit_files[0]), "-z", "0,0,0,0", "-o", "x.png"], 2,
         "Error: give 2 image files or 2 -z latents\n"),
        (["traverse", "-z", "0,0,0,0", "-d", "9", "-o", "x.png"], 1,
         "error: 422 Invalid request: dimension must be between 0 and 3, got 9\n"),
        (["traverse", "-z", "0,0,0,0"], 2, "Error: give -o sweep.png (or -o - for stdout), or --json\n"),
    ]  # fmt: skip
    for args, code, message in cases:
        done = vaeserve(*args)
        assert (done.returncode, done.stderr.decode().splitlines()[-1] + "\n") == (code, message), args
        assert b"Traceback" not in done.stderr
    missing = vaeserve("encode", "no-such.png")
    assert missing.returncode == 2 and b"Path 'no-such.png' does not exist" in missing.stderr
    assert sorted(os.listdir(tmp_path)) == ["broken.png", "digits"]  # nothing written on failure


def test_a_bad_file_fails_alone_and_the_run_says_so_at_the_end(
    vaeserve, digit_files: list[Path], tmp_path: Path
) -> None:
    folder = digit_files[0].parent
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not an image")
    done = vaeserve("score", str(folder))
    assert done.returncode == 2  # some files failed: the others are still scored, then the run says which
    lines = done.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines[2:]] == [str(f) for f in digit_files]  # broken.png sorts first
    assert done.stderr.decode().splitlines() == [
        f"skipped {folder / 'notes.txt'}: not an image file name (.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)",
        f"error: {folder / 'broken.png'}: 400 Invalid image: not a decodable image",
        "1 of 5 files failed",
    ]
    answer = json.loads(vaeserve("encode", str(folder), "--json").stdout)
    assert answer["failed"] == [
        {"file": str(folder / "broken.png"), "error": "400 Invalid image: not a decodable image"}
    ]
    assert [res["file"] for res in answer["results"]] == [str(f) for f in digit_files]


def test_uploads_are_split_to_fit_the_servers_limits(repository: Path, digit_files: list[Path], tmp_path: Path) -> None:
    big = digit_files[0].parent / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(big)  # about 4 KB of incompressible pixels
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--default-model", "digits:1",
            "--log-level", "warning"]  # fmt: skip
    env = without_settings(VAESERVE_MAX_BODY_BYTES="2048", VAESERVE_MAX_IMAGES_PER_REQUEST="3")
    with serve(argv, env=env) as live:
        run_env = without_settings(VAESERVE_URL=live.url, PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, "-m", "client", "score", str(big.parent), "--json"], cwd=tmp_path,
                              env=run_env, capture_output=True, timeout=60)  # fmt: skip
        with VAEClient(live.url) as vae:
            alone = [vae.score(f).results[0].score for f in digit_files]
    assert done.returncode == 2
    answer = json.loads(done.stdout)
    assert [res["file"] for res in answer["results"]] == [str(f) for f in digit_files]
    assert [res["score"] for res in answer["results"]] == alone  # two requests (3 + 1 files), the same numbers
    size = big.stat().st_size
    assert answer["failed"] == [{"file": str(big), "error": f"{size} bytes is over the server's limit of 2048 bytes "
                                                            "per request (VAESERVE_MAX_BODY_BYTES)"}]  # fmt: skip


def test_health_waits_for_a_server_as_long_as_asked(vaeserve) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    done = vaeserve("health", "--wait", "1", url=url)
    assert time.monotonic() - started >= 1.0
    assert done.returncode == 1 and done.stderr.decode().startswith(f"error: cannot reach {url}: connection refused")
