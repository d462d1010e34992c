"""System facts, invocation capture and the capture benchmark's quick mode."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from exptrack.capture import capture_invocation, capture_system, command_line, compare_system

ROOT = Path(__file__).resolve().parent.parent
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fake nvidia-smi is a shell script")


def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    script = fake_bin / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")


def test_every_fact_is_present_and_json_able() -> None:
    info = capture_system(packages=False).info
    assert set(info) >= {
        "os",
        "os_release",
        "os_version",
        "platform",
        "machine",
        "python_version",
        "python_implementation",
        "python_executable",
        "hostname",
        "cpu_model",
        "cpu_count",
        "cpu_usable",
        "memory_total_bytes",
        "gpu",
        "packages_sha256",
    }
    assert info["os"] == platform.system()
    assert info["python_version"] == platform.python_version()
    assert info["python_executable"] == sys.executable
    assert info["cpu_count"] == os.cpu_count()
    assert isinstance(info["cpu_usable"], int)
    assert 1 <= info["cpu_usable"] <= (os.cpu_count() or 1)
    assert isinstance(info["memory_total_bytes"], int)
    assert info["memory_total_bytes"] > 1 << 20
    assert info["packages_sha256"] is None
    assert "errors" not in info
    json.dumps(info)


def test_packages_are_normalized_and_hashed_canonically() -> None:
    captured = capture_system()
    assert captured.packages["pytest"] == importlib.metadata.version("pytest")
    assert captured.packages["pytest-xdist"] == importlib.metadata.version("pytest-xdist")
    assert all(name == name.lower() and "_" not in name for name in captured.packages)
    canonical = "".join(f"{n}=={v}\n" for n, v in sorted(captured.packages.items()))
    assert captured.info["packages_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_package_list_is_a_fresh_copy_each_call() -> None:
    first = capture_system()
    first.packages["pytest"] = "0"
    assert capture_system().packages["pytest"] == importlib.metadata.version("pytest")


def test_failing_probe_records_why_and_the_rest_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise OSError("name service unavailable")

    monkeypatch.setattr(socket, "gethostname", broken)
    info = capture_system(packages=False).info
    assert info["hostname"] is None
    assert info["errors"] == {"hostname": "OSError: name service unavailable"}
    assert info["python_version"] == platform.python_version()


def test_missing_nvidia_smi_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert capture_system(packages=False).info["gpu"] == {"error": "nvidia-smi not found"}


@posix_only
def test_gpus_are_read_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(
        tmp_path,
        monkeypatch,
        'echo "NVIDIA A100-SXM4-40GB, 535.104.05"\necho "NVIDIA A100-SXM4-40GB, 535.104.05"',
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert capture_system(packages=False).info["gpu"] == {
        "name": ["NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB"],
        "count": 2,
        "driver": "535.104.05",
        "cuda_visible_devices": "1",
    }


@posix_only
def test_hung_nvidia_smi_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path, monkeypatch, f"exec {shutil.which('sleep')} 30")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = capture_system(packages=False, gpu_timeout=0.3).info["gpu"]
    assert gpu == {"error": "nvidia-smi timed out after 0.3 s"}


@posix_only
def test_failing_nvidia_smi_records_its_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(
        tmp_path, monkeypatch, 'echo "NVIDIA-SMI has failed because it couldn\'t communicate" >&2\nexit 9'
    )
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = capture_system(packages=False).info["gpu"]
    assert gpu == {"error": "nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate"}


def test_compare_system_reports_key_packages_first_then_counts() -> None:
    recorded = {
        "python_version": "3.10.4",
        "python_implementation": "CPython",
        "os": "Linux",
        "os_release": "6.1",
        "machine": "x86_64",
        "gpu": {"error": "nvidia-smi not found"},
    }
    current = {**recorded, "python_version": "3.11.7"}
    rec_packages = {"numpy": "1.26.0", "torch": "2.1.0", "old-lib": "0.1", "same": "1"}
    cur_packages = {"numpy": "2.0.0", "torch": "2.1.0", "new-lib": "3", "same": "1"}
    items = compare_system(
        recorded, current, rec_packages, cur_packages, key_packages=["NumPy", "torch", "absent"]
    )
    by_name = {item["name"]: item for item in items}
    assert by_name["python_version"] == {
        "name": "python_version",
        "recorded": "3.10.4",
        "current": "3.11.7",
        "verdict": "mismatch",
    }
    assert by_name["os"]["verdict"] == "match"
    assert by_name["gpu"] == {"name": "gpu", "recorded": [], "current": [], "verdict": "match"}
    assert [item["name"] for item in items[-4:]] == ["numpy", "torch", "absent", "packages"]
    assert by_name["numpy"]["verdict"] == "mismatch"
    assert by_name["torch"]["verdict"] == "match"
    assert by_name["absent"]["verdict"] == "unknown"
    assert by_name["packages"] == {
        "name": "packages",
        "recorded": 4,
        "current": 4,
        "verdict": "mismatch",
        "added": ["new-lib==3"],
        "removed": ["old-lib==0.1"],
        "changed": ["numpy: 1.26.0 -> 2.0.0"],
        "counts": {"added": 1, "removed": 1, "changed": 1},
    }


def test_compare_system_without_package_lists_is_unknown() -> None:
    info = capture_system(packages=False).info
    items = compare_system(info, info, None, {"numpy": "1"}, key_packages=["numpy"])
    by_name = {item["name"]: item for item in items}
    assert by_name["python_version"]["verdict"] == "match"
    assert by_name["numpy"]["verdict"] == "unknown"
    assert by_name["packages"]["verdict"] == "unknown"


def test_invocation_records_argv_cwd_and_seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.1", "--name", "two words"])
    monkeypatch.setitem(sys.modules, "__main__", type(sys)("__main__"))
    info = capture_invocation(seed={"numpy": 1, "torch": 2})
    assert info == {
        "argv": ["train.py", "--lr", "0.1", "--name", "two words"],
        "cwd": str(tmp_path),
        "script": str(script),
        "module": None,
        "python": sys.executable,
        "pid": os.getpid(),
        "seed": {"numpy": 1, "torch": 2},
    }
    assert (
        command_line(info)
        == f"cd -- {shlex.quote(str(tmp_path))} && python train.py --lr 0.1 --name 'two words'"
    )


def test_invocation_under_python_m_rebuilds_the_module_command(monkeypatch: pytest.MonkeyPatch) -> None:
    main = type(sys)("__main__")
    main.__spec__ = importlib.util.find_spec("json.tool")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [str(Path(json.__file__).parent / "tool.py"), "in.json"])
    info = capture_invocation()
    assert info["module"] == "json.tool"
    assert "seed" not in info
    assert command_line(info).endswith("&& python -m json.tool in.json")


@pytest.mark.parametrize(
    ("argv", "script", "rerun"),
    [
        (["-c", "x"], "-c", "# started with python -c: the code is not recorded in argv"),
        ([""], "interactive", "# interactive session: there is no command to re-run"),
    ],
)
def test_invocations_that_cannot_be_retyped_say_so(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], script: str, rerun: str
) -> None:
    monkeypatch.setitem(sys.modules, "__main__", type(sys)("__main__"))
    monkeypatch.setattr(sys, "argv", argv)
    info = capture_invocation()
    assert info["script"] == script
    assert command_line(info) == rerun


class NumpyLikeInt:
    def __index__(self) -> int:
        return 7


@pytest.mark.parametrize(
    ("seed", "stored"),
    [
        (3, 3),
        ("abc", "abc"),
        ([1, (2, 3)], [1, [2, 3]]),
        (NumpyLikeInt(), 7),
        (float("nan"), "nan"),
        ({1: 2}, {"1": 2}),
    ],
)
def test_seed_is_stored_as_json(seed: object, stored: object) -> None:
    info = capture_invocation(seed=seed)
    assert info["seed"] == stored
    json.dumps(info)


def test_benchmark_runs_in_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "capture_overhead.py"), "--quick", "--reps", "2"],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a speed check
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "typical run capture" in done.stdout
    assert "answers agree with the floors: yes" in done.stdout


def test_vendored_copies_a_library_puts_on_sys_path_are_not_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray puts ``site-packages/ray/thirdparty_files`` on ``sys.path`` when imported; a fresh
    interpreter does not see those copies, so they must not be recorded (reproduce would call them removed)."""
    import site

    from exptrack.capture import system as system_capture

    site_dir = tmp_path / "site-packages"
    vendored = site_dir / "lib" / "thirdparty_files"
    for base, name in ((site_dir, "installedpkg"), (vendored, "vendoredpkg")):
        info = base / f"{name}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_dir)])
    monkeypatch.setattr(sys, "path", [str(vendored), str(site_dir), *sys.path])
    system_capture._installed_packages.cache_clear()
    try:
        names = dict(system_capture._installed_packages()[0])
    finally:
        system_capture._installed_packages.cache_clear()
    assert names.get("installedpkg") == "1.0"
    assert "vendoredpkg" not in names
