"""Readiness follows the engine: 503 while loading (or failed), 200 once warm."""

from tests.api.fakes import FakeEngine


def test_ready_after_start(client):
    assert client.get("/health/live").status_code == 200
    r = client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model": "fake-vl"}


def test_not_ready_engine_refuses_inference_with_503(make_client):
    client = make_client(FakeEngine(ready=False))
    r = client.get("/health/ready")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503
    assert "loading" in r.json()["error"]["message"]
    assert client.get("/health/live").status_code == 200


def test_failed_load_is_reported_by_both_probes(make_client):
    class Broken(FakeEngine):
        async def start(self):
            raise RuntimeError("config.json in /secret/path/model is broken")

    client = make_client(Broken())
    for path in ("/health/ready", "/health/live"):
        r = client.get(path)
        assert r.status_code == 503
        assert r.json()["status"] == "failed"
        assert "/secret" not in r.json()["error"]
