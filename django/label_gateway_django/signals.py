"""Signal handlers connected by :class:`label_gateway_django.apps.LabelGatewayConfig`.

``revoke_on_logout``
    The gateway caches "this session may read labels" for up to its
    ``allow_ttl`` (30 s by default). On logout, this tells every gateway copy
    (``LABEL_GATEWAY_INTERNAL_URLS``, default ``[LABEL_GATEWAY_URL]``) to
    forget the session at once. Django sends ``user_logged_out`` before it
    flushes the session, so the key is still there. Nothing configured:
    nothing happens. A gateway that fails or is slow (2 s at most) is logged
    at warning level, without the session key or the token; the logout itself
    always goes ahead.
"""

from __future__ import annotations

import logging

from django.conf import settings

from .client import internal_urls, revoke_session

logger = logging.getLogger(__name__)


def revoke_on_logout(sender, request=None, user=None, **kwargs) -> None:
    try:
        _revoke(request)
    except Exception as exc:  # never break a logout
        # Only the type: an exception's text or traceback could quote the session key.
        logger.warning("label gateway session revoke failed: %s", type(exc).__name__)


def _session_keys(request) -> list[str]:
    """The session's key and, when it differs, the cookie value the browser sent.

    The gateway keys its cache by the cookie value. The two are the same for
    the database, cache and file backends; they differ for the signed-cookie
    backend and when the key was cycled earlier in this request.
    """
    keys = []
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if isinstance(key, str) and key:
        keys.append(key)
    cookies = getattr(request, "COOKIES", None) or {}
    cookie = cookies.get(getattr(settings, "SESSION_COOKIE_NAME", "sessionid"))
    if isinstance(cookie, str) and cookie and cookie not in keys:
        keys.append(cookie)
    return keys


def _revoke(request) -> None:
    urls = internal_urls()
    if not urls:
        return
    keys = _session_keys(request)
    if not keys:
        return
    token = getattr(settings, "LABEL_GATEWAY_INTERNAL_TOKEN", None)
    if not token:
        logger.warning(
            "LABEL_GATEWAY_INTERNAL_TOKEN is not set: logout cannot revoke the session "
            "on the label gateway (it stays valid there for up to allow_ttl)"
        )
        return
    for key in keys:
        for url, error in revoke_session(key, base_urls=urls, token=token).items():
            if error is not None:
                logger.warning(
                    "label gateway %s did not revoke a logged-out session (it stays valid "
                    "there for up to allow_ttl): %s",
                    url,
                    _redact(str(error), key, token),
                )


def _redact(text: str, *secrets: str) -> str:
    # The error text may quote the gateway's answer: never let a secret through.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
