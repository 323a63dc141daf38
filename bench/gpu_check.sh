#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: train on CUDA, check the graphs against the CPU, serve on CUDA.
#
#   make dev && bash bench/gpu_check.sh      # ~5 minutes; prints a summary, writes $WORK/gpu_check.json
#
# 1. Trains the default config (`python -m training --data mnist`) for EPOCHS epochs with
#    --device cuda in float32, and again with bf16 autocast; each export passes the usual
#    parity gate (ONNX Runtime on the CPU against torch on the CPU, 1e-4).
# 2. Runs both bundles' graphs under ONNX Runtime's CUDA provider and its CPU provider on
#    the test split and compares them (max abs diff <= 1e-3: cuDNN's convolutions sum in
#    another order).
# 3. With more than one GPU, trains the same config with torchrun, one process per GPU (NCCL).
# 4. Serves the float32 bundle with VAESERVE_ORT_PROVIDERS=["CUDAExecutionProvider", ...] from
#    a virtual environment where onnxruntime-gpu replaces onnxruntime, and scores an image.
#
# Needs: a CUDA build of torch in $PY's environment (the CPU build on this project's disk
# will not do: `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126`),
# and onnxruntime-gpu from PyPI or ORT_GPU_WHEEL (a wheel file) for step 4.
set -euo pipefail

PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-3}
WORK=${WORK:-$(mktemp -d -t vaeserve-gpu-XXXXXX)}
ORT_GPU=${ORT_GPU_WHEEL:-onnxruntime-gpu}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none): nothing measured" >&2
    exit 1
fi
GPUS=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} sees no CUDA device: install a CUDA build of torch")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF

train() {  # name, extra args...
    local name=$1; shift
    local started=$SECONDS
    "$PY" -m training --data mnist --epochs "$EPOCHS" --device cuda --out "$WORK/models/$name/1" \
        --run-dir "$WORK/runs/$name" --set calibration.test_importance_samples=100 -q "$@"
    echo "trained $name in $((SECONDS - started)) s"
}
train gpu-fp32
train gpu-bf16 --set 'train.precision="bf16"'
if [ "$GPUS" -gt 1 ]; then
    started=$SECONDS
    "$PY" -m torch.distributed.run --nproc-per-node "$GPUS" -m training --data mnist --epochs "$EPOCHS" \
        --device cuda --out "$WORK/models/gpu-ddp/1" --run-dir "$WORK/runs/gpu-ddp" \
        --set calibration.test_importance_samples=100 -q
    echo "trained gpu-ddp on $GPUS GPUs in $((SECONDS - started)) s"
fi

# The serving side: a virtual environment with onnxruntime-gpu instead of onnxruntime.
SERVE="$WORK/serve-venv"
python3 -m venv "$SERVE"
"$SERVE/bin/pip" install -q -e .
"$SERVE/bin/pip" uninstall -q -y onnxruntime
"$SERVE/bin/pip" install -q "$ORT_GPU"

WORK="$WORK" EPOCHS="$EPOCHS" GPUS="$GPUS" "$SERVE/bin/python" - <<'EOF'
import json, os, platform, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.bundle import load_bundle
from model.preprocess import encode_png
from model.runtime import RuntimeOptions, VAERuntime

work = Path(os.environ["WORK"])
cuda = ("CUDAExecutionProvider", "CPUExecutionProvider")
assert "CUDAExecutionProvider" in ort.get_available_providers(), ort.get_available_providers()
report = {"machine": platform.platform(), "onnxruntime": ort.__version__, "epochs": int(os.environ["EPOCHS"]),
          "gpus": int(os.environ["GPUS"]), "bundles": {}}
rng = np.random.default_rng(0)
for bundle_dir in sorted((work / "models").glob("*/1")):
    bundle = load_bundle(bundle_dir)
    on_cpu, on_gpu = VAERuntime(bundle), VAERuntime(bundle, RuntimeOptions(providers=cuda))
    assert on_gpu._encoder.get_providers()[0] == "CUDAExecutionProvider", on_gpu._encoder.get_providers()
    spec = bundle.manifest.input
    images = rng.random((64, spec.channels, spec.height, spec.width), dtype=np.float32)
    diffs = {"mean": float(np.abs(on_gpu.encode(images)[0] - on_cpu.encode(images)[0]).max())}
    z = on_cpu.sample_latents(64, seed=0)
    diffs["decoder"] = float(np.abs(on_gpu.decode_params(z) - on_cpu.decode_params(z)).max())
    test = next(m for m in bundle.manifest.metrics if m.split == "test")
    report["bundles"][bundle_dir.parent.name] = {
        "max_abs_diff_cuda_vs_cpu": diffs, "test_neg_elbo": test.neg_elbo, "test_iwae_nll": test.iwae_nll,
        "wall_seconds": bundle.manifest.training.wall_seconds, "device": bundle.manifest.training.device,
        "world_size": bundle.manifest.training.world_size,
    }
    assert max(diffs.values()) <= 1e-3, (bundle_dir, diffs)
    print(f"{bundle_dir.parent.name}: CUDA vs CPU provider max abs diff {diffs}")

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = {**os.environ, "VAESERVE_ORT_PROVIDERS": json.dumps(list(cuda))}
log = (work / "serve.log").open("w")
server = subprocess.Popen([sys.executable, "-m", "app", "--repository", str(work / "models"), "--port", str(port),
                           "--default-model", "gpu-fp32"], env=env, stdout=log, stderr=subprocess.STDOUT)
try:
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("gpu_check: the server did not become ready: " + (work / "serve.log").read_text()[-2000:])
    image = encode_png(rng.random((1, 28, 28), dtype=np.float32))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/score", data=image,
                                     headers={"Content-Type": "image/png"})
    scored = json.loads(urllib.request.urlopen(request, timeout=30).read())
    report["served"] = {"providers": list(cuda), "score": scored["results"][0]}
finally:
    server.terminate()
    server.wait(timeout=30)
text = (work / "serve.log").read_text()
assert "falling back" not in text and "runs on" not in text, text[-2000:]  # model/providers.py's warnings
(work / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
print(f"served on CUDA; report in {work / 'gpu_check.json'}")
EOF
