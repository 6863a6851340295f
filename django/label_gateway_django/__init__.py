"""Django side of label-gateway.

The gateway serves shipping-label PDFs to logged-in Django users. This app
gives it two internal endpoints (a session check and a label-regeneration
hook, see :mod:`label_gateway_django.views`), a small client for the
gateway's internal API (:mod:`label_gateway_django.client`: ingest, purge,
warm-up, session revoke), handlers that revoke ended sessions on the gateway
(logout, password change, deactivation, deletion:
:mod:`label_gateway_django.signals`, :mod:`label_gateway_django.sessions`),
system checks (:mod:`label_gateway_django.checks`) and batch-printing helpers
(:mod:`label_gateway_django.printing`).
"""

import re

__version__ = "0.1.0"

#: Characters and length allowed in a tracking number, shared by the URL
#: patterns and the client so that nothing else is ever put into a path.
TRACKING_PATTERN = r"[A-Za-z0-9_-]{1,64}"

TRACKING_RE = re.compile(TRACKING_PATTERN)


def is_valid_tracking(tracking: object) -> bool:
    """Return True when ``tracking`` is a well-formed tracking number."""
    return isinstance(tracking, str) and TRACKING_RE.fullmatch(tracking) is not None
