"""Internal endpoints called by the label gateway, never by browsers.

``label_access``
    The gateway forwards the caller's session cookie; 204 means "this user
    may read this label", 403 means "no", 503 "cannot say now" (the hook
    failed; the gateway never caches it). It never redirects to a login page
    and never writes the session.

``label_regenerate``
    The gateway asks for a label it could not find in the bucket. Protected
    by a shared bearer token; the project supplies the function that builds
    (or locates) the PDF.

Settings (all optional except where noted):

``LABEL_GATEWAY_ACCESS_CHECK``
    Dotted path to a plain function ``hook(request, user, tracking)``; only
    ``True`` allows. When absent, every authenticated user may read every
    label (system check W001).
``LABEL_GATEWAY_AUDIT_USER``
    Who a 204 names in ``X-Label-User``, which the gateway writes into its
    access log (the audit trail of who printed which label): ``"username"``
    (the default, ``user.get_username()``), ``"pk"`` (the primary key, for
    logs that must not hold names) or ``None`` (no header).
``LABEL_GATEWAY_REGENERATE_TOKEN``
    Bearer token the gateway sends to ``label_regenerate`` (surrounding
    whitespace stripped; visible ASCII only). Required: when empty,
    regeneration is refused (fails closed).
``LABEL_GATEWAY_REGENERATE``
    Dotted path to ``fn(tracking) -> bytes | str | None``: the PDF itself, a
    URL to download it from, or None when no label exists. Required for
    regeneration.
``LABEL_GATEWAY_TRACKING_URL``
    Dotted path to ``fn(tracking) -> str | None``, the public tracking page
    offered to users when no label exists.
``LABEL_GATEWAY_FETCH_TIMEOUT``
    Seconds allowed for downloading a label URL, redirects included, as a
    wall-clock deadline (default 20).
``LABEL_GATEWAY_FETCH_ALLOW_PRIVATE``
    ``"ip:port"`` pairs a label download may reach although not public (a
    test carrier, an on-premises mirror). Default none.
``LABEL_GATEWAY_FETCH_MAX_BYTES``
    Largest label accepted from a URL (default 32 MiB).
"""

from __future__ import annotations

import functools
import hmac
import inspect
import logging
import time
import urllib.parse
from importlib import import_module
from typing import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from . import _http, netguard
from .checks import check_settings  # noqa: F401  (registered by the app config)
from .client import clean_token

try:  # Django 5.1+: LoginRequiredMiddleware would answer the gateway with a redirect
    from django.contrib.auth.decorators import login_not_required as _login_not_required
except ImportError:  # older Django has no such middleware: nothing to exempt from

    def _login_not_required(view_func):
        return view_func


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


@_login_not_required
@csrf_exempt  # read-only; exempt so other methods get 405, not a CSRF 403
@require_http_methods(["GET", "HEAD"])
def label_access(request: HttpRequest, tracking: str) -> HttpResponse:
    """Answer 204 when the session's user may read ``tracking``, 403 when not, and 503
    when the answer cannot be given (the ownership hook failed): the gateway caches
    neither a 503 nor anything it did not understand, and tells the caller to retry.

    Only reads the session, from the cookie, through a store of its own: it never
    saves, re-keys or flushes it, whatever ``SESSION_SAVE_EVERY_REQUEST`` says or a
    ``SECRET_KEY_FALLBACKS`` rotation would have Django do, and issues no cookie.
    """
    session = _read_session(request)
    user = _session_user(session)
    # Whatever runs after this (the hook, the middleware's answer) sees this user and this
    # read-only session, never the lazy ones that would write.
    request.user = user
    request.session = session
    if not user.is_authenticated:
        return _access_answer(403)
    verdict = _access_hook_verdict(request, user, tracking)
    if verdict is _HOOK_FAULT:
        return _access_answer(503)
    if verdict is not True:
        return _access_answer(403)
    response = _access_answer(204)
    audit_user = _audit_user(user)
    if audit_user:
        response[AUDIT_USER_HEADER] = audit_user
    return response


def _access_answer(status: int) -> HttpResponse:
    if status == 204:
        response = HttpResponse(status=204)
        del response["Content-Type"]
    elif status == 503:
        response = HttpResponse("unavailable, retry\n", status=503, content_type="text/plain")
    else:
        response = HttpResponse("forbidden\n", status=403, content_type="text/plain")
    patch_vary_headers(response, ("Cookie",))
    return _no_store(response)


class _ReadOnlySession:
    """The session as the check sees it: its data, read once, and nothing that writes.

    It has none of the attributes ``SessionMiddleware`` reads on the way out
    (``accessed``, ``modified``), so the middleware leaves the answer alone: no save, no
    cookie, even with ``SESSION_SAVE_EVERY_REQUEST``.
    """

    def __init__(self, session_key: str | None, data: dict):
        self.session_key = session_key
        self._data = data

    def __getitem__(self, key):
        return self._data[key]

    def __contains__(self, key):
        return key in self._data

    def get(self, key, default=None):
        return self._data.get(key, default)

    def keys(self):
        return self._data.keys()

    def items(self):
        return self._data.items()


def _read_session(request: HttpRequest) -> _ReadOnlySession:
    key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return _ReadOnlySession(None, {})
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    # load() reads; for an unknown or expired key it gives {} (and never saves).
    data = store.load()
    return _ReadOnlySession(key if data else None, data if isinstance(data, dict) else {})


def _session_user(session: _ReadOnlySession):
    """``django.contrib.auth.get_user`` without its writes: the same backend and session
    hash checks (the hash against ``SECRET_KEY`` and each of ``SECRET_KEY_FALLBACKS``),
    but a session signed with a fallback key is not re-keyed, and a session that fails
    is refused without being flushed. Django does either on the user's next page."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth import get_user_model, load_backend
    from django.contrib.auth.models import AnonymousUser

    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return AnonymousUser()
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user = load_backend(backend_path).get_user(user_id)
    if user is None:
        return AnonymousUser()
    if hasattr(user, "get_session_auth_hash"):
        session_hash = session.get(HASH_SESSION_KEY)
        if not isinstance(session_hash, str) or not session_hash:
            return AnonymousUser()
        hashes = [user.get_session_auth_hash()]
        fallbacks = getattr(user, "get_session_auth_fallback_hash", None)
        if fallbacks is not None:
            hashes.extend(fallbacks())
        if not any(constant_time_compare(session_hash, h) for h in hashes):
            return AnonymousUser()
    return user


def audit_user_setting():
    """``LABEL_GATEWAY_AUDIT_USER``, or ImproperlyConfigured naming it."""
    mode = getattr(settings, "LABEL_GATEWAY_AUDIT_USER", "username")
    if mode not in AUDIT_USER_MODES:
        raise ImproperlyConfigured(
            f"LABEL_GATEWAY_AUDIT_USER must be 'username', 'pk' or None, not {mode!r}"
        )
    return mode


def _audit_user(user) -> str | None:
    """The user as ``X-Label-User`` names it: percent-encoded UTF-8 (letters, digits and
    ``@ . + - _ ~`` as they are), so any username is one printable ASCII token that reads
    back unambiguously in the gateway's log."""
    mode = audit_user_setting()
    if mode is None:
        return None
    value = user.get_username() if mode == "username" else user.pk
    return urllib.parse.quote(str(value), safe="@+") or None


_HOOK_FAULT = object()


def _access_hook_verdict(request: HttpRequest, user, tracking: str):
    """True to allow; anything else denies. ``_HOOK_FAULT`` when the hook is missing
    where configured or raised: the answer is then 503, which the gateway never caches."""
    path = getattr(settings, "LABEL_GATEWAY_ACCESS_CHECK", None)
    if path is None:
        return True  # no hook: every authenticated user (the system check warns)
    try:
        if not isinstance(path, str) or not path:
            raise ImproperlyConfigured("LABEL_GATEWAY_ACCESS_CHECK is set but empty")
        result = _import(path)(request, user, tracking)
    except Exception:
        logger.exception(
            "LABEL_GATEWAY_ACCESS_CHECK failed for tracking %s (request id %s); answered 503",
            tracking,
            _request_id(request),
        )
        return _HOOK_FAULT
    if result is True or result is False:
        return result
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if callable(close):
            close()  # never run, and no "was never awaited" warning
        logger.error(
            "LABEL_GATEWAY_ACCESS_CHECK returned an awaitable (an async hook?); it must be a "
            "plain function returning True or False. Denied."
        )
    else:
        logger.error(
            "LABEL_GATEWAY_ACCESS_CHECK returned %s, not True or False. Denied.",
            type(result).__name__,
        )
    return False


# --- regeneration ----------------------------------------------------------


@_login_not_required
@csrf_exempt
@require_POST
def label_regenerate(request: HttpRequest, tracking: str) -> HttpResponse:
    """Produce the PDF for ``tracking`` on the gateway's behalf.

    200 with the PDF; 404 with ``{"tracking_url": ...}`` when no label exists;
    502 with ``{"error": ...}`` when the project function or the download
    fails; 401 for a missing or wrong token; 503 when not configured.
    """
    try:
        # Stripped like the token supplied: a secrets file's trailing newline is no part of it.
        expected = clean_token(
            getattr(settings, "LABEL_GATEWAY_REGENERATE_TOKEN", None),
            "LABEL_GATEWAY_REGENERATE_TOKEN",
        )
    except ImproperlyConfigured as exc:
        logger.error("%s; refusing label regeneration", exc)
        return _json_error(NOT_CONFIGURED, 503)
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
            return _json_error(DOWNLOAD_FAILED, 502)
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
    """A label URL could not be turned into PDF bytes. Its text is for the log only; the
    gateway is told :data:`DOWNLOAD_FAILED`, whatever went wrong, so that the answer
    tells nothing about what listens at an address."""


DOWNLOAD_FAILED = "label download failed"
#: Redirects a label download follows at most, each held to the same rules.
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


def _download(url: str) -> bytes:
    """Download a label from an http(s) URL within a wall-clock deadline and a size bound.

    Every hop (the URL and each redirect) must resolve to public addresses only, unless
    its ``ip:port`` is listed in ``LABEL_GATEWAY_FETCH_ALLOW_PRIVATE``, and is connected
    at the address that was checked; a redirect from https to http is refused; no proxy
    from the environment is used.
    """
    timeout = float(getattr(settings, "LABEL_GATEWAY_FETCH_TIMEOUT", DEFAULT_FETCH_TIMEOUT))
    max_bytes = int(getattr(settings, "LABEL_GATEWAY_FETCH_MAX_BYTES", DEFAULT_FETCH_MAX_BYTES))
    allow_private = netguard.allowed_pairs(
        getattr(settings, "LABEL_GATEWAY_FETCH_ALLOW_PRIVATE", ())
    )
    deadline = time.monotonic() + timeout

    def job(aborter: _http.Aborter) -> bytes:
        return _download_hops(aborter, url, deadline, max_bytes, allow_private)

    (result,) = _http.run_all([job], deadline)
    if isinstance(result, _DownloadError):
        raise result
    if isinstance(result, BaseException):
        raise _DownloadError(_http.describe(result)) from None
    if not result.startswith(PDF_MAGIC):
        raise _DownloadError("not a PDF")
    return result


def _download_hops(aborter, url: str, deadline: float, max_bytes: int, allow_private) -> bytes:
    secure = False
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _DownloadError("not an http(s) URL")
        if secure and scheme != "https":
            raise _DownloadError("redirect from https to http")
        secure = scheme == "https"
        address = netguard.checked_address(parts, allow_private)
        response = _http.exchange(
            aborter,
            "GET",
            url,
            headers={"Accept": "application/pdf"},
            deadline=deadline,
            max_body=lambda status: max_bytes if status == 200 else 0,
            address=address,
        )
        if response.status in _REDIRECTS and response.headers.get("Location"):
            url = urllib.parse.urljoin(url, response.headers["Location"])
            continue
        if response.status != 200:
            raise _DownloadError(f"HTTP {response.status}")
        return response.body
    raise _DownloadError("too many redirects")
