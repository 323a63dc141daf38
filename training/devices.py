"""Where training runs: `--device auto|cpu|cuda|cuda:N|mps`, and mixed precision on CUDA.

`auto` picks CUDA when torch sees a GPU, else the CPU. Under torchrun, `cuda` means
`cuda:LOCAL_RANK`: one GPU per process. `train.precision = "bf16"` (CUDA or CPU) or
`"fp16"` (CUDA) runs the forward pass under `torch.autocast` (fp16 with a gradient
scaler); weights, optimiser state, the loss and the exported ONNX graphs stay float32.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(ValueError):
    """A device or precision this machine cannot give."""


def resolve_device(name: str, local_rank: int = 0, local_processes: int = 1) -> torch.device:
    """The torch device for `name` (see the module docstring); DeviceError if it is not here."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(f"--device {name}: torch sees no CUDA device here (torch {torch.__version__}, {build})")
        if ":" in name and local_processes > 1:
            raise DeviceError(f"--device {name} under torchrun would put every process on one GPU: use --device cuda")
        index = int(name.partition(":")[2] or local_rank)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device cuda:{index}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        # cuBLAS needs this to be deterministic (torch.use_deterministic_algorithms); before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return torch.device("cuda", index)
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: the Metal (MPS) backend is not available here")
    return torch.device(name)


def check_precision(device: torch.device, precision: str) -> None:
    """bf16 autocast runs on CUDA and on the CPU; fp16 (with its gradient scaler) only on CUDA."""
    if (precision == "fp16" and device.type != "cuda") or (precision == "bf16" and device.type not in ("cuda", "cpu")):
        raise DeviceError(f"train.precision={precision} needs a CUDA device; on {device.type} use fp32")


def autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The forward pass's mixed-precision context: nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_deterministic(device: torch.device) -> None:
    """Deterministic kernels: strict on the CPU; on CUDA, warn where torch has none."""
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")


def describe(device: torch.device) -> str:
    """The device in words, for the log and the manifest, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
