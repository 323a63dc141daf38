"""Image folders streamed from disk: bigger than memory, any size and colour, to a served bundle."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2 as httpx
import numpy as np
from PIL import Image, ImageDraw

from bench import harness
from bench.harness import PORT
from model.bundle import load_bundle
from tests.helpers import png_bytes

# A process that cannot hold the decoded dataset trains on it. RLIMIT_DATA caps what it may
# allocate (heap and private mappings) at HEADROOM over what its libraries already hold.
# A streamed run needs about 470 MiB of it for any number of images (1,000 or 3,500 images
# of this size: 467 and 497 MiB at the peak, mostly the allocator's retained heap); the
# dataset decodes to twice HEADROOM, and the child first shows that one such array is refused.
HEADROOM_MIB = 600
CAPPED_CHILD = textwrap.dedent("""
    import re, resource, sys
    import numpy as np
    import training.__main__ as cli
    import matplotlib.pyplot, onnxscript, sympy, torch._dynamo, torch.export  # imported on the way

    def data_bytes():
        return int(re.search(r"VmData:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

    headroom, shape, argv = int(sys.argv[1]) * 2**20, [int(v) for v in sys.argv[2].split(",")], sys.argv[3:]
    cap = data_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    try:
        np.ones(shape, np.float32)
        sys.exit("the decoded dataset fits under the cap: the test proves nothing")
    except MemoryError:
        print(f"refused: {np.prod(shape) * 4 / 2**20:.0f} MiB under a cap of {headroom / 2**20:.0f} MiB")
    sys.exit(cli.main(argv))
""")


def _colour_images(n: int, size: tuple[int, int], distinct: int = 64) -> list[bytes]:
    """n PNGs (cycling through `distinct` drawings) of coloured ellipses on a coloured ground."""
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(distinct):
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
        w, h = size
        x, y = rng.integers(0, w // 2), rng.integers(0, h // 2)
        ImageDraw.Draw(image).ellipse(
            (x, y, x + w // 2, y + h // 2), fill=tuple(int(v) for v in rng.integers(0, 256, 3))
        )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        pool.append(buffer.getvalue())
    return [pool[i % distinct] for i in range(n)]


def _write(folder: Path, images: list[bytes]) -> Path:
    folder.mkdir(parents=True)
    for i, data in enumerate(images):
        (folder / f"{i:05d}.png").write_bytes(data)
    return folder


def test_a_folder_larger_than_the_memory_cap_trains(tmp_path: Path) -> None:
    side, n = 128, 6400  # 3 x 128 x 128 float32 = 192 KiB per image: 1200 MiB decoded
    folder = _write(tmp_path / "images", _colour_images(n, (side, side)))
    out = tmp_path / "big" / "1"
    argv = ["--data", str(folder), "--epochs", "1", "--out", str(out), "--run-dir", str(tmp_path / "run"),
            "--arch", "mlp", "--latent-dim", "4", "--set", "model.hidden=[8]", "--set", "train.batch_size=16",
            "--set", "train.threads=1", "--set", "data.test_fraction=0.02", "--set", "data.calibration_fraction=0.02",
            "--set", "data.validation_fraction=0.02", "--set", "calibration.importance_samples=4",
            "--set", "calibration.test_importance_samples=4", "-q"]  # fmt: skip
    child = [sys.executable, "-c", CAPPED_CHILD, str(HEADROOM_MIB), f"{n},3,{side},{side}", *argv]
    done = subprocess.run(child, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"refused: 1200 MiB under a cap of {HEADROOM_MIB} MiB" in done.stdout
    manifest = load_bundle(out).manifest
    assert (manifest.input.channels, manifest.input.height, manifest.input.width) == (3, side, side)
    assert manifest.dataset.rows == n and manifest.dataset.fingerprint == "files"
    assert manifest.dataset.split.counts["train"] == n - 3 * 128


def test_a_64x64_rgb_folder_trains_to_a_served_bundle(tmp_path: Path) -> None:
    folder = _write(tmp_path / "shapes", _colour_images(120, (64, 64), distinct=120))
    repository = tmp_path / "models"
    from training.__main__ import main

    code = main(["--data", str(folder), "--epochs", "1", "--out", str(repository / "shapes" / "1"),
                 "--run-dir", str(tmp_path / "run"), "--latent-dim", "4", "--set", "model.hidden=[16]",
                 "--set", "train.batch_size=16", "--set", "train.threads=1",
                 "--set", 'train.augment=[{kind="flip"}, {kind="shift", pixels=2}, {kind="colour_jitter", brightness=0.1}]',
                 "--set", "data.test_fraction=0.2", "--set", "data.calibration_fraction=0.2",
                 "--set", "calibration.importance_samples=4", "--set", "calibration.test_importance_samples=4",
                 "-q"])  # fmt: skip
    assert code == 0
    manifest = load_bundle(repository / "shapes" / "1").manifest
    config = manifest.training.config
    assert (manifest.input.channels, manifest.input.height, manifest.input.width) == (3, 64, 64)  # from the folder
    assert config["model"]["channels"] == [32, 64, 128]  # three blocks: an 8x8 grid
    assert [a["kind"] for a in config["train"]["augment"]] == ["flip", "shift", "colour_jitter"]
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--log-level", "warning"]
    upload = png_bytes(np.full((80, 100, 3), 200, np.uint8))  # another size and aspect: resized as in training
    with harness.serve(argv) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        model = client.get("/v1/models/shapes").json()
        assert model["input"]["channels"] == 3 and model["input"]["width"] == 64
        encoded = client.post("/v1/encode", content=upload, headers={"Content-Type": "image/png"})
        assert encoded.status_code == 200 and len(encoded.json()["results"][0]["mean"]) == 4
        scored = client.post("/v1/score", content=upload, headers={"Content-Type": "image/png"})
        assert scored.status_code == 200, scored.text
        grid = client.get("/v1/samples?n=4&seed=1")
        with Image.open(io.BytesIO(grid.content)) as image:
            assert image.mode == "RGB"
    # Re-calibration rebuilds the split from the folder's "files" fingerprint, and refuses a changed folder.
    from training.calibrate import main as calibrate

    bundle = repository / "shapes" / "1"
    assert manifest.dataset.fingerprint == "files" and calibrate([str(bundle), "--fpr", "0.1", "-q"]) == 0
    (folder / "00000.png").write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    assert calibrate([str(bundle), "-q"]) == 2
