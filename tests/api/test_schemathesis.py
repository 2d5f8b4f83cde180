"""Property-based requests over the whole OpenAPI document: no input may cause a server error,
and every response must match the documented schema and error model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from bankgrowth.api.app import create_app
from bankgrowth.config import Settings
from tests.api.conftest import PASSWORD, World, build_world


@pytest.fixture(scope="module")
def api_world(insight_bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = build_world(tmp_path_factory.mktemp("schemathesis"), insight_bank)
    yield w
    w.client.close()
    w.engine.dispose()


def _operations() -> list[str]:
    app = create_app(Settings(operational_url="sqlite://"))
    return [r.ok().label for r in schemathesis.openapi.from_asgi("/openapi.json", app).get_all_operations()]


def _admin_headers(w: World) -> dict[str, str]:
    """The HQ admin's session; fuzzed requests may end it (logout, password reset), so renew it."""
    if w.client.get("/api/v1/auth/me", headers=w.headers("hq_admin")).status_code != 200:
        for name in ("hq_admin",):
            r = w.client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            if r.status_code == 200:
                w.tokens[name] = r.json()["token"]
    return w.headers("hq_admin")


@pytest.mark.parametrize("label", _operations())
def test_no_server_errors_anywhere(api_world: World, label: str) -> None:
    # given: the operation, its request strategy, and credentials of both sides (HQ admin, HQ key)
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_world.client.app)
    [operation] = [r.ok() for r in schema.get_all_operations() if r.ok().label == label]

    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case) -> None:  # type: ignore[no-untyped-def]
        # when
        response = case.call(headers={**_admin_headers(api_world), "X-API-Key": api_world.keys["hq"]})
        # then
        assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["code"] and error["message"]["zh"] and error["message"]["en"]

    fuzz()
