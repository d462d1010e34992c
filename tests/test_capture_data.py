"""Data fingerprints: hashes, tree hashes, the stat cache, DVC metadata and comparisons."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exptrack.capture import FingerprintCache, compare_data, fingerprint_data
from exptrack.capture import data as data_capture
from exptrack.capture import dvc as dvc_capture

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

HOUR_NS = 3600 * 10**9


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def path_entry(result: dict[str, object], key: str) -> dict[str, Any]:
    paths = result["paths"]
    assert isinstance(paths, dict)
    entry = paths[key]
    assert isinstance(entry, dict)
    return entry


def age(path: Path) -> None:
    """Backdate a file an hour, out of the window where the cache refuses fresh files."""
    past = time.time_ns() - HOUR_NS
    os.utime(path, ns=(past, past))


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real: Callable[[str], tuple[str, int]] = data_capture._hash_file

    def counting(path: str) -> tuple[str, int]:
        reads.append(path)
        return real(path)

    monkeypatch.setattr(data_capture, "_hash_file", counting)
    return reads


def test_file_is_recorded_relative_to_base_with_its_hash(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(b"a,b\n1,2\n")
    result = fingerprint_data([tmp_path / "data" / "train.csv"], base=str(tmp_path))
    digest = sha(b"a,b\n1,2\n")
    assert result["paths"] == {
        "data/train.csv": {
            "type": "file",
            "sha256": digest,
            "size": 8,
            "tree": sha(f"train.csv\0{digest}\x008\n".encode()),
        }
    }
    assert result["tree"] == sha(f"data/train.csv\0{digest}\x008\n".encode())
    json.dumps(result)


def test_relative_paths_resolve_against_the_cwd_and_outside_paths_stay_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "x.txt").write_text("x")
    (elsewhere / "y.txt").write_text("y")
    monkeypatch.chdir(project)
    result = fingerprint_data(["x.txt", elsewhere / "y.txt"])
    paths = result["paths"]
    assert isinstance(paths, dict)
    assert sorted(paths) == sorted(["x.txt", str(elsewhere / "y.txt")])


def test_one_byte_change_changes_the_fingerprint(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"0123456789")
    cache = FingerprintCache(tmp_path / "cache.json")
    before = fingerprint_data([target], cache=cache, base=str(tmp_path))
    target.write_bytes(b"0123456780")
    after = fingerprint_data([target], cache=cache, base=str(tmp_path))
    assert before["tree"] != after["tree"]
    assert after["paths"] == {
        "data.bin": {
            "type": "file",
            "sha256": sha(b"0123456780"),
            "size": 10,
            "tree": sha(f"data.bin\0{sha(b'0123456780')}\x0010\n".encode()),
        }
    }


def test_unchanged_file_is_served_from_the_cache(tmp_path: Path, count_reads: list[str]) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(os.urandom(4096))
    age(target)
    first = fingerprint_data([target], cache=FingerprintCache(tmp_path / "cache.json"), base=str(tmp_path))
    assert count_reads == [str(target)]
    count_reads.clear()
    # a fresh cache object: the hit must come from the file on disk, not from memory
    second = fingerprint_data([target], cache=FingerprintCache(tmp_path / "cache.json"), base=str(tmp_path))
    assert count_reads == []
    assert first == second


def test_changed_file_is_rehashed_despite_the_cache(tmp_path: Path, count_reads: list[str]) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(b"version one")
    age(target)
    cache = FingerprintCache(tmp_path / "cache.json")
    fingerprint_data([target], cache=cache, base=str(tmp_path))
    target.write_bytes(b"version two!")
    age(target)
    result = fingerprint_data([target], cache=cache, base=str(tmp_path))
    assert len(count_reads) == 2
    assert path_entry(result, "big.bin")["sha256"] == sha(b"version two!")


def test_just_written_file_is_served_from_the_cache_on_the_next_run(
    tmp_path: Path, count_reads: list[str]
) -> None:
    target = tmp_path / "fresh.bin"
    target.write_bytes(b"just written")
    cache = FingerprintCache(tmp_path / "cache.json")
    first = fingerprint_data([target], cache=cache, base=str(tmp_path))
    second = fingerprint_data([target], cache=FingerprintCache(tmp_path / "cache.json"), base=str(tmp_path))
    assert len(count_reads) == 1
    assert first == second


def test_content_rewritten_under_a_forced_back_mtime_is_caught_by_ctime(tmp_path: Path) -> None:
    """The stat key includes ctime, which ``os.utime`` cannot set back."""
    target = tmp_path / "data.bin"
    target.write_bytes(b"AAAA")
    age(target)
    stamp = target.stat().st_mtime_ns
    cache = FingerprintCache(tmp_path / "cache.json")
    fingerprint_data([target], cache=cache, base=str(tmp_path))
    with open(target, "r+b") as handle:  # same inode, same size
        handle.write(b"BBBB")
    os.utime(target, ns=(stamp, stamp))
    assert target.stat().st_mtime_ns == stamp
    cached = fingerprint_data([target], cache=cache, base=str(tmp_path))
    assert path_entry(cached, "data.bin")["sha256"] == sha(b"BBBB")


def test_large_file_is_hashed_in_chunks_to_the_same_digest(tmp_path: Path) -> None:
    payload = os.urandom(5 * (1 << 20) + 12345)  # not a multiple of the chunk size
    target = tmp_path / "large.bin"
    target.write_bytes(payload)
    assert data_capture._hash_file(str(target)) == (sha(payload), len(payload))


def make_tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"content of {name}\n")


def test_directory_tree_hash_follows_its_definition(tmp_path: Path) -> None:
    names = ["b.txt", "a/z.txt", "a/b/c.txt", "a b.txt"]
    make_tree(tmp_path / "images", names)
    result = fingerprint_data([tmp_path / "images"], base=str(tmp_path))
    lines = []
    for name in names:
        content = f"content of {name}\n".encode()
        lines.append(f"{name}\0{sha(content)}\0{len(content)}\n".encode())
    lines.sort()
    entry = path_entry(result, "images/")
    assert entry["type"] == "dir"
    assert entry["files"] == 4
    assert entry["size"] == sum(len(f"content of {n}\n") for n in names)
    assert entry["tree"] == sha(b"".join(lines))
    assert sorted(entry["entries"]) == sorted(names)
    assert entry["entries"]["a/b/c.txt"] == {"sha256": sha(b"content of a/b/c.txt\n"), "size": 21}


def test_directory_tree_hash_is_stable_and_independent_of_creation_order(tmp_path: Path) -> None:
    names = [f"d{i % 3}/f{i}.txt" for i in range(12)]
    make_tree(tmp_path / "one" / "data", names)
    make_tree(tmp_path / "two" / "data", list(reversed(names)))
    one = fingerprint_data([tmp_path / "one" / "data"], base=str(tmp_path / "one"))
    again = fingerprint_data([tmp_path / "one" / "data"], base=str(tmp_path / "one"))
    two = fingerprint_data([tmp_path / "two" / "data"], base=str(tmp_path / "two"))
    assert one == again == two


def test_missing_path_is_recorded_not_raised(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("here")
    result = fingerprint_data([tmp_path / "gone.csv", tmp_path / "here.txt"], base=str(tmp_path))
    paths = result["paths"]
    assert isinstance(paths, dict)
    assert paths["gone.csv"] == {"error": "no such file or directory"}
    assert paths["here.txt"]["sha256"] == sha(b"here")
    alone = fingerprint_data([tmp_path / "here.txt"], base=str(tmp_path))
    assert result["tree"] != alone["tree"]  # a missing input is part of the fingerprint


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks and FIFOs need POSIX")
def test_symlinks_are_followed_and_broken_ones_skipped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "real.txt").write_text("target content")
    (data / "link.txt").symlink_to(tmp_path / "real.txt")
    (data / "broken.txt").symlink_to(tmp_path / "nowhere")
    (data / "loop").symlink_to(data)
    os.mkfifo(data / "pipe")
    result = fingerprint_data([data], base=str(tmp_path))
    entry = path_entry(result, "data/")
    assert entry["entries"] == {"link.txt": {"sha256": sha(b"target content"), "size": 14}}
    assert entry["skipped"] == [
        {"path": "broken.txt", "reason": "broken symlink"},
        {"path": "loop", "reason": "directory already included (symlink)"},
        {"path": "pipe", "reason": "not a regular file"},
    ]
    direct = fingerprint_data([data / "broken.txt"], base=str(tmp_path))
    assert direct["paths"] == {"data/broken.txt": {"error": "broken symlink"}}


def test_corrupt_cache_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"x")
    age(target)
    cache_file = tmp_path / "cache.json"
    cache_file.write_bytes(b"{not json\x00")
    result = fingerprint_data([target], cache=FingerprintCache(cache_file), base=str(tmp_path))
    assert path_entry(result, "x.bin")["sha256"] == sha(b"x")
    saved = json.loads(cache_file.read_text())
    assert saved["entries"][str(target)][-1] == sha(b"x")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_cache_in_a_missing_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    target.write_bytes(b"x")
    age(target)
    cache = FingerprintCache(tmp_path / ".index" / "fingerprints.json")
    fingerprint_data([target], cache=cache)
    assert (tmp_path / ".index" / "fingerprints.json").is_file()


def _fingerprint_worker(cache_path: str, target: str, barrier: multiprocessing.synchronize.Barrier) -> str:
    barrier.wait()
    for _ in range(5):
        cache = FingerprintCache(cache_path)
        result = fingerprint_data([target], cache=cache)
    return str(result["tree"])


def test_concurrent_processes_always_leave_a_valid_cache(tmp_path: Path) -> None:
    targets = []
    for i in range(4):
        target = tmp_path / f"file{i}.bin"
        target.write_bytes(os.urandom(1000))
        age(target)
        targets.append(str(target))
    cache_path = str(tmp_path / "cache.json")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(len(targets))
        with ctx.Pool(len(targets)) as pool:
            pending = [pool.apply_async(_fingerprint_worker, (cache_path, t, barrier)) for t in targets]
            trees = [p.get(timeout=120) for p in pending]  # timeout: a hang guard only
    assert len(set(trees)) == 4
    saved = json.loads((tmp_path / "cache.json").read_text())
    assert saved["format"] == "exptrack-fingerprint-cache"
    assert set(saved["entries"]) <= set(targets)
    assert saved["entries"]


DVC_FILE = """\
outs:
- md5: a304afb96060aad90176268345e10355
  size: 8
  hash: md5
  path: train.csv
"""

DVC_LOCK = """\
schema: '2.0'
stages:
  prepare:
    cmd: python prepare.py data/raw.csv
    deps:
    - path: data/raw.csv
      hash: md5
      md5: 11111111111111111111111111111111
      size: 3
    - path: prepare.py
      md5: 22222222222222222222222222222222
    outs:
    - path: data/features
      hash: md5
      md5: "33333333333333333333333333333333.dir"
      size: 12
      nfiles: 2
"""


def test_dvc_file_next_to_the_path_gives_dvc_md5(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(b"a,b\n1,2\n")
    (tmp_path / "data" / "train.csv.dvc").write_text(DVC_FILE)
    result = fingerprint_data([tmp_path / "data" / "train.csv"], base=str(tmp_path))
    assert path_entry(result, "data/train.csv")["dvc"] == {
        "md5": "a304afb96060aad90176268345e10355",
        "source": "data/train.csv.dvc",
    }


def test_dvc_lock_outs_are_preferred_and_deps_used_otherwise(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # marks the repository root where dvc.lock lives
    (tmp_path / "dvc.lock").write_text(DVC_LOCK)
    make_tree(tmp_path / "data" / "features", ["a.npy", "b.npy"])
    (tmp_path / "data" / "raw.csv").write_text("raw")
    sub = tmp_path / "notebooks"
    sub.mkdir()
    result = fingerprint_data([tmp_path / "data" / "features", tmp_path / "data" / "raw.csv"], base=str(sub))
    paths = result["paths"]
    assert isinstance(paths, dict)
    features = paths[str(tmp_path / "data" / "features") + "/"]
    assert features["dvc"] == {
        "md5": "33333333333333333333333333333333.dir",
        "source": str(tmp_path / "dvc.lock"),
    }
    assert paths[str(tmp_path / "data" / "raw.csv")]["dvc"]["md5"] == "11111111111111111111111111111111"


def test_dvc_tracked_data_not_pulled_still_reports_dvc_md5(tmp_path: Path) -> None:
    (tmp_path / "train.csv.dvc").write_text(DVC_FILE)
    result = fingerprint_data([tmp_path / "train.csv"], base=str(tmp_path))
    assert result["paths"] == {
        "train.csv": {
            "error": "no such file or directory",
            "dvc": {"md5": "a304afb96060aad90176268345e10355", "source": "train.csv.dvc"},
        }
    }


@pytest.mark.parametrize(
    "odd",
    [
        "",
        "outs:\n",
        "outs: [{md5: abc, path: train.csv}]\n",
        "-\n- \n  -\n:\n: x\n",
        "outs:\n- md5:\n  path:\n",
        "\tout:\n\t- md5: x\n",
        "\x00\x01\x02 binary \xff",
    ],
)
def test_odd_dvc_files_are_ignored(tmp_path: Path, odd: str) -> None:
    (tmp_path / "train.csv").write_text("x")
    (tmp_path / "train.csv.dvc").write_text(odd, encoding="utf-8", errors="surrogateescape")
    result = fingerprint_data([tmp_path / "train.csv"], base=str(tmp_path))
    assert "dvc" not in path_entry(result, "train.csv")


@given(st.text())
def test_dvc_parser_never_raises(text: str) -> None:
    for section, fields in dvc_capture.parse_dvc_items(text):
        assert isinstance(section, str)
        assert all(isinstance(v, str) for v in fields.values())


def test_compare_data_names_the_files_that_differ(tmp_path: Path) -> None:
    make_tree(tmp_path / "data", ["keep.txt", "edit.txt", "drop.txt"])
    (tmp_path / "model.bin").write_bytes(b"weights")
    recorded = fingerprint_data([tmp_path / "data", tmp_path / "model.bin"], base=str(tmp_path))
    (tmp_path / "data" / "edit.txt").write_text("edited\n")
    (tmp_path / "data" / "drop.txt").unlink()
    (tmp_path / "data" / "new.txt").write_text("new\n")
    current = fingerprint_data([tmp_path / "data", tmp_path / "model.bin"], base=str(tmp_path))
    assert compare_data(recorded, current) == [
        {
            "path": "data",
            "verdict": "mismatch",
            "reason": "files differ: 1 added, 1 removed, 1 changed",
            "added": ["new.txt"],
            "removed": ["drop.txt"],
            "changed": ["edit.txt"],
            "truncated": False,
        },
        {
            "path": "model.bin",
            "verdict": "match",
            "reason": "same content",
            "added": [],
            "removed": [],
            "changed": [],
            "truncated": False,
        },
    ]


def test_compare_data_reports_missing_and_type_changes(tmp_path: Path) -> None:
    make_tree(tmp_path / "data", ["a.txt"])
    (tmp_path / "thing").write_text("file")
    recorded = fingerprint_data([tmp_path / "data", tmp_path / "thing"], base=str(tmp_path))
    for child in (tmp_path / "data").iterdir():
        child.unlink()
    (tmp_path / "data").rmdir()
    (tmp_path / "thing").unlink()
    (tmp_path / "thing").mkdir()
    current = fingerprint_data([tmp_path / "data", tmp_path / "thing"], base=str(tmp_path))
    verdicts = {item["path"]: (item["verdict"], item["reason"]) for item in compare_data(recorded, current)}
    assert verdicts == {
        "data": ("missing", "no such file or directory"),
        "thing": ("mismatch", "was a file, now a dir"),
    }


def test_compare_data_caps_the_listed_files(tmp_path: Path) -> None:
    make_tree(tmp_path / "data", ["base.txt"])
    recorded = fingerprint_data([tmp_path / "data"], base=str(tmp_path))
    make_tree(tmp_path / "data", [f"n{i:03}.txt" for i in range(60)])
    (item,) = compare_data(recorded, fingerprint_data([tmp_path / "data"], base=str(tmp_path)))
    assert isinstance(item["added"], list)
    assert len(item["added"]) == 50
    assert item["truncated"] is True
    assert item["reason"] == "files differ: 60 added, 0 removed, 0 changed"


def test_a_single_path_passed_bare_is_not_split_into_characters(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("x")
    result = fingerprint_data(str(tmp_path / "train.csv"), base=str(tmp_path))
    assert path_entry(result, "train.csv")["sha256"] == sha(b"x")
