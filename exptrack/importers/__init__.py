"""Importers: other trackers' stores into exptrack runs (``exptrack import mlflow|optuna``).

Each importer lives in its own module and imports its source's library only there:
:func:`exptrack.importers.mlflow.import_mlflow` and :func:`exptrack.importers.optuna.import_optuna`.
Both return an :class:`ImportResult`; importing the same source again adds nothing new.
"""

from exptrack.importers._common import ImportResult

__all__ = ["ImportResult"]
