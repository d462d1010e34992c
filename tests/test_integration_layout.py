"""Each framework is imported by its own integration module only, and importing exptrack (or the
integrations package) loads none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_architecture import HANG_GUARD, importers_of

FRAMEWORKS = {
    "optuna": "exptrack/integrations/optuna.py",
    "keras": "exptrack/integrations/keras.py",
    "ray": "exptrack/integrations/ray.py",
    "sklearn": "exptrack/integrations/sklearn.py",
}


@pytest.mark.parametrize(("framework", "owner"), sorted(FRAMEWORKS.items()))
def test_each_framework_is_imported_only_by_its_integration(framework: str, owner: str) -> None:
    # the importer of that framework's own storage reads it through the framework too (optuna)
    importer = f"exptrack/importers/{framework}.py"
    assert importers_of(framework) - {importer} == {owner}


def test_importing_the_integrations_package_loads_no_framework() -> None:
    code = (
        "import json, sys\n"
        "import exptrack.integrations\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD,
                            check=False)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    for framework in ("optuna", "sklearn", "keras", "jax", "ray", "numpy"):
        assert framework not in loaded, f"import exptrack.integrations pulled in {framework}"
