"""Printing many labels at once from Django pages (for example an admin action).

The gateway serves a batch as one merged PDF (or one ZIP) at
``/shipping-label/batch.pdf``: ``GET`` with ``t=`` repeated, or ``POST`` with
the same ``t`` form fields. :func:`print_selected_response` picks the form
that fits: a redirect to the GET URL for a short list, and for a long one a
page whose form POSTs the list to the gateway (a URL of hundreds of tracking
numbers is longer than many proxies and browsers accept).
"""

from __future__ import annotations

from typing import Iterable

from django.http import HttpResponse, HttpResponseRedirect
from django.utils.cache import patch_cache_control
from django.utils.html import escape

from .client import _tracking_list, batch_path, batch_url

__all__ = ["batch_url", "print_selected_response", "MAX_REDIRECT_LABELS", "MAX_REDIRECT_URL"]

#: At most this many labels go by redirect (a GET URL); more are POSTed.
MAX_REDIRECT_LABELS = 50
#: ... and only while the URL stays this short (long tracking numbers).
MAX_REDIRECT_URL = 2000

_FORM_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Printing {count} labels</title></head>
<body>
<form id="label-gateway-batch" method="post" action="{action}">
{fields}
<p><button type="submit" id="label-gateway-batch-submit">Print {count} labels</button></p>
</form>
<script>document.getElementById("label-gateway-batch").submit();</script>
</body>
</html>
"""


def print_selected_response(
    tracking_numbers: Iterable[str],
    kind: str = "pdf",
    *,
    partial: bool = False,
    max_redirect: int = MAX_REDIRECT_LABELS,
) -> HttpResponse:
    """A response that makes the browser open one batch of labels.

    Up to ``max_redirect`` labels (and a URL of at most
    :data:`MAX_REDIRECT_URL` characters): a 302 redirect to
    :func:`~label_gateway_django.client.batch_url`. More: a small HTML page
    whose form POSTs the ``t`` fields to the gateway's batch URL and submits
    itself (with a button for browsers that block the script). The form goes
    to the gateway, not to Django, so it carries no CSRF token.

    Raises ``ValueError`` for an empty list, an invalid tracking number or an
    unknown kind.
    """
    labels = _tracking_list(tracking_numbers)
    url = batch_url(labels, kind, partial=partial)
    if len(labels) <= max_redirect and len(url) <= MAX_REDIRECT_URL:
        response = HttpResponseRedirect(url)
    else:
        action = batch_path(kind) + ("?partial=1" if partial else "")
        fields = "\n".join(
            f'<input type="hidden" name="t" value="{escape(tracking)}">' for tracking in labels
        )
        page = _FORM_PAGE.format(count=len(labels), action=escape(action), fields=fields)
        response = HttpResponse(page, content_type="text/html; charset=utf-8")
    patch_cache_control(response, no_store=True)
    return response
