"""The index: a disposable cache beside ``runs.jsonl`` that answers best / top / summary / id lookups fast.

The package itself imports nothing, so reaching one of its modules does not load the others.
"""
