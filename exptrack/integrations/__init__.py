"""Adapters from machine-learning frameworks to exptrack runs, one module per framework.

Each module imports its framework and nothing here does, so ``import exptrack.integrations``
costs nothing; install the matching extra (``pip install 'exptrack[optuna]'``) and import the
module you need: ``from exptrack.integrations.optuna import ExptrackCallback``.
"""
