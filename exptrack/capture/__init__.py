"""Reproducibility capture: code state, data fingerprints, system facts and the invocation.

Each part is independent and fails softly: it never raises, and a field says why something is
missing. Results are plain JSON-able dicts (large bytes, such as a patch, travel separately).
"""

from exptrack.capture.cache import FingerprintCache
from exptrack.capture.data import compare_data, fingerprint_data
from exptrack.capture.git import CodeState, capture_code, code_restore_steps, compare_code
from exptrack.capture.invocation import capture_invocation, command_line
from exptrack.capture.system import SystemInfo, capture_system, compare_system

__all__ = [
    "CodeState",
    "FingerprintCache",
    "SystemInfo",
    "capture_code",
    "capture_invocation",
    "capture_system",
    "code_restore_steps",
    "command_line",
    "compare_code",
    "compare_data",
    "compare_system",
    "fingerprint_data",
]
