"""Managing runs after the fact: experiments, names, tags, notes, renames, delete and restore (API and CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from exptrack import ExperimentTracker, InvalidRecordError, RunNotFoundError
from exptrack.cli import cli
from exptrack.repro.check import check_store


def fill(tracker: ExperimentTracker) -> list[str]:
    ids = []
    for i in range(6):
        run = tracker.log_run({"i": i}, {"accuracy": i / 10}, tags=["sweep"], name=f"run-{i}",
                              experiment="wine" if i % 2 else "iris")
        ids.append(run.run_id)
    return ids


def invoke(store: Path, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", str(store), *args], input=input)
    return result.exit_code, result.stdout, result.stderr


# -- experiments --------------------------------------------------------------------------------


def test_experiment_scopes_logging_and_every_query(store: Path) -> None:
    ids = fill(ExperimentTracker(store, durable=False))
    wine = ExperimentTracker(store, experiment="wine")
    assert [run.name for run in wine.runs()] == ["run-1", "run-3", "run-5"]
    assert wine.best_run("accuracy").name == "run-5"
    assert [run.name for run in wine.top_runs("accuracy", 2)] == ["run-5", "run-3"]
    assert wine.summary()["total_runs"] == 3
    with pytest.raises(RunNotFoundError, match="in experiment 'iris'"):
        wine.get_run(ids[0])
    everything = ExperimentTracker(store)
    assert everything.best_run("accuracy").name == "run-5"
    assert everything.summary()["total_runs"] == 6


def test_experiments_lists_runs_finished_and_last_activity(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    fill(tracker)
    tracker.log_run(status="failed", experiment="wine")
    listed = {entry["experiment"]: entry for entry in tracker.experiments()}
    assert set(listed) == {"iris", "wine"}
    assert (listed["wine"]["runs"], listed["wine"]["finished"]) == (4, 3)
    assert listed["wine"]["last_activity"] == max(r.timestamp for r in tracker.runs() if r.experiment == "wine")
    code, out, _ = invoke(store, "experiments", "--json")
    assert code == 0
    assert json.loads(out) == tracker.experiments()
    code, out, _ = invoke(store, "experiments")
    assert "wine" in out
    assert "last_activity" in out


def test_experiment_option_and_environment_variable(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke(store, "-e", "wine", "log", "-m", "accuracy=0.5")[0] == 0
    assert invoke(store, "log", "-m", "accuracy=0.9")[0] == 0
    _, out, _ = invoke(store, "--experiment", "wine", "best", "accuracy", "--json")
    assert json.loads(out)["metrics"]["accuracy"] == 0.5
    monkeypatch.setenv("EXPTRACK_EXPERIMENT", "wine")
    _code, out, _ = invoke(store, "runs", "--json")
    assert [run["experiment"] for run in json.loads(out)] == ["wine"]


# -- names --------------------------------------------------------------------------------------


def test_a_unique_name_is_accepted_where_an_id_is(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    ids = fill(tracker)
    assert tracker.get_run("run-3").run_id == ids[3]
    _code, out, _ = invoke(store, "show", "run-3", "--json")
    assert json.loads(out)["run_id"] == ids[3]
    tracker.log_run(name="run-3")
    with pytest.raises(RunNotFoundError, match="ambiguous"):
        tracker.get_run("run-3")
    with pytest.raises(RunNotFoundError):
        tracker.get_run("no-such-name")


# -- edits ---------------------------------------------------------------------------------------


def test_tags_notes_and_names_merge_last_edit_wins(tracker: ExperimentTracker) -> None:
    run = tracker.log_run(tags=["a", "b"], name="first")
    tracker.set_tags(run.run_id, add=["c"], remove=["a"])
    tracker.set_tags(run.run_id, add=["a"], remove=["c"])  # later edits win, per tag
    tracker.set_note("first", "one")
    tracker.set_note(run.run_id, "two")
    tracker.rename("first", "second")
    merged = tracker.get_run("second")
    assert merged.tags == ("b", "a")
    assert merged.extra["note"] == "two"
    assert merged.name == "second"
    assert tracker.set_note("second", "").extra.get("note") is None  # an empty note clears it
    assert [r.name for r in tracker.runs(where="tags = 'a' and name = 'second'")] == ["second"]


def test_edits_are_checksummed_lines_of_their_own_kind(tracker: ExperimentTracker) -> None:
    run = tracker.log_run()
    tracker.set_tags(run.run_id, add=["x"])
    tracker.set_note(run.run_id, "n")
    tracker.rename(run.run_id, "r")
    tracker.delete_runs([run.run_id])
    tracker.restore_runs([run.run_id])
    lines = [json.loads(line) for line in tracker.runs_path.read_bytes().splitlines()]
    assert [line.get("kind") for line in lines] == [None, "tags", "note", "rename", "delete", "restore"]
    assert all(line["crc"] for line in lines)
    assert all(line["runs"] == [run.run_id] for line in lines[1:])
    assert check_store(tracker.store).ok


def test_filters_exports_and_tables_see_the_merged_view(tracker: ExperimentTracker) -> None:
    ids = fill(tracker)
    tracker.set_tags(ids[0], add=["keep"])
    assert [run.run_id for run in tracker.runs(where="tags = 'keep'")] == [ids[0]]
    assert tracker.best_run("accuracy", where="tags = 'keep'").run_id == ids[0]
    assert tracker.summary(where="tags = 'keep'")["total_runs"] == 1
    _, out, _ = invoke(tracker.store, "export", "-f", "jsonl")
    assert json.loads(out.splitlines()[0])["tags"] == ["sweep", "keep"]
    tracker.rename(ids[1], "renamed-one")
    _code, out, _ = invoke(tracker.store, "runs")
    assert "renamed-one" in out


def test_delete_hides_runs_from_every_query_until_restored(tracker: ExperimentTracker) -> None:
    ids = fill(tracker)
    assert tracker.best_run("accuracy").run_id == ids[5]
    assert tracker.delete_runs([ids[5]]) == 1
    assert tracker.best_run("accuracy").run_id == ids[4]  # a deleted best never comes back
    assert ids[5] not in {run.run_id for run in tracker.top_runs("accuracy", 10)}
    assert tracker.summary()["total_runs"] == 5
    assert tracker.summary()["metrics"]["accuracy"]["max"] == 0.4
    assert [run.run_id for run in tracker.runs()] == ids[:5]
    assert [run.run_id for run in tracker.runs(include_deleted=True)] == ids
    with pytest.raises(RunNotFoundError, match="deleted"):
        tracker.get_run(ids[5])
    assert tracker.get_run(ids[5], include_deleted=True).extra["deleted"] is True
    assert tracker.delete_runs(where="metrics.accuracy < 0.25") == 3
    assert [run.run_id for run in tracker.runs()] == ids[3:5]
    assert tracker.restore_runs([ids[5], ids[0]]) == 2
    assert tracker.restore_runs([ids[5]]) == 0  # not deleted any more: nothing to do
    assert tracker.best_run("accuracy").run_id == ids[5]
    assert check_store(tracker.store).ok


def test_delete_needs_runs_or_where(tracker: ExperimentTracker) -> None:
    tracker.log_run()
    with pytest.raises(InvalidRecordError, match="runs or where"):
        tracker.delete_runs()
    assert tracker.delete_runs(where="status = 'failed'") == 0


def test_a_fresh_reader_and_a_rebuilt_index_agree_after_edits(store: Path) -> None:
    tracker = ExperimentTracker(store, durable=False)
    ids = fill(tracker)
    tracker.delete_runs([ids[5], ids[2]])
    tracker.set_tags(ids[4], add=["x"])
    warm = (tracker.summary(), [r.run_id for r in tracker.top_runs("accuracy", 3)])
    for path in (store / ".index").iterdir():
        path.unlink()
    fresh = ExperimentTracker(store)
    assert (fresh.summary(), [r.run_id for r in fresh.top_runs("accuracy", 3)]) == warm
    assert fresh.get_run(ids[4]).tags == ("sweep", "x")


# -- the command line ------------------------------------------------------------------------------


def test_cli_tag_note_rename(store: Path) -> None:
    ids = fill(ExperimentTracker(store, durable=False))
    code, out, _ = invoke(store, "tag", "run-1", "+best", "-sweep")
    assert code == 0, out
    assert "tags best" in out
    assert invoke(store, "note", "run-1", "the one to ship")[0] == 0
    assert invoke(store, "rename", "run-1", "champion")[0] == 0
    code, out, _ = invoke(store, "show", "champion", "--json")
    shown = json.loads(out)
    assert (shown["run_id"], shown["tags"], shown["note"]) == (ids[1], ["best"], "the one to ship")
    code, _, err = invoke(store, "tag", "champion", "best")
    assert code == 2
    assert "+TAG" in err
    code, _, err = invoke(store, "note", "nobody", "x")
    assert code == 1
    assert "nobody" in err


def test_cli_delete_confirms_prints_and_restores(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = fill(ExperimentTracker(store, durable=False))
    monkeypatch.setattr("exptrack.cli.manage._interactive", lambda: True)
    code, out, _ = invoke(store, "delete", "run-0", input="n\n")
    assert code == 1  # declined: aborted, nothing deleted
    assert len(json.loads(invoke(store, "runs", "--json")[1])) == 6
    code, out, _ = invoke(store, "delete", "run-0", input="y\n")
    assert code == 0
    assert f"deleted {ids[0]} (run-0)" in out
    code, out, _ = invoke(store, "delete", "--where", "metrics.accuracy > 0.35", "--yes")
    assert code == 0
    assert out.count("deleted ") == 2
    assert len(json.loads(invoke(store, "runs", "--json")[1])) == 3
    assert len(json.loads(invoke(store, "runs", "--json", "--deleted")[1])) == 6
    code, out, _ = invoke(store, "restore", "run-0", ids[4])
    assert code == 0
    assert f"restored {ids[0]}" in out
    assert len(json.loads(invoke(store, "runs", "--json")[1])) == 5
    assert invoke(store, "delete")[0] == 2  # neither runs nor --where: a usage error


def test_installed_script_manages_runs(store: Path) -> None:
    ExperimentTracker(store, durable=False).log_run(name="scripted", experiment="e")
    exe = Path(sys.executable).with_name("exptrack")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "exptrack"]
    done = subprocess.run([*command, "--store", str(store), "tag", "scripted", "+x"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*command, "--store", str(store), "experiments", "--json"], capture_output=True,
                          text=True, check=False)
    assert json.loads(done.stdout)[0]["experiment"] == "e"
