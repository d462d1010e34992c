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
            elif node.module:
                names.add(node.module)
    return names


def importers_of(module: str) -> set[str]:
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in SOURCES
        if any(name == module or name.startswith(module + ".") for name in imported_modules(path))
    }


def test_the_scan_sees_the_package() -> None:
    relative = {path.relative_to(PACKAGE.parent).as_posix() for path in SOURCES}
    assert {"exptrack/codec.py", "exptrack/_fs.py", "exptrack/tracker.py", "exptrack/cli/_app.py"} <= relative
    assert "exptrack.codec" in imported_modules(PACKAGE / "tracker.py")  # `from . import codec`


@pytest.mark.parametrize(("dependency", "owner"), [("orjson", "exptrack/codec.py"), ("filelock", "exptrack/_fs.py")])
def test_each_third_party_dependency_has_one_owner(dependency: str, owner: str) -> None:
    assert importers_of(dependency) == {owner}


def test_only_the_cli_package_imports_click() -> None:
    importers = importers_of("click")
    assert importers
    assert all(path.startswith("exptrack/cli/") for path in importers), importers


def test_the_core_never_imports_the_cli() -> None:
    outside = importers_of("exptrack.cli") - {"exptrack/__main__.py"}
    assert all(path.startswith("exptrack/cli/") for path in outside), outside


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
