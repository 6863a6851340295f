"""Client for the label gateway's internal API (standard library only).

The internal routes (``/internal/...``) answer only on the gateway's internal
listener (``[server] internal_listen``, default ``http://127.0.0.1:9090``),
never on the public port 8080. Configuration comes from keyword arguments or,
when those are omitted, from the Django settings:

``LABEL_GATEWAY_URL``
    Base URL of the internal listener, e.g. ``http://127.0.0.1:9090``; behind
    a fleet, the internal nginx upstream that hashes by tracking number.
``LABEL_GATEWAY_INTERNAL_URLS``
    Base URLs of *every* gateway copy's internal listener, for calls that each
    copy must see (:func:`revoke_session`). Default ``[LABEL_GATEWAY_URL]``.
``LABEL_GATEWAY_INTERNAL_TOKEN``
    The bearer token (the gateway's ``LABEL_GATEWAY_INTERNAL__TOKEN``).

Django settings need not be configured when the values are passed
explicitly::

    from label_gateway_django.client import upload_label

    upload_label("1Z999", pdf_bytes, overwrite=True)
    upload_label("1Z999", pdf_bytes, base_url="http://127.0.0.1:9090", token="...")

Single-label calls raise :class:`LabelGatewayError` on failure;
:func:`warm_labels` and :func:`revoke_session` report per label / per gateway
instead. The token is only ever sent in the ``Authorization`` header; it never
appears in an exception or a log line (a failure to reach the gateway is told in
fixed words, never an exception's own text, which could quote the header).

Every call talks to the configured URL and nothing else: no proxy from the
environment (``HTTP_PROXY`` would otherwise see the bearer token), no redirect
followed, no ``file:``, ``ftp:`` or ``data:`` URL. Each call's ``timeout`` is a
wall-clock deadline for the whole call, not a bound on each socket read.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from django.core.exceptions import ImproperlyConfigured

from . import _http, is_valid_tracking

DEFAULT_TIMEOUT = 30.0
#: Logout waits at most this long for each gateway (they are asked in parallel).
REVOKE_TIMEOUT = 2.0
_MAX_ERROR_BODY = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_BATCH_KINDS = ("pdf", "zip")

__all__ = [
    "LabelGatewayError",
    "upload_label",
    "fetch_label",
    "purge_label",
    "warm_labels",
    "revoke_session",
    "revoke_sessions",
    "clean_token",
    "internal_urls",
    "batch_url",
]


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


def warm_labels(
    tracking_numbers: Iterable[str],
    concurrency: int = 8,
    *,
    base_url: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> dict[str, list]:
    """Load labels into the gateway's hot cache ahead of the users who will print them.

    One ``PUT /internal/cache/{tracking}`` per label, at most ``concurrency``
    at a time, so that behind a fleet that hashes by tracking number each
    label warms the copy that will serve it. Returns the tracking numbers,
    each list in the order given (duplicates asked once)::

        {"cached":  [...],   # 204: in the hot cache now
         "missing": [...],   # 404: storage has no such label
         "refused": [...],   # 409: cannot be cached (too large, or the cache is off)
         "failed":  [...]}   # anything else, the gateway unreachable, or an
                             # invalid tracking number (never sent)

    Never raises for a label's outcome; raises ``ImproperlyConfigured`` when
    no base URL or token is configured, ``ValueError`` for ``concurrency < 1``.
    Every label coming back ``missing`` usually means ``LABEL_GATEWAY_URL``
    points at the public port instead of the internal listener.
    """
    if isinstance(tracking_numbers, str):
        raise ValueError("tracking_numbers must be a list of tracking numbers, not one string")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    base_url, token = _config(base_url, token)

    # Keyed so that duplicates are asked once and a non-string (say None)
    # never collides with a string (say "None").
    def key(tracking: Any) -> tuple[bool, str]:
        return (True, tracking) if isinstance(tracking, str) else (False, repr(tracking))

    outcome: dict[tuple[bool, str], str] = {}
    ordered: list = []
    todo: list[str] = []
    for tracking in tracking_numbers:
        if key(tracking) in outcome:
            continue
        ordered.append(tracking)
        if is_valid_tracking(tracking):
            outcome[key(tracking)] = "pending"
            todo.append(tracking)
        else:
            outcome[key(tracking)] = "failed"

    def warm(tracking: str) -> str:
        try:
            _send(
                "PUT",
                _join(base_url, f"/internal/cache/{tracking}"),
                token=token,
                body=b"",
                timeout=timeout,
            )
        except LabelGatewayError as exc:
            return {404: "missing", 409: "refused"}.get(exc.status, "failed")
        return "cached"

    if todo:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(todo))) as pool:
            for tracking, result in zip(todo, pool.map(warm, todo)):
                outcome[key(tracking)] = result

    results: dict[str, list] = {"cached": [], "missing": [], "refused": [], "failed": []}
    for tracking in ordered:
        results[outcome[key(tracking)]].append(tracking)
    return results


def internal_urls() -> list[str]:
    """Base URLs of every gateway copy's internal listener, from the settings.

    ``LABEL_GATEWAY_INTERNAL_URLS`` (a list, or one comma-separated string)
    when set, even to an empty list; otherwise ``[LABEL_GATEWAY_URL]`` when
    that is set; otherwise ``[]``.
    """
    urls = _setting("LABEL_GATEWAY_INTERNAL_URLS")
    if urls is None:
        single = _setting("LABEL_GATEWAY_URL")
        return [single] if single else []
    if isinstance(urls, str):
        urls = urls.split(",")
    return [url.strip() for url in urls if url and url.strip()]


def revoke_session(
    session_key: str,
    *,
    base_urls: Iterable[str] | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> dict[str, LabelGatewayError | None]:
    """Make every gateway copy forget its cached session-check verdicts for a session.

    Sends ``POST /internal/sessions/revoke`` with ``{"session_key": ...}`` to
    each base URL (default :func:`internal_urls`), all in parallel, and returns
    within ``timeout`` seconds of wall-clock time (default
    :data:`REVOKE_TIMEOUT`, 2 s), however slowly a gateway answers. Returns
    ``{base_url: None}`` for each gateway that answered 2xx and
    ``{base_url: LabelGatewayError}`` for each that did not; it never raises
    for a gateway's answer. Raises ``ValueError`` for an empty session key and
    ``ImproperlyConfigured`` when no base URL or no token is configured.
    The session key is sent only in the request body.
    """
    if not isinstance(session_key, str) or not session_key:
        raise ValueError("session_key must be a non-empty string")
    return revoke_sessions([session_key], base_urls=base_urls, token=token, timeout=timeout)


def revoke_sessions(
    session_keys: Iterable[str],
    *,
    base_urls: Iterable[str] | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> dict[str, LabelGatewayError | None]:
    """:func:`revoke_session` for several keys at once: every key on every gateway in
    one parallel round, within one ``timeout``. A gateway's outcome is its first
    failure, or None when it revoked every key. Empty strings are left out; no key at
    all sends nothing."""
    keys = list(dict.fromkeys(key for key in session_keys if isinstance(key, str) and key))
    urls = list(dict.fromkeys(internal_urls() if base_urls is None else base_urls))
    if not urls:
        raise ImproperlyConfigured(
            "neither LABEL_GATEWAY_INTERNAL_URLS nor LABEL_GATEWAY_URL is set "
            "and no base_urls were given"
        )
    token = _token(token)
    outcome: dict[str, LabelGatewayError | None] = {url: None for url in urls}
    if not keys:
        return outcome
    deadline = time.monotonic() + (timeout or REVOKE_TIMEOUT)
    pairs = []
    jobs = []
    for url in urls:
        try:
            _check_base_url(url)
        except ImproperlyConfigured:
            outcome[url] = LabelGatewayError(None, "not an http(s) URL")
            continue
        for key in keys:
            pairs.append(url)
            jobs.append(
                _request_job(
                    "POST",
                    _join(url, "/internal/sessions/revoke"),
                    token=token,
                    body=json.dumps({"session_key": key}).encode(),
                    content_type="application/json",
                    deadline=deadline,
                )
            )
    for url, result in zip(pairs, _http.run_all(jobs, deadline)):
        result = _outcome(result)
        if isinstance(result, LabelGatewayError) and outcome[url] is None:
            outcome[url] = result
    return outcome


def batch_url(tracking_numbers: Iterable[str], kind: str = "pdf", *, partial: bool = False) -> str:
    """The public URL path that prints many labels at once, e.g.

    ``/shipping-label/batch.pdf?t=A&t=B`` (one merged PDF, pages in the given
    order) or, with ``kind="zip"``, ``/shipping-label/batch.zip?...`` (one ZIP).
    ``partial=True`` adds ``partial=1``: missing labels are left out (and named
    in ``X-Labels-Missing``) instead of failing the batch. Relative: the
    browser asks the site's own host, and nginx sends it to the gateway.

    Raises ``ValueError`` for an empty list, an invalid tracking number or an
    unknown kind. Past about 50 labels a URL grows long enough for proxies to
    refuse it: POST the same ``t`` fields instead (see
    :func:`label_gateway_django.printing.print_selected_response`).
    """
    path = batch_path(kind)
    labels = _tracking_list(tracking_numbers)
    query = [("t", tracking) for tracking in labels]
    if partial:
        query.append(("partial", "1"))
    return f"{path}?{urllib.parse.urlencode(query)}"


def batch_path(kind: str = "pdf") -> str:
    """``/shipping-label/batch.pdf`` or ``/shipping-label/batch.zip``."""
    if kind not in _BATCH_KINDS:
        raise ValueError(f"kind must be one of {_BATCH_KINDS}, not {kind!r}")
    return f"/shipping-label/batch.{kind}"


def _tracking_list(tracking_numbers: Iterable[str]) -> list[str]:
    if isinstance(tracking_numbers, str):
        raise ValueError("tracking_numbers must be a list of tracking numbers, not one string")
    labels = list(tracking_numbers)
    if not labels:
        raise ValueError("no tracking numbers given")
    for tracking in labels:
        _path_segment(tracking)
    return labels


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


def clean_token(value: Any, name: str) -> str | None:
    """A bearer token as sent: surrounding whitespace stripped (a token read from a
    secrets file ends with a newline), None when empty. Raises ImproperlyConfigured,
    naming ``name`` but never quoting the value, when it is not a string of visible
    ASCII characters (``!`` to ``~``): anything else cannot be a header value."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ImproperlyConfigured(f"{name} must be a string")
    value = value.strip()
    if not value:
        return None
    if not _VISIBLE_ASCII.fullmatch(value):
        raise ImproperlyConfigured(
            f"{name} may hold only visible ASCII characters (no spaces, control or "
            "non-ASCII characters); its value is not shown"
        )
    return value


def _token(token: str | None) -> str:
    if token:
        token = clean_token(token, "the token given")
    else:
        name = "LABEL_GATEWAY_INTERNAL_TOKEN"
        token = clean_token(_setting(name), name)
    if not token:
        raise ImproperlyConfigured("LABEL_GATEWAY_INTERNAL_TOKEN is not set and no token was given")
    return token


def _config(base_url: str | None, token: str | None) -> tuple[str, str]:
    base_url = base_url or _setting("LABEL_GATEWAY_URL")
    if not base_url:
        raise ImproperlyConfigured("LABEL_GATEWAY_URL is not set and no base_url was given")
    _check_base_url(base_url)
    return base_url, _token(token)


def _check_base_url(base_url: str) -> None:
    # Only the gateway's own listener: never file:, ftp:, data: or anything else.
    if urllib.parse.urlsplit(base_url).scheme.lower() not in ("http", "https"):
        raise ImproperlyConfigured("the label gateway's URL must start with http:// or https://")


def _join(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


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
    base_url, token = _config(base_url, token)
    url = _join(base_url, path)
    if query:
        url += "?" + urllib.parse.urlencode(query)
    _status, payload = _send(
        method, url, token=token, body=body, content_type=content_type, timeout=timeout
    )
    # The gateway's 2xx answers carry JSON, or nothing; an answer that carries something
    # else still succeeded, and the call says so rather than raising.
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


def _request_job(
    method: str,
    url: str,
    *,
    token: str,
    body: bytes | None,
    content_type: str | None,
    deadline: float,
):
    """One call to the gateway as a job for :func:`_http.run_all`: (status, body) for a
    2xx answer, a LabelGatewayError for anything else (also returned, not raised)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type

    def job(aborter: _http.Aborter) -> tuple[int, bytes] | LabelGatewayError:
        try:
            response = _http.exchange(
                aborter,
                method,
                url,
                headers=headers,
                body=body,
                deadline=deadline,
                max_body=lambda status: _MAX_BODY if 200 <= status < 300 else _MAX_ERROR_BODY,
            )
        except Exception as exc:
            return _failure(exc)
        if 200 <= response.status < 300:
            return response.status, response.body
        # No redirect is followed: it would carry the bearer token to another URL.
        return LabelGatewayError(response.status, _error_message(response))

    return job


def _failure(exc: BaseException) -> LabelGatewayError:
    # A fixed text: the exception's own could quote the Authorization header.
    return LabelGatewayError(None, _http.describe(exc))


def _outcome(result: Any) -> tuple[int, bytes] | LabelGatewayError:
    if isinstance(result, BaseException) and not isinstance(result, LabelGatewayError):
        return _failure(result)
    return result


def _send(
    method: str,
    url: str,
    *,
    token: str,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float | None = None,
) -> tuple[int, bytes]:
    """One request, finished within ``timeout`` seconds of wall-clock time; returns
    (status, body) for 2xx, raises LabelGatewayError otherwise."""
    deadline = time.monotonic() + (timeout or DEFAULT_TIMEOUT)
    job = _request_job(
        method, url, token=token, body=body, content_type=content_type, deadline=deadline
    )
    (result,) = _http.run_all([job], deadline)
    result = _outcome(result)
    if isinstance(result, LabelGatewayError):
        raise result
    return result


def _error_message(response: _http.Response) -> str:
    body = response.body
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str) and error:
        return error
    text = body.decode("utf-8", "replace").strip()[:200]
    return text or http.client.responses.get(response.status, "error")
