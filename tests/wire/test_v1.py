"""The wire schemas: the names they share with model/ agree, and they import nothing of the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

from model import bundle
from model.latent_paths import PATH_METHODS
from model.scores import CALIBRATED_SCORES, SCORE_NAMES
from wire import v1

ROOT = Path(__file__).resolve().parents[2]


def test_every_score_of_the_table_is_a_field_and_the_calibrated_ones_can_decide() -> None:
    assert tuple(v1.ImageScores.model_fields) == SCORE_NAMES
    assert get_args(v1.ScoreName) == CALIBRATED_SCORES


def test_the_interpolation_methods_are_model_s() -> None:
    assert get_args(v1.PathMethod) == PATH_METHODS


def test_model_descriptions_carry_every_field_of_the_manifest_parts_they_show() -> None:
    assert set(v1.InputSpec.model_fields) == set(bundle.InputSpec.model_fields)
    assert set(v1.SplitMetrics.model_fields) == set(bundle.SplitMetrics.model_fields)
    for part in ("Quantization", "ParentRef", "QualityCheck"):
        assert set(getattr(v1, part).model_fields) == set(getattr(bundle, part).model_fields), part


def test_wire_imports_only_pydantic() -> None:
    code = "import json, sys, wire.v1; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"app", "model", "client", "training", "numpy", "fastapi", "onnxruntime", "torch"}


def test_the_limits_a_client_reads_are_settings() -> None:
    from app.settings import Settings

    # Every limit is the setting of its name; the one constant is the K a request without one gets.
    assert set(v1.Limits.model_fields) - {"default_importance_samples"} <= set(Settings.model_fields)
    assert "max_total_importance_samples" in v1.Limits.model_fields  # the N x K budget, for clients to split by
