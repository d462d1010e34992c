"""Web view response times: every endpoint of a live ``exptrack ui`` at 100k and 1M runs.

A baseline, not a gate.  For each history size the script generates a realistic store
(``scripts/generate_history.py``, plus one run with a 200-step history), starts the real server
(``exptrack ui --port 0 --no-browser``: uvicorn in its own process) and times HTTP requests from
this process:

* first answers: ``/api/runs`` right after the server starts (the newest runs, read backwards from
  the end of the log), then ``/api/points`` (it waits for the one full read of the store);
* warm: each endpoint again (median of ``--reps``), and the same request revalidated with its
  ETag (``304``, what the polling page costs when nothing changed);
* +1000: 1,000 runs appended (``log_runs``) before every rep, then the page's requests in the
  order the page makes them (the first pays the rescan, the others reuse it);
* first paint in headless Chromium (when selenium and chromium are installed): the table's rows,
  then the optimization history chart, on a warm server.

Next to them, in the same run: the raw limit (reading the log's bytes) and the query layer's own
scan (``tracker.runs()`` in this process), which bounds the first answer and every rescan.  Every
answer is checked against the tracker before the table is printed (pages, sort order, totals).

    python benchmarks/ui_server.py                      # 100k and 1M runs, ~15 min on 2 cores
    python benchmarks/ui_server.py --quick              # 2,000 runs, seconds
    python benchmarks/ui_server.py --sizes 100000 --workdir /var/tmp/ui --no-browser
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import ROOT, environment_line, print_table, summarize

sys.path.insert(0, str(ROOT / "scripts"))

from generate_history import generate, log_items

from exptrack import ExperimentTracker
from exptrack.query.sort import parse_sort, sort_records

WHERE = "params.model = 'xgb' and params.lr < 0.01"
SORT = "metrics.accuracy desc"
HANG_GUARD = 1800.0  # seconds for one request: only stops a hung server


def get(url: str, etag: str | None = None) -> tuple[int, dict[str, Any] | None, str | None, float]:
    request = urllib.request.Request(url, headers={"If-None-Match": etag} if etag else {})  # noqa: S310 - loopback
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:  # noqa: S310 - loopback
            body = response.read()
            status, tag = response.status, response.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        if exc.code != 304:
            raise
        return 304, None, etag, time.perf_counter() - start
    elapsed = time.perf_counter() - start
    return status, json.loads(body), tag, elapsed


@contextmanager
def server(store: Path) -> Iterator[tuple[str, int, float, float]]:
    """A live ``exptrack ui``; yields (base URL, pid, seconds from its start to the first /api/runs
    answer, and to the first /api/points answer, which needs the whole store read)."""
    start = time.perf_counter()
    with subprocess.Popen(
        [sys.executable, "-m", "exptrack", "--store", str(store), "ui", "--port", "0", "--no-browser"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            match = re.search(r"(http://\S+/)", line)
            if not match:
                raise RuntimeError(f"exptrack ui did not start: {line}{process.stderr.read()}")
            url = match[1]
            get(url + "api/runs")
            runs = time.perf_counter() - start
            get(url + "api/points")
            yield url, process.pid, runs, time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(timeout=60)


def peak_rss_of(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def prepare(workdir: Path, n: int) -> Path:
    """A store of ``n`` generated runs plus one with a step history, fresh for this run."""
    store = workdir / f"ui-{n}"
    marker = store / "bench-size.json"
    if marker.exists() and json.loads(marker.read_text())["runs"] == n:
        size = json.loads(marker.read_text())["bytes"]
        with open(store / "runs.jsonl", "r+b") as handle:  # drop the runs earlier +1000 reps appended
            handle.truncate(size)
        shutil.rmtree(store / ".index", ignore_errors=True)
        return store
    shutil.rmtree(store, ignore_errors=True)
    generate(store, n)
    tracker = ExperimentTracker(store, durable=False)
    with tracker.start_run(params={"model": "mlp", "lr": 0.01}, capture=False) as run:
        for step in range(200):
            run.log_metric("val_loss", 1.0 / (step + 1), step=step)
        run.log_metric("accuracy", 0.9)
    tracker.close()
    marker.write_text(json.dumps({"runs": n, "bytes": (store / "runs.jsonl").stat().st_size}))
    return store


def endpoints(base: str, history_run: str) -> dict[str, str]:
    q = urllib.parse.quote
    return {
        "/api/version": base + "api/version",
        "/api/runs (newest 50)": base + "api/runs?limit=50",
        "/api/runs page 100 (offset 4950)": base + "api/runs?limit=50&offset=4950",
        "/api/runs sorted": base + f"api/runs?limit=50&sort={q(SORT)}",
        "/api/runs filtered": base + f"api/runs?limit=50&where={q(WHERE)}",
        "/api/columns": base + "api/columns",
        "/api/points (2,000 drawn)": base + "api/points",
        "/api/summary": base + "api/summary",
        "/api/runs/{run}": base + f"api/runs/{history_run}",
        "/api/runs/{run}/history": base + f"api/runs/{history_run}/history",
    }


def check_answers(base: str, tracker: ExperimentTracker) -> None:
    """The API's answers equal the tracker's: newest page, sorted page, filtered total, summary."""
    runs = list(tracker.runs())
    newest = [r["run_id"] for r in get(base + "api/runs?limit=50")[1]["runs"]]  # type: ignore[index]
    assert newest == [r.run_id for r in runs[::-1][:50]], "newest page differs"
    ordered = sort_records(runs, parse_sort(SORT))
    page = get(base + f"api/runs?limit=50&sort={urllib.parse.quote(SORT)}")[1]
    assert page is not None
    assert [r["run_id"] for r in page["runs"]] == [r.run_id for r in ordered[:50]], "sorted page differs"
    filtered = get(base + f"api/runs?limit=1&where={urllib.parse.quote(WHERE)}")[1]
    assert filtered is not None
    assert filtered["total"] == sum(1 for _ in tracker.runs(where=WHERE)), "filtered total differs"
    summary = get(base + "api/summary")[1]
    assert summary is not None
    assert summary["total_runs"] == len(runs), "summary differs"
    points = get(base + "api/points")[1]
    assert points is not None
    assert points["total"] == len(runs)
    assert len(points["rows"]) <= 2000


def browser_paint(base: str, reps: int) -> dict[str, list[float]] | None:
    """Seconds from navigation to the table's rows, and to the history chart, in headless Chromium."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        return None
    if not (chromium and driver_path):
        return None
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tempfile.mkdtemp(prefix='ui-bench-chromium-')}"):
        options.add_argument(flag)
    options.binary_location = chromium
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    found = "return document.querySelectorAll(arguments[0]).length"
    times: dict[str, list[float]] = {"first paint: table rows": [], "first paint: history chart": []}
    try:
        for _ in range(reps):
            for label, hash_, selector in (("first paint: table rows", "#runs", "#runs-table tbody tr"),
                                           ("first paint: history chart", "#history", "#history-chart .js-line")):
                driver.get("about:blank")
                start = time.perf_counter()
                driver.get(base + hash_)
                while not driver.execute_script(found, selector):
                    if time.perf_counter() - start > HANG_GUARD:
                        raise RuntimeError(f"{selector} never appeared")
                    time.sleep(0.005)
                times[label].append(time.perf_counter() - start)
    finally:
        driver.quit()
    return times


def measure(store: Path, reps: int, use_browser: bool) -> tuple[dict[str, list[float]], dict[str, float]]:
    results: dict[str, list[float]] = {}
    facts: dict[str, float] = {}
    tracker = ExperimentTracker(store, durable=False)
    start = time.perf_counter()
    data = (store / "runs.jsonl").read_bytes()
    results["raw limit: read the log's bytes"] = [time.perf_counter() - start]
    del data
    tracker.refresh_index()
    scans = []
    for _ in range(min(reps, 3)):
        start = time.perf_counter()
        count = sum(1 for _ in tracker.runs())
        scans.append(time.perf_counter() - start)
    results["query layer: tracker.runs() scan"] = scans
    history_run = tracker.best_run("accuracy", where="params.model = 'mlp'").run_id
    facts["runs"] = count
    with server(store) as (base, pid, first, charts):
        results["first /api/runs after start"] = [first]
        results["first /api/points after start (the scan)"] = [charts]
        check_answers(base, tracker)
        for label, url in endpoints(base, history_run).items():
            results[f"warm {label}"] = [get(url)[3] for _ in range(reps)]
        _, _, tag, _ = get(base + "api/runs?limit=50")
        results["warm /api/runs revalidated (304)"] = [get(base + "api/runs?limit=50", tag)[3] for _ in range(reps)]
        appended: dict[str, list[float]] = {}
        first_item = count
        for _ in range(reps):
            tracker.log_runs(log_items(first_item, 1000))
            first_item += 1000
            for label, url in endpoints(base, history_run).items():
                if label in ("/api/runs sorted", "/api/runs filtered", "/api/runs page 100 (offset 4950)"):
                    continue  # the page asks these only when the user sorts, filters or pages
                appended.setdefault(f"+1000 {label}", []).append(get(url)[3])
        results.update(appended)
        if use_browser:
            painted = browser_paint(base, reps)
            if painted:
                results.update(painted)
        facts["server peak RSS MiB"] = peak_rss_of(pid)
    tracker.close()
    return results, facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="2,000 runs, 5 reps: keeps the script working")
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated run counts")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="keep generated stores here (reused by later runs)")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless Chromium first-paint rows")
    args = parser.parse_args()
    sizes = [2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ui-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(environment_line(workdir))
    print(f"filter: {WHERE!r}; sort: {SORT!r}; times in ms, median [min-max] of {args.reps} reps "
          "(first answer and raw read: one each)")
    table: dict[str, dict[int, str]] = {}
    notes = []
    try:
        for n in sizes:
            store = prepare(workdir, n)
            results, facts = measure(store, args.reps, not args.no_browser and not args.quick)
            for label, values in results.items():
                med, lo, hi = summarize([v * 1000 for v in values])
                cell = f"{med:,.1f} [{lo:,.1f}-{hi:,.1f}]" if len(values) > 1 else f"{med:,.1f}"
                table.setdefault(label, {})[n] = cell
            notes.append(f"{n:,} runs (+1 with history): server peak RSS {facts['server peak RSS MiB']:,.0f} MiB")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    headers = ["ms", *(f"{n:,} runs" for n in sizes)]
    print_table(headers, [[label, *(cells.get(n, "-") for n in sizes)] for label, cells in table.items()])
    for note in notes:
        print(note)
    print("answers agree: yes (pages, sort order, filtered total, summary, points checked against the tracker)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
