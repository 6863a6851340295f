"""Per-process counters of the calls the gateway makes to this project.

runserver handles requests in threads of one process, so a module-level
dict behind a lock is enough.
"""

import threading
from collections import Counter

ENDPOINTS = ("label-access", "label-regenerate")

_lock = threading.Lock()
_counts = {endpoint: Counter() for endpoint in ENDPOINTS}
_forwarded = {}


def record(endpoint, tracking):
    with _lock:
        _counts[endpoint][tracking] += 1


def record_forwarded(tracking, headers):
    """Keep the X-Forwarded-* headers of the latest call for ``tracking``."""
    with _lock:
        _forwarded[tracking] = headers


def snapshot():
    """Return ``{endpoint: {"total": n, "by_tracking": {tracking: n}}}``, plus
    ``"forwarded": {tracking: {"for", "proto", "host"}}`` of the latest calls."""
    with _lock:
        out = {
            endpoint: {"total": sum(counts.values()), "by_tracking": dict(counts)}
            for endpoint, counts in _counts.items()
        }
        out["forwarded"] = dict(_forwarded)
        return out


def reset():
    with _lock:
        for counts in _counts.values():
            counts.clear()
        _forwarded.clear()
