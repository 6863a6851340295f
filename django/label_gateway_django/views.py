"""Internal endpoints called by the label gateway, never by browsers.

``label_access``
    The gateway forwards the caller's session cookie; 204 means "this user
    may read this label", 403 means "no". It never redirects to a login page.

``label_regenerate``
    The gateway asks for a label it could not find in the bucket. Protected
    by a shared bearer token; the project supplies the function that builds
    (or locates) the PDF.

Settings (all optional except where noted):

``LABEL_GATEWAY_ACCESS_CHECK``
    Dotted path to ``hook(request, user, tracking) -> bool``. When absent,
    every authenticated user may read every label.
``LABEL_GATEWAY_AUDIT_USER``
    Who a 204 names in ``X-Label-User``, which the gateway writes into its
    access log (the audit trail of who printed which label): ``"username"``
    (the default, ``user.get_username()``), ``"pk"`` (the primary key, for
    logs that must not hold names) or ``None`` (no header).
``LABEL_GATEWAY_REGENERATE_TOKEN``
    Bearer token the gateway sends to ``label_regenerate``. Required: when
    empty, regeneration is refused (fails closed).
``LABEL_GATEWAY_REGENERATE``
    Dotted path to ``fn(tracking) -> bytes | str | None``: the PDF itself, a
    URL to download it from, or None when no label exists. Required for
    regeneration.
``LABEL_GATEWAY_TRACKING_URL``
    Dotted path to ``fn(tracking) -> str | None``, the public tracking page
    offered to users when no label exists.
``LABEL_GATEWAY_FETCH_TIMEOUT``
    Seconds allowed for downloading a label URL (default 20).
``LABEL_GATEWAY_FETCH_MAX_BYTES``
    Largest label accepted from a URL (default 32 MiB).
"""

from __future__ import annotations

import functools
import hmac
import http.client
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

logger = logging.getLogger(__name__)

PDF_MAGIC = b"%PDF-"
DEFAULT_FETCH_TIMEOUT = 20.0
DEFAULT_FETCH_MAX_BYTES = 32 * 1024 * 1024
NOT_CONFIGURED = "label regeneration is not configured on this server"
AUDIT_USER_HEADER = "X-Label-User"
AUDIT_USER_MODES = ("username", "pk", None)


@functools.lru_cache(maxsize=None)
def _import(dotted_path: str) -> Callable:
    # Keyed by the path itself, so a changed setting picks up a new callable.
    return import_string(dotted_path)


def _setting_callable(name: str) -> Callable | None:
    dotted_path = getattr(settings, name, None)
    return _import(dotted_path) if dotted_path else None


def _no_store(response: HttpResponse) -> HttpResponse:
    patch_cache_control(response, no_store=True)
    return response


def _json_error(message: str, status: int) -> HttpResponse:
    return _no_store(JsonResponse({"error": message}, status=status))


# --- session check ---------------------------------------------------------


@csrf_exempt  # read-only; exempt so other methods get 405, not a CSRF 403
@require_http_methods(["GET", "HEAD"])
def label_access(request: HttpRequest, tracking: str) -> HttpResponse:
    """Answer 204 when the session's user may read ``tracking``, else 403.

    Only reads the session (through ``request.user``); it never modifies it,
    so no session is created and no cookie is issued for a valid session.
    """
    user = request.user
    allowed = user.is_authenticated and _access_hook_allows(request, user, tracking)
    if allowed:
        response = HttpResponse(status=204)
        del response["Content-Type"]
        audit_user = _audit_user(user)
        if audit_user:
            response[AUDIT_USER_HEADER] = audit_user
    else:
        response = HttpResponse("forbidden\n", status=403, content_type="text/plain")
    patch_vary_headers(response, ("Cookie",))
    return _no_store(response)


def audit_user_setting():
    """``LABEL_GATEWAY_AUDIT_USER``, or ImproperlyConfigured naming it."""
    mode = getattr(settings, "LABEL_GATEWAY_AUDIT_USER", "username")
    if mode not in AUDIT_USER_MODES:
        raise ImproperlyConfigured(
            f"LABEL_GATEWAY_AUDIT_USER must be 'username', 'pk' or None, not {mode!r}"
        )
    return mode


def check_settings(app_configs=None, **kwargs):
    """Django system check: a bad ``LABEL_GATEWAY_AUDIT_USER`` is reported at start-up
    (``manage.py check``, ``runserver``), not first by a failing session check."""
    try:
        audit_user_setting()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="label_gateway_django.E001")]
    return []


def _audit_user(user) -> str | None:
    """The user as ``X-Label-User`` names it: percent-encoded UTF-8 (letters, digits and
    ``@ . + - _ ~`` as they are), so any username is one printable ASCII token that reads
    back unambiguously in the gateway's log."""
    mode = audit_user_setting()
    if mode is None:
        return None
    value = user.get_username() if mode == "username" else user.pk
    return urllib.parse.quote(str(value), safe="@+") or None


def _access_hook_allows(request: HttpRequest, user, tracking: str) -> bool:
    if not getattr(settings, "LABEL_GATEWAY_ACCESS_CHECK", None):
        return True
    try:
        hook = _setting_callable("LABEL_GATEWAY_ACCESS_CHECK")
        return bool(hook(request, user, tracking))
    except Exception:
        # Fail closed: a broken or unimportable hook must not grant access.
        logger.exception(
            "LABEL_GATEWAY_ACCESS_CHECK failed for tracking %s (request id %s)",
            tracking,
            _request_id(request),
        )
        return False


# --- regeneration ----------------------------------------------------------


@csrf_exempt
@require_POST
def label_regenerate(request: HttpRequest, tracking: str) -> HttpResponse:
    """Produce the PDF for ``tracking`` on the gateway's behalf.

    200 with the PDF; 404 with ``{"tracking_url": ...}`` when no label exists;
    502 with ``{"error": ...}`` when the project function or the download
    fails; 401 for a missing or wrong token; 503 when not configured.
    """
    expected = getattr(settings, "LABEL_GATEWAY_REGENERATE_TOKEN", None)
    if not expected:
        logger.error("LABEL_GATEWAY_REGENERATE_TOKEN is not set; refusing label regeneration")
        return _json_error(NOT_CONFIGURED, 503)
    if not _bearer_matches(request, expected):
        response = _json_error("missing or invalid bearer token", 401)
        response["WWW-Authenticate"] = "Bearer"
        return response

    try:
        regenerate = _setting_callable("LABEL_GATEWAY_REGENERATE")
    except ImportError:
        logger.exception("LABEL_GATEWAY_REGENERATE cannot be imported")
        return _json_error(NOT_CONFIGURED, 503)
    if regenerate is None:
        logger.error("LABEL_GATEWAY_REGENERATE is not set; refusing label regeneration")
        return _json_error(NOT_CONFIGURED, 503)

    try:
        result = regenerate(tracking)
    except Exception as exc:
        logger.exception(
            "label regeneration failed for tracking %s (request id %s)",
            tracking,
            _request_id(request),
        )
        return _json_error(f"label regeneration failed: {type(exc).__name__}", 502)

    if result is None:
        return _no_store(JsonResponse({"tracking_url": _tracking_url(tracking)}, status=404))
    if isinstance(result, str):
        try:
            result = _download(result)
        except _DownloadError as exc:
            logger.warning(
                "label download failed for tracking %s (request id %s): %s",
                tracking,
                _request_id(request),
                exc,
            )
            return _json_error(str(exc), 502)
    elif isinstance(result, (bytearray, memoryview)):
        result = bytes(result)
    elif not isinstance(result, bytes):
        logger.error(
            "LABEL_GATEWAY_REGENERATE returned %s for tracking %s",
            type(result).__name__,
            tracking,
        )
        return _json_error("label regeneration returned an unsupported value", 502)

    if not result.startswith(PDF_MAGIC):
        return _json_error("regenerated label is not a PDF", 502)
    return _no_store(HttpResponse(result, content_type="application/pdf"))


def _bearer_matches(request: HttpRequest, expected: str) -> bool:
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(supplied.strip().encode(), expected.encode())


def _tracking_url(tracking: str) -> str | None:
    try:
        fn = _setting_callable("LABEL_GATEWAY_TRACKING_URL")
        return fn(tracking) if fn is not None else None
    except Exception:
        logger.exception("LABEL_GATEWAY_TRACKING_URL failed for tracking %s", tracking)
        return None


def _request_id(request: HttpRequest) -> str:
    return request.headers.get("X-Request-Id", "-")


class _DownloadError(Exception):
    """A label URL could not be turned into PDF bytes; the message is safe to return."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise _DownloadError("label URL redirected to a non-HTTP(S) location")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def _download(url: str) -> bytes:
    """Download a label from an http(s) URL, bounded in time and size."""
    if urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        raise _DownloadError("label URL must use http or https")
    timeout = float(getattr(settings, "LABEL_GATEWAY_FETCH_TIMEOUT", DEFAULT_FETCH_TIMEOUT))
    max_bytes = int(getattr(settings, "LABEL_GATEWAY_FETCH_MAX_BYTES", DEFAULT_FETCH_MAX_BYTES))
    request = urllib.request.Request(url, headers={"Accept": "application/pdf"})
    try:
        with _opener.open(request, timeout=timeout) as response:
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise _DownloadError(f"label download failed: HTTP {exc.code}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _DownloadError(f"label download failed: {reason}") from exc
    if len(data) > max_bytes:
        raise _DownloadError(f"label download exceeds {max_bytes} bytes")
    if not data.startswith(PDF_MAGIC):
        raise _DownloadError("downloaded label is not a PDF")
    return data
