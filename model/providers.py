"""ONNX Runtime execution providers: which of the asked-for ones this installation can run.

    VAESERVE_ORT_PROVIDERS='["CUDAExecutionProvider", "CPUExecutionProvider"]'   # needs onnxruntime-gpu

The `onnxruntime` wheel runs on the CPU only; `onnxruntime-gpu` (installed instead of it)
adds CUDAExecutionProvider (and TensorRT). A name ONNX Runtime does not know is refused at
start-up; a provider it knows but this installation lacks is skipped with a warning that
says what to install, and the graphs run on the next provider asked for, the CPU last.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import onnxruntime as ort

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
_INSTALL = {
    "CUDAExecutionProvider": "pip uninstall -y onnxruntime && pip install onnxruntime-gpu",
    "TensorrtExecutionProvider": "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (and TensorRT)",
}


def check_providers(requested: Sequence[str]) -> list[str]:
    """`requested` if every name is an ONNX Runtime execution provider, else ValueError naming the others."""
    known = ort.get_all_providers()
    unknown = [p for p in requested if p not in known]
    if unknown or not requested:
        raise ValueError(
            f"providers {unknown or list(requested)} are not available in any ONNX Runtime build "
            f"(available here: {ort.get_available_providers()})"
        )
    return list(requested)


def select_providers(requested: Sequence[str]) -> list[str]:
    """The providers to create sessions with: those asked for that this installation has, in
    their order, then the CPU. Each one skipped is logged as a warning with its fix."""
    available = ort.get_available_providers()
    chosen = [p for p in check_providers(requested) if p in available]
    for missing in (p for p in requested if p not in available):
        fix = _INSTALL.get(missing, "an onnxruntime build with it")
        log.warning("%s is not available in this onnxruntime %s (available: %s); falling back to %s. To use it: %s",
                    missing, ort.__version__, available, (chosen or [CPU])[0], fix)  # fmt: skip
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def check_session(session: ort.InferenceSession, path: str, providers: Sequence[str]) -> None:
    """Warn when ONNX Runtime did not start the first provider asked for (it falls back by
    itself, e.g. when the CUDA or cuDNN libraries it needs are missing)."""
    running = session.get_providers()
    if providers and providers[0] not in running:
        log.warning("%s runs on %s, not %s: ONNX Runtime could not start it (see its own log above)",
                    path, running, providers[0])  # fmt: skip
