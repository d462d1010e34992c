"""The web view's JSON API through Starlette's test client: every endpoint, errors, paging, filters."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("plotly")

from starlette.testclient import TestClient

from exptrack import ExperimentTracker
from exptrack.ui.selection import select
from exptrack.ui.server import create_app
from exptrack.ui.views import downsample

XSS = "<img src=x onerror=alert(1)>"


def make_store(tracker: ExperimentTracker, n: int = 30) -> list[str]:
    items = []
    for i in range(n):
        params: dict[str, object] = {"model": ["rf", "svm", XSS][i % 3], "lr": 0.001 * (i + 1)}
        if i % 5 == 0:
            params["depth"] = i  # present in some runs only
        items.append({"params": params, "metrics": {"accuracy": 0.5 + i / 100, "val_loss": 1.0 - i / 100},
                      "tags": ["</script><script>alert(2)</script>", f"i={i}"]})
    return [run.run_id for run in tracker.log_runs(items)]


@pytest.fixture
def client(tracker: ExperimentTracker) -> Iterator[TestClient]:
    with TestClient(create_app(tracker, allowed_hosts=("testserver",))) as test_client:
        yield test_client


def test_runs_page_is_newest_first_with_total(tracker: ExperimentTracker, client: TestClient) -> None:
    ids = make_store(tracker)
    body = client.get("/api/runs", params={"limit": 10}).json()
    assert body["total"] == 30
    assert [run["run_id"] for run in body["runs"]] == ids[::-1][:10]
    second = client.get("/api/runs", params={"limit": 10, "offset": 10}).json()
    assert [run["run_id"] for run in second["runs"]] == ids[::-1][10:20]
    last = client.get("/api/runs", params={"limit": 10, "offset": 25}).json()
    assert [run["run_id"] for run in last["runs"]] == ids[::-1][25:]
    assert client.get("/api/runs", params={"offset": 99}).json()["runs"] == []


def test_runs_are_as_stored_with_json_numbers(tracker: ExperimentTracker, client: TestClient) -> None:
    run = tracker.log_run(params={"model": XSS}, metrics={"accuracy": 0.75, "loss": float("nan")}, tags=["t"])
    got = client.get("/api/runs").json()["runs"][0]
    assert got["run_id"] == run.run_id
    assert got["metrics"] == {"accuracy": 0.75, "loss": "NaN"}  # as stored: NaN is the string "NaN"
    assert got["params"]["model"] == XSS
    assert got == client.get(f"/api/runs/{run.run_id}").json()


def test_filter_and_sort_use_the_where_language(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker)
    body = client.get("/api/runs", params={"where": "params.model = 'rf' and metrics.accuracy > 0.6",
                                           "sort": "metrics.accuracy desc", "limit": 100}).json()
    expected = sorted((r for r in tracker.runs(where="params.model = 'rf' and metrics.accuracy > 0.6")),
                      key=lambda r: -r.metrics["accuracy"])
    assert [r["run_id"] for r in body["runs"]] == [r.run_id for r in expected]
    assert body["total"] == len(expected) > 0
    ascending = client.get("/api/runs", params={"sort": "params.depth", "limit": 100}).json()["runs"]
    depths = [r["params"].get("depth") for r in ascending]
    assert depths[:6] == [0, 5, 10, 15, 20, 25]  # numbers first, ascending; runs without it last
    assert all(d is None for d in depths[6:])


def test_invalid_filter_is_a_400_with_the_position(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker, 3)
    response = client.get("/api/runs", params={"where": "metrics.accuracy >> 0.5"})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "FilterSyntaxError"
    assert body["position"] == 17
    assert body["expression"] == "metrics.accuracy >> 0.5"
    assert "^" in body["error"]
    for endpoint in ("/api/summary", "/api/points", "/api/columns"):
        assert client.get(endpoint, params={"where": "params.x = "}).status_code == 400
    bad_sort = client.get("/api/runs", params={"sort": "desc"})
    assert bad_sort.status_code == 400
    assert "sort" in bad_sort.json()["error"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [({"limit": "ten"}, "limit must be an integer"), ({"limit": 0}, "limit must be between"),
     ({"limit": 5000}, "limit must be between"), ({"offset": -1}, "offset must be")],
)
def test_bad_paging_is_a_400(tracker: ExperimentTracker, client: TestClient, params: dict[str, object],
                             fragment: str) -> None:
    make_store(tracker, 2)
    response = client.get("/api/runs", params=params)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_unknown_run_is_a_404(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker, 2)
    for path in ("/api/runs/nope", "/api/runs/nope/history", "/api/runs/nope/reproduce", "/api/runs/nope/artifacts",
                 "/api/runs/nope/artifacts/model.pkl"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "nope" in response.json()["error"]


def test_summary_matches_the_tracker(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker)
    assert client.get("/api/summary").json()["total_runs"] == 30
    filtered = client.get("/api/summary", params={"where": "params.model = 'svm'"}).json()
    assert filtered["total_runs"] == tracker.summary(where="params.model = 'svm'")["total_runs"] == 10
    assert filtered["metrics"]["accuracy"]["count"] == 10


def test_columns_list_every_param_and_metric(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker)
    body = client.get("/api/columns").json()
    assert body["columns"][:6] == ["run_id", "experiment", "name", "timestamp", "status", "tags"]
    assert {"metrics.accuracy", "metrics.val_loss", "params.model", "params.lr", "params.depth"} <= set(body["columns"])


def test_points_sample_evenly_and_best_so_far_uses_every_run(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker, 30)
    full = client.get("/api/points").json()
    assert not full["sampled"]
    assert len(full["rows"]) == 30
    assert full["modes"] == {"accuracy": "max", "val_loss": "min"}
    capped = client.get("/api/points", params={"max_points": 7}).json()
    assert capped["sampled"]
    assert len(capped["rows"]) <= 7
    positions = [row["n"] for row in capped["rows"]]
    assert positions == sorted(positions)
    # accuracy rises with every run: the best-so-far trace has a point per run, sample or not
    assert [point[0] for point in capped["best"]["accuracy"]["max"]] == list(range(30))
    assert [point[0] for point in capped["best"]["accuracy"]["min"]] == [0]
    assert client.get("/api/points", params={"max_points": 0}).status_code == 400


def test_select_sample_is_bounded_for_any_size() -> None:
    from exptrack import Run

    for n in (1, 9, 10, 11, 1000, 4097):
        runs = (Run(f"{i:032x}", "2025-01-01T00:00:00Z", {"x": i}, {"m": float(i)}) for i in range(n))
        sel = select(runs, 10)
        assert len(sel.sample) <= 10
        assert len(sel.ids) == n
        assert sel.sample[0]["n"] == 0


def test_history_is_downsampled_keeping_extremes(tracker: ExperimentTracker, client: TestClient) -> None:
    with tracker.start_run(params={"lr": 0.1}, capture=False) as run:
        for step in range(500):
            run.log_metric("loss", 1000.0 if step == 333 else 1.0 / (step + 1), step=step)
    body = client.get(f"/api/runs/{run.run_id}/history", params={"max_points": 50}).json()
    loss = body["metrics"]["loss"]
    assert loss["total"] == 500
    assert loss["sampled"]
    assert len(loss["values"]) <= 50
    assert 1000.0 in loss["values"]  # the spike survives downsampling
    assert loss["steps"] == sorted(loss["steps"])
    whole = client.get(f"/api/runs/{run.run_id}/history").json()["metrics"]["loss"]
    assert len(whole["values"]) == 500
    assert not whole["sampled"]
    assert client.get(f"/api/runs/{run.run_id}/history", params={"max_points": 1}).status_code == 400


def test_downsample_keeps_order_and_bounds() -> None:
    points = [{"step": i, "value": float((i * 37) % 101)} for i in range(1000)]
    kept = downsample(points, 100)
    assert len(kept) <= 100
    assert [p["step"] for p in kept] == sorted(p["step"] for p in kept)
    assert max(p["value"] for p in kept) == 100.0


def test_artifacts_download_verified(tracker: ExperimentTracker, client: TestClient, tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights" * 100)
    with tracker.start_run(params={"lr": 0.1}, capture=False) as run:
        run.log_artifact(model)
    listed = client.get(f"/api/runs/{run.run_id}/artifacts").json()
    assert listed["model.pkl"]["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()
    response = client.get(f"/api/runs/{run.run_id}/artifacts/model.pkl")
    assert response.status_code == 200
    assert response.content == b"weights" * 100
    assert response.headers["content-disposition"].startswith("attachment")
    assert client.get(f"/api/runs/{run.run_id}/artifacts/other.bin").status_code == 404
    blob = tracker.artifact_store.path_of(listed["model.pkl"]["sha256"])
    blob.chmod(0o644)
    blob.write_bytes(b"tampered")
    tampered = client.get(f"/api/runs/{run.run_id}/artifacts/model.pkl")
    assert tampered.status_code == 409  # the verified lookup refuses bytes that changed
    assert b"tampered" not in tampered.content


def test_etag_answers_304_until_a_run_is_appended(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker, 5)
    first = client.get("/api/runs")
    etag = first.headers["etag"]
    again = client.get("/api/runs", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    version = client.get("/api/version").json()
    assert version["runs"] == 5
    tracker.log_run(params={"model": "new"}, metrics={"accuracy": 0.99})
    changed = client.get("/api/runs", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["total"] == 6
    assert changed.json()["runs"][0]["params"] == {"model": "new"}
    assert client.get("/api/version").json()["version"] != version["version"]


def test_experiments_endpoint_is_404_until_the_tracker_has_them(tracker: ExperimentTracker,
                                                               client: TestClient) -> None:
    response = client.get("/api/experiments")
    if callable(getattr(tracker, "experiments", None)):
        assert response.status_code == 200
        assert "experiments" in response.json()
    else:
        assert response.status_code == 404


def test_reproduce_steps_quote_stored_values(tracker: ExperimentTracker, client: TestClient) -> None:
    run = tracker.log_run(params={"lr": 0.1}, metrics={"accuracy": 0.5},
                          extra={"code": {"commit": "abc; rm -rf /", "repo_root": "/tmp/x y"}})
    steps = client.get(f"/api/runs/{run.run_id}/reproduce").json()["steps"]
    assert f"reproduce {run.run_id}" in steps[0]
    assert "cd '/tmp/x y'" in steps
    assert "git checkout 'abc; rm -rf /'" in steps  # a stored value is never a bare shell word


def test_the_page_and_its_files_are_served_with_a_strict_policy(tracker: ExperimentTracker,
                                                                 client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    plotly = client.get("/vendor/plotly.min.js")
    assert plotly.status_code == 200
    assert len(plotly.content) > 1_000_000


def test_only_get_requests_and_local_host_names(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker, 2)
    assert client.post("/api/runs").status_code == 405
    assert client.delete(f"/api/runs/{tracker.best_run('accuracy').run_id}").status_code == 405
    rebinding = TestClient(create_app(tracker), base_url="http://evil.example")
    assert rebinding.get("/api/runs").status_code == 400  # a DNS-rebound name is refused


def test_the_server_never_writes_to_the_store(tracker: ExperimentTracker, client: TestClient, store: Path) -> None:
    make_store(tracker, 12)
    with tracker.start_run(params={"lr": 0.1}, capture=False) as run:
        run.log_metric("loss", 0.5, step=1)
        run.log_metric("loss", 0.4, step=2)
    tracker.refresh_index()

    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
                if p.is_file() and ".index" not in p.parts and p.name != "log.txt"}

    before = snapshot()
    run_id = run.run_id
    for path in ("/api/runs", "/api/summary", "/api/points", "/api/columns", "/api/version", f"/api/runs/{run_id}",
                 f"/api/runs/{run_id}/history", f"/api/runs/{run_id}/reproduce", f"/api/runs/{run_id}/artifacts"):
        assert client.get(path).status_code == 200, path
    client.get("/api/runs", params={"sort": "metrics.accuracy desc", "where": "params.model = 'rf'"})
    assert snapshot() == before


def test_pages_past_the_newest_runs_kept_in_memory_read_by_id(tracker: ExperimentTracker, client: TestClient,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exptrack.ui.selection.NEWEST", 4)
    ids = make_store(tracker, 23)
    pages = [client.get("/api/runs", params={"limit": 5, "offset": start}).json()["runs"] for start in range(0, 25, 5)]
    assert [run["run_id"] for page in pages for run in page] == ids[::-1]
    assert pages[4][-1]["params"] == dict(tracker.get_run(ids[0]).params)


def test_best_so_far_ranks_finished_runs_unless_asked(tracker: ExperimentTracker, client: TestClient) -> None:
    first = tracker.log_run(params={"x": 1}, metrics={"accuracy": 0.5})
    failed = tracker.log_run(params={"x": 2}, metrics={"accuracy": 0.9}, status="failed")
    last = tracker.log_run(params={"x": 3}, metrics={"accuracy": 0.7})
    finished = client.get("/api/points").json()
    assert [p[2] for p in finished["best"]["accuracy"]["max"]] == [first.run_id, last.run_id]  # as best_run ranks
    assert finished["ranked"] == ["finished"]
    assert len(finished["rows"]) == 3  # every run is drawn
    anything = client.get("/api/points", params={"status": "any"}).json()
    assert [p[2] for p in anything["best"]["accuracy"]["max"]] == [first.run_id, failed.run_id]
    assert anything["ranked"] == "any"
    assert client.get("/api/points", params={"status": "nope"}).status_code == 400
    assert client.get("/api/summary", params={"status": "any"}).json()["metrics"]["accuracy"]["count"] == 3
    assert client.get("/api/summary", params={"status": "bogus"}).status_code == 400


def test_partial_answers_are_not_tagged(tracker: ExperimentTracker, client: TestClient) -> None:
    make_store(tracker, 3)
    partial = client.get("/api/columns")
    assert partial.json()["partial"]
    assert "etag" not in partial.headers  # the page cannot keep it: it asks again
    client.get("/api/points")
    full = client.get("/api/columns")
    assert "partial" not in full.json()
    assert full.headers["etag"]
