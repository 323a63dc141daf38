"""Liveness and readiness, and settings from the environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.main import create_app
from app.settings import SHIPPED_REPOSITORY, Settings


def test_ready_only_after_the_models_are_loaded(repository: Path) -> None:
    app = create_app(Settings(model_repository=repository))
    before = TestClient(app)  # not entered: the lifespan has not run
    assert before.get("/healthz").json() == {"status": "ok"}
    r = before.get("/readyz")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert r.json()["detail"] == "models are still loading"
    assert before.get("/v1/models").status_code == 503
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ready", "models": ["digits:1", "digits:2", "other:1"]}


def test_settings_come_from_vaeserve_environment_variables(repository: Path, monkeypatch) -> None:
    monkeypatch.setenv("VAESERVE_MODEL_REPOSITORY", str(repository))
    monkeypatch.setenv("VAESERVE_DEFAULT_MODEL", "other")
    monkeypatch.setenv("VAESERVE_ORT_PROVIDERS", '["CPUExecutionProvider"]')
    monkeypatch.setenv("VAESERVE_MAX_SAMPLES", "3")
    settings = Settings()
    assert (settings.model_repository, settings.default_model, settings.max_samples) == (repository, "other", 3)
    with TestClient(create_app(settings)) as client:
        assert (
            client.get("/v1/samples?n=4").json()["detail"] == "n must be between 1 and 3 (VAESERVE_MAX_SAMPLES), got 4"
        )
        assert [m["default"] for m in client.get("/v1/models").json()["models"]] == [False, False, True]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VAESERVE_ORT_PROVIDERS": '["NoSuchExecutionProvider"]'},
            "providers ['NoSuchExecutionProvider'] are not available",
        ),
        ({"VAESERVE_PORT": "0"}, "port\n  Input should be greater than or equal to 1"),
        ({"VAESERVE_MAX_BODY_BYTES": "ten"}, "max_body_bytes\n  Input should be a valid integer"),
        ({"VAESERVE_NO_SUCH_SETTING": "1"}, None),  # unknown env vars are other programs' business
    ],
)
def test_bad_settings_are_refused_by_name(monkeypatch, env: dict[str, str], message: str | None) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if message is None:
        Settings()
        return
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings()


def test_the_default_repository_is_the_shipped_one() -> None:
    assert Settings().model_repository == SHIPPED_REPOSITORY
    assert SHIPPED_REPOSITORY.name == "zoo" and SHIPPED_REPOSITORY.parent.name == "model"


def test_unknown_default_model_stops_start_up(repository: Path) -> None:
    from model.errors import BundleError

    with (
        pytest.raises(BundleError, match="default model: no model named 'nope'"),
        TestClient(create_app(Settings(model_repository=repository, default_model="nope"))),
    ):
        pass


def test_two_bundles_claiming_one_name_and_version_stop_start_up(repository: Path, tmp_path: Path, caplog) -> None:
    import shutil

    from model.errors import BundleError

    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    shutil.copytree(repo / "digits" / "1", repo / "copy" / "1")  # its manifest still says digits:1
    with (
        pytest.raises(BundleError, match=r"digits:1 is already served from"),
        TestClient(create_app(Settings(model_repository=repo))),
    ):
        pass
    shutil.rmtree(repo / "digits" / "1")
    with (
        caplog.at_level("WARNING", logger="app.serving.registry"),
        TestClient(create_app(Settings(model_repository=repo))) as c,
    ):
        assert c.get("/readyz").json()["models"] == ["digits:1", "digits:2", "other:1"]
    assert f"{repo / 'copy' / '1'} is served as digits:1" in caplog.text


def test_the_docs_pages_need_no_internet(client: TestClient) -> None:
    """Swagger UI and ReDoc load their scripts from this server (fastapi-offline), never from a CDN."""
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', html)
        assert assets and all(a.startswith("/") for a in assets), (page, assets)
        for asset in assets:
            served = client.get(asset)
            assert served.status_code == 200 and len(served.content) > 1000, asset
    assert "cdn" not in client.get("/docs").text.lower()
