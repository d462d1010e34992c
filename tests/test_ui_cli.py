"""``exptrack ui`` and ``exptrack report`` on the command line: options, errors, the real script."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("plotly")

from click.testing import CliRunner
from ui_support import XSS_METRIC, XSS_NOTE, XSS_PARAM, XSS_RUN_ID, XSS_TAG, hostile_store, live_ui

from exptrack.cli import cli
from exptrack.ui.render import embed_json, inline_script


def test_both_commands_have_help() -> None:
    for command, words in (("ui", ["--host", "--port", "--no-browser", "127.0.0.1", "5177"]),
                           ("report", ["--output", "-o", "--where", "--experiment"])):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert all(word in result.output for word in words), result.output


def test_ui_defaults_to_loopback_and_warns_for_another_host(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile_store(store, 2)
    calls: list[dict[str, object]] = []
    monkeypatch.setattr("exptrack.ui.serve.serve", lambda tracker, **kw: calls.append(kw))
    result = CliRunner().invoke(cli, ["--store", str(store), "ui", "--no-browser"])
    assert result.exit_code == 0, result.output
    assert calls[-1] == {"host": "127.0.0.1", "port": 5177, "open_browser": False, "announce": calls[-1]["announce"]}
    assert "warning" not in result.output
    anywhere = "0.0.0.0"  # noqa: S104 - never bound: serve() is replaced above
    result = CliRunner().invoke(cli, ["--store", str(store), "ui", "--host", anywhere, "--port", "8080"])
    assert result.exit_code == 0, result.output
    assert calls[-1]["host"] == anywhere
    assert calls[-1]["open_browser"] is True
    assert "no authentication" in result.output


def test_ui_without_a_store_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "none"), "ui", "--no-browser"])
    assert result.exit_code == 1
    assert "no exptrack store" in result.output
    assert "Traceback" not in result.output


def test_report_embeds_the_data_inertly(store: Path, tmp_path: Path) -> None:
    tracker, ids = hostile_store(store)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["--store", str(store), "report", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert re.search(r"<script[^>]+src=", html) is None  # everything inline
    assert "<link" not in html.replace('<link rel="icon" href="data:,">', "")
    assert "connect-src 'none'" in html  # the file's own policy forbids requests
    for payload in (XSS_PARAM, XSS_TAG, XSS_METRIC, XSS_NOTE, XSS_RUN_ID):
        assert payload not in html  # only ever inside the escaped JSON
    data = re.search(r'<script type="application/json" id="exptrack-data">(.*?)</script>', html, re.S)
    assert data is not None
    embedded = json.loads(data[1])
    assert [run["run_id"] for run in embedded["runs"]] == ids
    assert embedded["runs"][0]["tags"][0] == XSS_TAG
    assert embedded["runs"][0]["note_text"] == XSS_NOTE
    best = tracker.best_run("accuracy").run_id
    assert embedded["runs"][embedded["orders"]["metrics.accuracy desc"][0]]["run_id"] == best


def test_report_where_filters_and_bad_filters_exit_1(store: Path, tmp_path: Path) -> None:
    hostile_store(store)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["--store", str(store), "report", "-o", str(out), "-w", "params.model = 'rf'"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    assert "14 of 14 runs" in result.output
    bad = CliRunner().invoke(cli, ["--store", str(store), "report", "-o", str(out), "--where", "params.model =="])
    assert bad.exit_code == 1
    assert "^" in bad.output
    assert "Traceback" not in bad.output
    assert CliRunner().invoke(cli, ["--store", str(store), "report"]).exit_code == 2  # -o is required


def test_report_experiment_option(store: Path, tmp_path: Path) -> None:
    tracker, _ = hostile_store(store, 3)
    result = CliRunner().invoke(cli, ["--store", str(store), "report", "-o", str(tmp_path / "e.html"),
                                      "--experiment", "wine"])
    if callable(getattr(tracker, "experiments", None)):
        assert result.exit_code in (0, 1), result.output
    else:
        assert result.exit_code == 1
        assert "--where" in result.output


def test_embedded_json_cannot_close_its_script() -> None:
    value = {"a": "</script><!-- x \u2028 \u2029 & </SCRIPT>", "b": ["<", ">"]}
    text = embed_json(value)
    assert "</" not in text
    assert "<!--" not in text
    assert "\u2028" not in text
    assert "\u2029" not in text
    assert json.loads(text) == value
    assert "</script" not in inline_script("var s = '</script>'; var t = '<!--';").lower()


def test_installed_script_serves_the_api(store: Path) -> None:
    _, ids = hostile_store(store, 5)
    with live_ui(store) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/runs?limit=2", timeout=30) as response:  # noqa: S310 - loopback
            body = json.loads(response.read())
        assert body["total"] == len(ids)
        assert [run["run_id"] for run in body["runs"]] == ids[::-1][:2]


def test_report_keeps_the_newest_runs_and_says_so(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exptrack.ui.render.MAX_REPORT_RUNS", 5)
    _, ids = hostile_store(store, 12)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["--store", str(store), "report", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"5 of {len(ids)} runs" in result.output
    data = re.search(r'<script type="application/json" id="exptrack-data">(.*?)</script>', out.read_text(), re.S)
    assert data is not None
    embedded = json.loads(data[1])
    assert [run["run_id"] for run in embedded["runs"]] == ids[-5:]
    assert embedded["truncated"]
    assert embedded["total"] == len(ids)
    assert embedded["points"]["sampled"]
