"""Per-process counters of the calls the gateway makes to this project.

runserver handles requests in threads of one process, so a module-level
dict behind a lock is enough.
"""

import threading
from collections import Counter

ENDPOINTS = ("label-access", "label-regenerate")

_lock = threading.Lock()
_counts = {endpoint: Counter() for endpoint in ENDPOINTS}


def record(endpoint, tracking):
    with _lock:
        _counts[endpoint][tracking] += 1


def snapshot():
    """Return ``{endpoint: {"total": n, "by_tracking": {tracking: n}}}``."""
    with _lock:
        return {
            endpoint: {"total": sum(counts.values()), "by_tracking": dict(counts)}
            for endpoint, counts in _counts.items()
        }


def reset():
    with _lock:
        for counts in _counts.values():
            counts.clear()
