"""Cross-cutting HTTP behaviour: the error shape, request ids, CORS, /health and /metrics."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api


async def test_unknown_route_is_404_in_the_error_shape(api: Api) -> None:
    resp = await api.get("/api/nothing-here")
    assert resp.status == 404
    assert resp.body["error"]["code"] == "not_found"
    assert "requestId" in resp.body["error"]


async def test_wrong_method_is_405(api: Api) -> None:
    resp = await api.call("PATCH", "/api/pods")
    assert resp.status == 405
    assert resp.body["error"]["code"] == "method_not_allowed"


async def test_request_id_is_echoed_or_made(api: Api) -> None:
    given = await api.get("/health", headers={"X-Request-Id": "trace-123"})
    assert given.headers["X-Request-Id"] == "trace-123"
    made = await api.get("/health", headers={"X-Request-Id": "bad id with spaces"})
    assert made.headers["X-Request-Id"] != "bad id with spaces"
    assert len(made.headers["X-Request-Id"]) == 32


async def test_cors_allows_configured_origins_only(api: Api) -> None:
    allowed = await api.call(
        "OPTIONS",
        "/api/auth/login",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    denied = await api.call(
        "OPTIONS",
        "/api/auth/login",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in denied.headers
    simple = await api.get("/health", headers={"Origin": "http://localhost:3000"})
    assert simple.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    other = await api.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_health_reports_each_dependency(api: Api) -> None:
    resp = await api.health()
    assert resp.status == 200
    services = resp.body["services"]
    assert resp.body["status"] == "healthy"
    assert services["database"]["status"] == "healthy"
    assert services["redis"] == {**services["redis"], "status": "in-process", "mode": "in-process"}
    assert services["storage"]["status"] == "healthy"
    assert services["ai"]["status"] == "not_configured"
    assert services["ai"]["required"] is False


async def test_health_with_redis(make_client: Any, redis_url: str) -> None:
    api = await make_client(redis_url=redis_url)
    resp = await api.health()
    assert resp.status == 200
    assert resp.body["services"]["redis"]["mode"] == "redis"


async def test_health_is_503_when_the_database_is_down(api: Api) -> None:
    from peerspark_rt.infra.pool import DB

    await api.app[DB].pool.close()
    assert (await api.get("/health")).body == {"status": "unhealthy"}
    resp = await api.health()
    assert resp.status == 503
    assert resp.body["status"] == "unhealthy"
    assert resp.body["services"]["database"]["status"] == "unhealthy"


async def test_metrics_count_requests_by_route(api: Api) -> None:
    await api.get("/api/pods")  # 401, still counted
    await api.get("/health")
    resp = await api.metrics()
    assert resp.status == 200
    text = resp.body.decode()
    assert 'peerspark_http_requests_total{method="GET",route="/api/pods",status="401"} 1.0' in text
    assert "peerspark_http_request_duration_seconds_bucket" in text
    assert "peerspark_ws_connections" in text
    assert 'peerspark_db_pool_connections{state="max"} 10.0' in text


async def test_oversized_json_body_is_413(api: Api) -> None:
    resp = await api.post(
        "/api/auth/login",
        data=b'{"email": "' + b"a" * (1024 * 1024 + 10) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert resp.body["error"]["code"] == "payload_too_large"


async def test_non_json_content_type_is_415(api: Api) -> None:
    resp = await api.post(
        "/api/auth/login",
        data=b"email=a",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 415
