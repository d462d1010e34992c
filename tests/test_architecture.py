"""The layering the architecture promises, checked on the source: who may import what."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import exptrack

PACKAGE = Path(exptrack.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
HANG_GUARD = 120.0  # seconds; only stops a hung interpreter


def imported_modules(path: Path) -> set[str]:
    """Absolute top-level module names imported anywhere in the file (function bodies included);
    relative imports are resolved against the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module == "exptrack":  # `from exptrack import capture` imports the subpackage only
                for alias in node.names:
                    is_module = (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file()
                    names.add(f"exptrack.{alias.name}" if is_module else "exptrack")
            elif node.module:
                names.add(node.module)
                if node.module.startswith("exptrack"):  # `from exptrack.store import codec` imports a module
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def importers_of(module: str) -> set[str]:
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in SOURCES
        if any(name == module or name.startswith(module + ".") for name in imported_modules(path))
    }


def test_the_scan_sees_the_package() -> None:
    relative = {path.relative_to(PACKAGE.parent).as_posix() for path in SOURCES}
    expected = {"exptrack/store/codec.py", "exptrack/store/fsio.py", "exptrack/tracker.py", "exptrack/cli/_app.py"}
    assert expected <= relative
    assert "exptrack.store.codec" in imported_modules(PACKAGE / "tracker.py")


# Each layer may import itself and the layers listed for it; nothing else of exptrack's.
# Dependencies point one way: cli / ui / integrations / importers -> repro -> tracker -> live ->
# (query, capture) -> store -> errors.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "store": {"errors"},
    "query": {"errors", "store"},
    "capture": {"errors"},
    "live": {"errors", "store", "query", "capture"},
    "tracker": {"errors", "store", "query", "capture", "live"},
    "repro": {"errors", "store", "query", "capture", "live", "tracker"},
    "ui": {"errors", "store", "query", "capture", "live", "tracker", "repro", "package"},
    "integrations": {"errors", "store", "query", "capture", "live", "tracker", "package"},
    "importers": {"errors", "store", "query", "capture", "live", "tracker", "package"},
    "cli": {"errors", "store", "query", "capture", "live", "tracker", "repro", "ui", "importers", "package"},
    "package": {"errors", "store", "query", "capture", "live", "tracker", "repro", "cli"},
}


def layer_of(module: str) -> str:
    """``exptrack.store.index.idmap`` -> ``store``; the package itself (``exptrack``) -> ``package``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__", "__main__"):
        return "package"
    return parts[1].removesuffix(".py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(PACKAGE.parent).as_posix())
def test_imports_point_down_the_layers(path: Path) -> None:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    layer = layer_of(module)
    assert layer in ALLOWED, f"{module} is in no known layer; add it to ALLOWED and ARCHITECTURE.md"
    upward = sorted(
        name for name in imported_modules(path)
        if name.split(".")[0] == "exptrack" and layer_of(name) not in ALLOWED[layer] | {layer}
    )
    assert not upward, f"{module} ({layer}) imports {upward}"


def test_every_module_is_on_the_architecture_map() -> None:
    """ARCHITECTURE.md has one line per module: a new module without its line fails here."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    missing = [
        path.relative_to(PACKAGE).as_posix() for path in SOURCES
        if path.name != "__init__.py" and path.relative_to(PACKAGE).as_posix() not in text
    ]
    assert not missing, f"modules missing from ARCHITECTURE.md: {missing}"


def test_the_live_run_and_the_tracker_do_not_import_each_other() -> None:
    assert not any(name.startswith("exptrack.tracker") for name in imported_modules(PACKAGE / "live" / "run.py"))


@pytest.mark.parametrize(
    "argv", [["--help"], ["log", "--param", "lr=0.1", "--metric", "acc=0.5"]], ids=["help", "log"]
)
def test_help_and_log_load_neither_multiprocessing_nor_the_scanners_nor_the_index(
    argv: list[str], tmp_path: Path
) -> None:
    code = (
        "import json, sys\n"
        "from exptrack.cli import main\n"
        f"sys.argv = ['exptrack', '--store', {str(tmp_path / 'store')!r}, *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    heavy = {"multiprocessing", "mmap", "exptrack.store.scan", "exptrack.store.fastscan", "exptrack.store.parallel",
             "exptrack.store.index.log_index", "exptrack.store.index.idmap"}
    assert not loaded & heavy, sorted(loaded & heavy)
    if argv == ["--help"]:  # help needs click and the command modules, not the store or its libraries
        store_side = {name for name in loaded if name.startswith(("exptrack.store", "exptrack.tracker"))}
        store_side |= loaded & {"orjson", "filelock"}
        assert not store_side, sorted(store_side)


@pytest.mark.parametrize(
    ("dependency", "owner"), [("orjson", "exptrack/store/codec.py"), ("filelock", "exptrack/store/fsio.py"),
                              ("msgspec", "exptrack/store/partial.py")]
)
def test_each_third_party_dependency_has_one_owner(dependency: str, owner: str) -> None:
    assert importers_of(dependency) == {owner}


def test_only_the_cli_package_imports_click() -> None:
    importers = importers_of("click")
    assert importers
    assert all(path.startswith("exptrack/cli/") for path in importers), importers


def test_the_core_never_imports_the_cli() -> None:
    outside = importers_of("exptrack.cli") - {"exptrack/__main__.py"}
    assert all(path.startswith("exptrack/cli/") for path in outside), outside


@pytest.mark.parametrize("layer", ["store", "query", "live", "capture", "repro"])
def test_the_core_layers_import_no_web_stack_and_no_framework(layer: str) -> None:
    frameworks = ("click", "starlette", "uvicorn", "plotly", "optuna", "sklearn", "keras", "ray", "mlflow")
    for path in (PACKAGE / layer).rglob("*.py"):
        found = {name.split(".")[0] for name in imported_modules(path)} & set(frameworks)
        assert not found, f"{path.relative_to(PACKAGE)} imports {sorted(found)}"


def test_importing_exptrack_loads_neither_click_nor_optional_libraries() -> None:
    code = (
        "import json, sys\n"
        "from exptrack import ExperimentTracker\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert "exptrack" in loaded
    assert "orjson" in loaded
    for heavy in ("click", "numpy", "pandas", "sklearn", "pyarrow"):
        assert heavy not in loaded, f"import exptrack pulled in {heavy}"


def test_public_surface_is_explicit() -> None:
    assert "ExperimentTracker" in exptrack.__all__
    for name in exptrack.__all__:
        assert hasattr(exptrack, name), name
    errors = [getattr(exptrack, name) for name in exptrack.__all__ if name.endswith("Error")]
    assert errors
    assert all(issubclass(error, exptrack.ExptrackError) for error in errors)


WEB_STACK = ("starlette", "uvicorn", "plotly", "selenium", "httpx", "httpx2", "anyio")


def test_only_the_ui_server_imports_the_web_stack() -> None:
    assert importers_of("starlette") == {"exptrack/ui/server.py"}
    assert importers_of("uvicorn") == {"exptrack/ui/serve.py"}
    assert importers_of("plotly") == set()  # its JavaScript bundle is found as a file, never imported
    assert all(path.startswith(("exptrack/ui/", "exptrack/cli/")) for path in importers_of("exptrack.ui"))


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("import exptrack", id="import exptrack"),
        pytest.param("from exptrack.cli import cli\ncli.main(['--help'], standalone_mode=False)", id="exptrack --help"),
        pytest.param("from exptrack.cli import cli\ncli.main(['ui', '--help'], standalone_mode=False)", id="ui --help"),
        pytest.param("import exptrack.ui.views", id="ui views"),
    ],
)
def test_the_web_stack_loads_only_when_serving(code: str) -> None:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=HANG_GUARD, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert not loaded & set(WEB_STACK), loaded & set(WEB_STACK)
