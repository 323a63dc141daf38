"""The v2 endpoints by the Open Inference Protocol's own OpenAPI file (tests/app/api/oip/, its
README says where it is from): every answer validated against the spec's schemas, and
schemathesis fuzzing a live server from the spec, with no 5xx and no schema violation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx2 as httpx
import jsonschema
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.app.test_server import serve

SPEC = yaml.safe_load((Path(__file__).parent / "oip" / "open_inference_rest.yaml").read_text())
MODELS = ["digits-encoder", "digits-decoder", "digits-scorer"]
EXAMPLES_PER_OPERATION = 40


def conforms(body: Any, schema: str) -> None:
    """`body` is valid against the spec's components/schemas/<schema>, its $refs resolved in the spec."""
    jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]})


def test_every_v2_answer_conforms_to_the_specs_schemas(repository: Path, digit_arrays) -> None:
    image = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": digit_arrays[0].ravel().tolist()}
    with serve(repository) as url, httpx.Client(base_url=url, timeout=30) as c:
        for path in ("/v2", "/v2/"):  # the spec's path is "/v2/": answered, not redirected
            r = c.get(path)
            assert r.status_code == 200
            conforms(r.json(), "metadata_server_response")
        # The protocol's text: {"live": true}, {"ready": true}, {"name": ..., "ready": true}.
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        for model in MODELS:
            for version in ("", "/versions/1"):
                assert c.get(f"/v2/models/{model}{version}/ready").json() == {"name": model, "ready": True}
                metadata = c.get(f"/v2/models/{model}{version}").json()
                conforms(metadata, "metadata_model_response")
                assert metadata["platform"] == "onnxruntime_onnx"
        for request in ({"inputs": [image]}, {"id": "42", "inputs": [image], "outputs": [{"name": "mse"}]}):
            r = c.post("/v2/models/digits-scorer/infer", json=request)
            conforms(r.json(), "inference_response")
            assert r.json()["id"] == request.get("id", r.headers["x-request-id"])  # always an id
        r = c.post("/v2/models/digits-scorer/infer", json={"inputs": [{**image, "data": [2.0] * 784}]})
        assert r.status_code == 400
        conforms(r.json(), "inference_error_response")
        # Triton's reserved parameters are ignored, whatever their values.
        triton = {"headers": {"x-a": "b"}, "triton_enable_empty_final_response": True, "priority": 1, "timeout": 9}
        r = c.post("/v2/models/digits-encoder/infer", json={"inputs": [image], "parameters": triton})
        assert r.status_code == 200, r.text
        conforms(r.json(), "inference_response")


def _live_spec() -> dict[str, Any]:
    """The spec with its path templates as OpenAPI reads them (`${MODEL_NAME}` has a literal `$`)
    and the model names and versions of the test repository, so requests reach the models."""
    spec = copy.deepcopy(SPEC)
    spec["paths"] = {path.replace("${", "{"): item for path, item in spec["paths"].items()}
    for item in spec["paths"].values():
        for parameter in item.get("parameters", []):
            parameter["schema"] = {
                "type": "string",
                "enum": MODELS if parameter["name"] == "MODEL_NAME" else ["1", "2"],
            }
    return spec


CHECKS = [checks.not_a_server_error, checks.response_schema_conformance, checks.content_type_conformance]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_schemathesis_from_the_protocols_spec_finds_no_5xx_and_no_schema_violation(repository: Path) -> None:
    schema = schemathesis.openapi.from_dict(_live_spec())
    tested = []
    with serve(repository) as url:
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
            def conforms_to_spec(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=url, checks=CHECKS)

            conforms_to_spec()
            tested.append(operation.label)
    assert len(tested) == 6  # every operation of the spec
