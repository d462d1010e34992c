"""Stored values are data, never paths or commands (issue 9, items 4-8).

A store may come from someone else: every test here writes a crafted line with a *valid*
checksum (``codec.encode`` of a record built by hand) and shows that exptrack neither uses its
values as paths, nor runs them, nor prints them raw to the terminal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import git, isolate_git

from exptrack import ExperimentTracker
from exptrack.capture import capture_code
from exptrack.cli import cli
from exptrack.errors import InvalidRecordError, RunNotFoundError
from exptrack.store import codec
from exptrack.store.record import Run, build_run, is_safe_run_id, new_run_id

HOSTILE_ID = "x/../../../outside/victim"


def forge(store: Path, run: Run) -> None:
    """Append a hand-built record with a valid checksum, as another tool (or an attacker) could."""
    store.mkdir(parents=True, exist_ok=True)
    with open(store / "runs.jsonl", "ab") as handle:
        handle.write(codec.encode(run))


def crafted(run_id: str, **extra: object) -> Run:
    return Run(run_id=run_id, timestamp="2026-01-01T00:00:00.000000Z", params={}, metrics={"acc": 0.99},
               extra=extra)


# -- item 4: run ids are validated before they name a file ------------------------------------


@pytest.mark.parametrize("bad", [HOSTILE_ID, "../up", ".hidden", "-option", "a b", "a\x1bb", "x" * 129, "a/b"])
def test_unsafe_run_id_is_a_corrupt_line_never_a_run(store: Path, bad: str) -> None:
    tracker = ExperimentTracker(store, durable=False)
    good = tracker.log_run(metrics={"acc": 0.5})
    forge(store, crafted(bad))
    assert [run.run_id for run in tracker.runs()] == [good.run_id]
    assert any("run_id is not a safe id" in c.reason for c in tracker.corrupt_lines())
    assert tracker.best_run("acc").run_id == good.run_id  # the index (fast reader) refuses it too
    assert tracker.summary()["total_runs"] == 1
    with pytest.raises(RunNotFoundError):
        tracker.get_run(bad)


def test_history_of_a_crafted_run_id_never_reads_outside_the_store(tmp_path: Path) -> None:
    store = tmp_path / "a" / "b" / "store"
    outside = tmp_path / "a" / "outside"
    outside.mkdir(parents=True)
    (outside / "notes.jsonl").write_text('{"name": "secret", "step": 0, "value": 1.0}\n')
    (store / "history" / "x").mkdir(parents=True)
    forge(store, crafted("x/../../outside/notes"))
    tracker = ExperimentTracker(store, durable=False)
    with pytest.raises(RunNotFoundError):
        tracker.history("x/../../outside/notes")


def test_recover_never_deletes_a_file_a_crafted_marker_names(tmp_path: Path) -> None:
    store = tmp_path / "store"
    victim = tmp_path / "outside" / "victim.capture"
    victim.parent.mkdir()
    victim.write_text("keep me")
    (store / "active" / "x").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker = {"run_id": "x/../../../outside/victim", "pid": dead.pid, "host": socket.gethostname(),
              "timestamp": "2026-01-01T00:00:00Z", "params": {}, "tags": []}
    (store / "active" / f"{new_run_id()}.json").write_bytes(codec.dumps(marker))
    tracker = ExperimentTracker(store, durable=False)
    assert tracker.recover() == []
    assert victim.read_text() == "keep me"
    assert list(tracker.runs()) == []


def test_build_run_refuses_a_run_id_outside_the_safe_set() -> None:
    with pytest.raises(InvalidRecordError, match="run_id"):
        build_run(run_id=HOSTILE_ID)
    assert build_run(run_id="mlflow-3f2a.run_7").run_id == "mlflow-3f2a.run_7"
    assert is_safe_run_id(new_run_id())


# -- item 5: reproduce never runs git where the stored run says ------------------------------


def _trap_repo(path: Path, canary: Path) -> None:
    """A repository whose own config runs a program on `git status` (fsmonitor) and on hooks."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    (path / "f.txt").write_text("x\n")
    git(path, "add", "f.txt")
    git(path, "commit", "-qm", "init")
    hook = path / "trap.sh"
    hook.write_text(f"#!/bin/sh\necho ran >> {canary}\n")
    hook.chmod(0o755)
    git(path, "config", "core.fsmonitor", str(hook))
    git(path, "config", "core.hooksPath", str(path))


def test_reproduce_never_runs_git_in_the_directory_a_crafted_run_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_git(tmp_path, monkeypatch)
    canary = tmp_path / "canary"
    trap = tmp_path / "trap"
    _trap_repo(trap, canary)
    canary.unlink(missing_ok=True)
    store = tmp_path / "store"
    forge(store, crafted(new_run_id(), code={"commit": "a" * 40, "repo_root": str(trap), "untracked": []},
                         invocation={"cwd": str(trap), "argv": ["train.py"], "script": "train.py"}))
    mine = tmp_path / "mine"
    mine.mkdir()
    monkeypatch.chdir(mine)
    run_id = next(iter(ExperimentTracker(store).runs())).run_id
    result = CliRunner().invoke(cli, ["--store", str(store), "reproduce", run_id])
    assert result.exit_code == 3, result.output
    assert f"checked in {mine}" in result.output
    assert not canary.exists()


def test_capture_never_executes_a_repositorys_fsmonitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git(tmp_path, monkeypatch)
    canary = tmp_path / "canary"
    trap = tmp_path / "trap"
    _trap_repo(trap, canary)
    canary.unlink(missing_ok=True)
    (trap / "f.txt").write_text("changed\n")
    state = capture_code(trap)
    assert state.info["dirty"] is True
    assert not canary.exists()


# -- item 6: every printed restore step is shell-safe -----------------------------------------

STUBS = ("git", "python", "pip", "dvc", "exptrack")


def _stub_dir(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "stubs", tmp_path / "argv.jsonl"
    bin_dir.mkdir()
    for name in STUBS:
        stub = bin_dir / name
        stub.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n")
        stub.chmod(0o755)
    return bin_dir, log


def test_printed_restore_block_runs_nothing_but_the_tools_with_values_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_git(tmp_path, monkeypatch)
    canary = tmp_path / "canary"
    touch = f"/usr/bin/touch {canary}"

    def hostile(tag: str) -> str:
        return f"{tag}$({touch})`{touch}`;{touch};'\"\n{touch}\n-{tag}"

    params = {hostile("k"): hostile("v"), "lr": 0.1}
    work = tmp_path / "work"
    run = crafted(
        new_run_id(),
        code={"commit": "b" * 40, "remote": "-" + hostile("remote"), "repo_root": "/x/" + hostile("root"),
              "untracked": [hostile("u1"), hostile("u2")], "patch_sha256": hostile("sha")},
        system={"python_version": hostile("py"), "os": "Linux", "machine": "x86_64"},
        invocation={"cwd": str(work), "argv": ["-" + hostile("script"), hostile("arg")],
                    "script": "-" + hostile("script")},
        data={"paths": {hostile("data"): {"tree": hostile("tree"), "dvc": {"md5": "0" * 32}}}},
    )
    run = Run(run_id=run.run_id, timestamp=run.timestamp, params=params, metrics=run.metrics, extra=run.extra)
    store = tmp_path / "store"
    forge(store, run)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = CliRunner().invoke(cli, ["--store", str(store), "reproduce", run.run_id, "--json"])
    report = json.loads(result.stdout)
    block = "\n".join([*report["steps"], report["command"], f"python train.py {report['params_flags']}"])
    bin_dir, log = _stub_dir(tmp_path)
    work.mkdir()
    done = subprocess.run(["/bin/bash", "-c", block], env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                          capture_output=True, text=True, check=False, cwd=empty)
    assert not canary.exists(), (block, done.stderr)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert {Path(call[0]).name for call in calls} <= set(STUBS)
    by_tool: dict[str, list[list[str]]] = {}
    for call in calls:
        by_tool.setdefault(Path(call[0]).name, []).append(call[1:])
    assert ["clone", "--", "-" + hostile("remote"), os.path.basename(hostile("root"))] in by_tool["git"]
    assert ["--", "-" + hostile("script"), hostile("arg")] in by_tool["python"]
    assert ["train.py", f"--{hostile('k')}={hostile('v')}", "--lr=0.1"] in by_tool["python"]
    assert ["checkout", "--", os.path.join(str(work), hostile("data"))] in by_tool["dvc"]


# -- item 7: terminal output escapes control characters ---------------------------------------


def test_terminal_output_shows_stored_control_characters_escaped(store: Path) -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J"
    tracker = ExperimentTracker(store, durable=False)
    a = tracker.log_run(params={"model": evil, evil: 1}, metrics={"acc": 0.5}, tags=[evil])
    b = tracker.log_run(params={"model": "rf"}, metrics={"acc": 0.6})
    runner = CliRunner()
    for args in (["show", a.run_id], ["runs"], ["diff", a.run_id, b.run_id], ["top", "acc"], ["best", "acc", "--min"]):
        out = runner.invoke(cli, ["--store", str(store), *args])
        assert out.exit_code == 0, (args, out.output)
        assert "\x1b" not in out.output, args
        assert "\x07" not in out.output, args
        assert "\\x1b" in out.output, args
    exact = runner.invoke(cli, ["--store", str(store), "show", a.run_id, "--json"])
    assert json.loads(exact.stdout)["params"]["model"] == evil  # JSON stays exact
    error = runner.invoke(cli, ["--store", str(store), "show", "zz\x1b[2J"])
    assert error.exit_code == 1
    assert "\x1b" not in error.output
    assert "\\x1b" in error.output


# -- item 8: an error message never embeds a caller's data blob --------------------------------


def test_swapped_artifact_arguments_give_a_short_error(tracker: ExperimentTracker) -> None:
    blob = b"\0" * (8 << 20)
    with tracker.start_run(capture=False) as run, pytest.raises(InvalidRecordError) as caught:
        run.log_artifact_bytes("model.pkl", blob)  # type: ignore[arg-type]
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("call", ["metric", "param_key", "tag", "status"])
def test_invalid_values_give_short_errors(tracker: ExperimentTracker, call: str) -> None:
    huge = "y" * (4 << 20)
    kwargs: dict[str, object] = {
        "metric": {"metrics": {"m": huge}},
        "param_key": {"params": {"k": {1: huge}}},
        "tag": {"tags": [huge.encode()]},
        "status": {"status": huge},
    }[call]
    with pytest.raises(InvalidRecordError) as caught:
        tracker.log_run(**kwargs)  # type: ignore[arg-type]
    assert len(str(caught.value)) <= 1000


# -- item 17: --requirements-out gives a file pip accepts --------------------------------------


def test_requirements_never_pin_a_package_installed_from_a_local_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exptrack.capture.system import local_packages

    if "exptrack" not in local_packages():
        pytest.skip("exptrack is not installed from a local path here (pip install -e . makes it so)")
    store = tmp_path / "store"
    tracker = ExperimentTracker(store, durable=False)
    with tracker.start_run(capture=["system", "packages"]) as run:
        pass
    out = tmp_path / "requirements.txt"
    result = CliRunner().invoke(cli, ["--store", str(store), "reproduce", run.run_id, "--requirements-out",
                                      str(out)])
    assert out.exists(), result.output
    lines = out.read_text().splitlines()
    assert not [line for line in lines if line.lower().startswith("exptrack==")]
    assert any(line.startswith("# exptrack==") and "local path" in line for line in lines)
    # pip reads every line: the pins are satisfied here, the local package is only a comment
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "-r", str(out)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_requirements_turn_a_crafted_name_or_version_into_a_comment() -> None:
    from exptrack.repro.reproduce import requirements_text

    text = requirements_text({"numpy": "1.26.4", "evil": "1.0\n--index-url http://evil.example",
                              "x y": "1", "mine": "0.1"}, local=["Mine"])
    assert text.splitlines() == [
        "# not a requirement: evil==1.0\\n--index-url http://evil.example",
        "# mine==0.1 was installed from a local path: install it from your checkout (pip install -e <path>)",
        "numpy==1.26.4",
        "# not a requirement: x y==1",
    ]
