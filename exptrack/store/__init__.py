"""The log file and everything that knows its bytes: records, codec, the locked append, readers, index.

Nothing here imports from the layers above (query, live, repro, the tracker, the CLI).
"""

RUNS_FILE = "runs.jsonl"
"""The log's file name inside a store directory."""
