"""Revoking every session of a user on the gateway.

The gateway caches "this session may read this label" for up to its ``allow_ttl``. Django
ends a user's sessions by itself when the password changes (the session hash no longer
matches), when the user is deactivated or deleted, but the gateway does not see that
until its cached verdicts expire. :func:`revoke_user_sessions` tells it at once. The app
calls it on a password change, a deactivation and a deletion (``signals.py``); call it
yourself wherever else you end a user's sessions.

Which sessions can be found depends on the session engine: the database-backed ones
(``db``, ``cached_db``) are searched for the user's sessions; a cache, file or
signed-cookie engine cannot be searched, so only the ``request``'s own session (when
given) is revoked there, and the others stay valid on the gateway for up to
``allow_ttl``.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.utils import timezone

from .client import LabelGatewayError, internal_urls, revoke_sessions

__all__ = ["revoke_user_sessions", "user_session_keys"]


def user_session_keys(user, request=None) -> list[str]:
    """The keys of ``user``'s unexpired sessions that the session engine can list, and
    the request's own session key and cookie when ``request`` is given."""
    keys: list[str] = []
    if request is not None:
        from .signals import request_session_keys

        keys.extend(request_session_keys(request))
    model = _session_model()
    if model is not None and getattr(user, "pk", None) is not None:
        from django.contrib.auth import SESSION_KEY

        user_id = str(user.pk)
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        rows = model.objects.filter(expire_date__gt=timezone.now()).values_list(
            "session_key", "session_data"
        )
        for key, data in rows.iterator():
            try:
                decoded = store.decode(data)
            except Exception:  # a row this key cannot read is no session of the user's
                continue
            if str(decoded.get(SESSION_KEY)) == user_id and key not in keys:
                keys.append(key)
    return keys


def revoke_user_sessions(
    user, *, request=None, base_urls=None, token=None, timeout=None
) -> dict[str, LabelGatewayError | None]:
    """Make every gateway copy forget its cached verdicts for every session of ``user``
    (see :func:`user_session_keys` for which are found), all keys on all copies in one
    parallel round within ``timeout`` (default 2 s).

    Returns ``{base_url: None | LabelGatewayError}`` as
    :func:`~label_gateway_django.client.revoke_sessions` does; ``{}`` when no gateway
    is configured. Raises ``ImproperlyConfigured`` when gateways are configured but no
    token is.
    """
    urls = internal_urls() if base_urls is None else list(base_urls)
    if not urls:
        return {}
    keys = user_session_keys(user, request)
    return revoke_sessions(keys, base_urls=urls, token=token, timeout=timeout)


def _session_model():
    """The session model of a database-backed engine, or None."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model = getattr(store, "get_model_class", None)
    return get_model() if get_model is not None else None
