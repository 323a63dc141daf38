"""GET /playground: the page's static files, from the package, with a strict CSP; off with VAESERVE_PLAYGROUND.

What the page does is tested in a real browser (tests/app/playground/); that the installed package
ships the files, by the torch-free install in tests/app/test_server.py.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.api.playground import STATIC
from app.main import create_app
from app.settings import Settings
from tests.app.api.test_v1 import assert_problem


def test_the_page_and_its_files_are_served_with_a_content_security_policy(client: TestClient) -> None:
    page = client.get("/playground", follow_redirects=False)
    assert page.status_code == 307 and page.headers["location"].endswith("/playground/")
    index = client.get("/playground/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    csp = index.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "img-src 'self' data: blob:" in csp
    for name, kind in [("playground.js", "javascript"), ("api.js", "javascript"), ("playground.css", "text/css")]:
        r = client.get(f"/playground/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"], name
        assert r.content == (STATIC / name).read_bytes()
    assert_problem(client.get("/playground/nothing.js"), 404, "Not found", "Not Found")


def test_the_page_needs_no_key_but_the_api_does(repository: Path) -> None:
    key = "playground-key-0123456789"
    with TestClient(create_app(Settings(model_repository=repository, api_keys=[key]))) as keyed:
        assert keyed.get("/playground/").status_code == 200
        assert keyed.get("/v1/models").status_code == 401


def test_the_playground_setting_turns_it_off(repository: Path, monkeypatch) -> None:
    monkeypatch.setenv("VAESERVE_PLAYGROUND", "false")
    with TestClient(create_app(Settings(model_repository=repository))) as off:
        assert_problem(off.get("/playground/"), 404, "Not found", "Not Found")
        assert_problem(off.get("/playground"), 404, "Not found", "Not Found")
        assert off.get("/v1/models").status_code == 200
