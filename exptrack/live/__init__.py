"""The live run: a run in progress, its metric history, crash markers and the artifact store."""
