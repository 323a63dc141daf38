"""Property-based tests of the live OpenAPI schema with schemathesis: no 5xx, and every
response conforms to the schema (status codes, content types, bodies).

Hypothesis drives each operation's strategy directly (schemathesis's pytest plugin fails under
pytest 9), with a bounded number of examples per operation.
"""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.app.test_server import serve

EXAMPLES_PER_OPERATION = 40
# What the issue asks: no 5xx, and responses that conform. Not "positive data acceptance":
# the schema cannot say that a binary body must be a decodable image, so random bytes
# that it allows are rightly refused with 400.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def test_every_operation_of_the_live_schema_conforms(repository: Path) -> None:
    with serve(repository) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        tested = []
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
            def conforms(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=CHECKS)

            conforms()
            tested.append(operation.label)
    assert sorted(tested) == sorted([  # every route of the API was exercised
        "GET /healthz", "GET /metrics", "GET /readyz", "GET /v1/limits", "GET /v1/models", "GET /v1/models/{name}",
        "GET /v1/samples", "GET /v1/models/{name}/monitoring",
        "POST /v1/admin/reload", "POST /v1/decode", "POST /v1/encode", "POST /v1/reconstruct", "POST /v1/score",
        "POST /v1/interpolate", "POST /v1/traverse",
        "GET /v2", "GET /v2/health/live", "GET /v2/health/ready",
        *(f"{method} /v2/models/{{model_name}}{version}{suffix}" for version in ("", "/versions/{model_version}")
          for method, suffix in (("GET", ""), ("GET", "/config"), ("POST", "/infer"), ("GET", "/ready"))),
    ])  # fmt: skip
