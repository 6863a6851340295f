"""Client for the label gateway's internal ingest API (standard library only).

Configuration comes from keyword arguments or, when those are omitted, from
the Django settings ``LABEL_GATEWAY_URL`` (e.g. ``http://127.0.0.1:8080``)
and ``LABEL_GATEWAY_INTERNAL_TOKEN``. Django settings need not be configured
when both are passed explicitly::

    from label_gateway_django.client import upload_label

    upload_label("1Z999", pdf_bytes, overwrite=True)
    upload_label("1Z999", pdf_bytes, base_url="http://127.0.0.1:8080", token="...")

Failures raise :class:`LabelGatewayError`. The token is only ever sent in the
``Authorization`` header; it never appears in an exception or a log line.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import is_valid_tracking

DEFAULT_TIMEOUT = 30.0
_MAX_ERROR_BODY = 64 * 1024

__all__ = ["LabelGatewayError", "upload_label", "fetch_label", "purge_label"]


class LabelGatewayError(Exception):
    """The gateway refused a request or could not be reached.

    ``status`` is the HTTP status code, or None when no response arrived;
    ``message`` is the gateway's JSON ``error`` text when it sent one.
    """

    def __init__(self, status: int | None, message: str):
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        if self.status is None:
            return f"label gateway unreachable: {self.message}"
        return f"label gateway returned HTTP {self.status}: {self.message}"


def upload_label(
    tracking: str,
    data: bytes,
    *,
    overwrite: bool = False,
    base_url: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Store ``data`` as the label PDF for ``tracking``.

    Returns the gateway's ``{"key", "size", "etag"}``. Without ``overwrite``
    the gateway refuses to replace an existing label.
    """
    query = {"overwrite": "true"} if overwrite else None
    return _call(
        "PUT",
        f"/internal/labels/{_path_segment(tracking)}",
        query=query,
        body=bytes(data),
        content_type="application/pdf",
        base_url=base_url,
        token=token,
        timeout=timeout,
    )


def fetch_label(
    tracking: str,
    url: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Ask the gateway to download the label for ``tracking`` from ``url`` and store it."""
    return _call(
        "POST",
        f"/internal/labels/{_path_segment(tracking)}/fetch",
        body=json.dumps({"url": url}).encode(),
        content_type="application/json",
        base_url=base_url,
        token=token,
        timeout=timeout,
    )


def purge_label(
    tracking: str,
    *,
    base_url: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> None:
    """Drop ``tracking`` from the gateway's hot-label cache."""
    _call(
        "DELETE",
        f"/internal/cache/{_path_segment(tracking)}",
        base_url=base_url,
        token=token,
        timeout=timeout,
    )


def _path_segment(tracking: str) -> str:
    if not is_valid_tracking(tracking):
        raise ValueError(f"invalid tracking number: {tracking!r}")
    return tracking


def _setting(name: str) -> Any:
    try:
        from django.conf import settings

        return getattr(settings, name, None)
    except ImproperlyConfigured:  # used outside a configured Django project
        return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the bearer token to another URL: treat it as an error.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _call(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    base_url: str | None,
    token: str | None,
    timeout: float | None,
) -> Any:
    base_url = base_url or _setting("LABEL_GATEWAY_URL")
    token = token or _setting("LABEL_GATEWAY_INTERNAL_TOKEN")
    if not base_url:
        raise ImproperlyConfigured("LABEL_GATEWAY_URL is not set and no base_url was given")
    if not token:
        raise ImproperlyConfigured("LABEL_GATEWAY_INTERNAL_TOKEN is not set and no token was given")

    url = base_url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, headers=headers, method=method)

    try:
        with _opener.open(request, timeout=timeout or DEFAULT_TIMEOUT) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        message = _error_message(exc)
        exc.close()
        raise LabelGatewayError(exc.code, message) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise LabelGatewayError(None, str(getattr(exc, "reason", exc))) from None

    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        raise LabelGatewayError(response.status, "response is not valid JSON") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read(_MAX_ERROR_BODY)
    except (OSError, http.client.HTTPException):
        body = b""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str) and error:
        return error
    text = body.decode("utf-8", "replace").strip()[:200]
    return text or exc.reason or http.client.responses.get(exc.code, "error")
