"""Signal handlers connected by :class:`label_gateway_django.apps.LabelGatewayConfig`.

The gateway caches "this session may read labels" for up to its ``allow_ttl`` (30 s by
default). These handlers tell every gateway copy (``LABEL_GATEWAY_INTERNAL_URLS``,
default ``[LABEL_GATEWAY_URL]``) to forget a session as soon as Django ends it:

``revoke_on_logout``
    On ``user_logged_out``, which Django sends before it flushes the session (so the key
    is still there): the session's key and cookie value are revoked at once, and once
    more when the flush has committed, so that a check that read the session just
    before the flush cannot leave an allow verdict cached after the first revoke.
``note_user_change`` / ``revoke_on_user_change``
    On saving a user whose password changed or who was deactivated, and on deleting a
    user: every session of the user that the session engine can list
    (:func:`label_gateway_django.sessions.revoke_user_sessions`) is revoked once the
    transaction commits.

Nothing configured: nothing happens (and no query is made). Every round asks all
gateways and keys in parallel within ``REVOKE_TIMEOUT`` (2 s) of wall-clock time. A
gateway that fails or is slow is logged at warning level, naming its URL but never a
session key or the token; the logout or the save always goes ahead.
"""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, router, transaction

from .client import clean_token, internal_urls, revoke_sessions

logger = logging.getLogger(__name__)


def _configured() -> tuple[list[str], str] | None:
    """The gateways and token to revoke with, or None (with a warning when only the
    token is missing or unusable)."""
    urls = internal_urls()
    if not urls:
        return None
    try:
        token = clean_token(
            getattr(settings, "LABEL_GATEWAY_INTERNAL_TOKEN", None), "LABEL_GATEWAY_INTERNAL_TOKEN"
        )
    except ImproperlyConfigured as exc:
        logger.warning("%s: sessions cannot be revoked on the label gateway", exc)
        return None
    if not token:
        logger.warning(
            "LABEL_GATEWAY_INTERNAL_TOKEN is not set: ended sessions cannot be revoked "
            "on the label gateway (they stay valid there for up to allow_ttl)"
        )
        return None
    return urls, token


# --- logout ------------------------------------------------------------------


def revoke_on_logout(sender, request=None, user=None, **kwargs) -> None:
    try:
        configured = _configured()
        if configured is None:
            return
        keys = request_session_keys(request)
        if not keys:
            return
        _revoke(keys, *configured, what="a logged-out session")
        _revoke_again_after_flush(request, keys, *configured)
    except Exception as exc:  # never break a logout
        # Only the type: an exception's text or traceback could quote the session key.
        logger.warning("label gateway session revoke failed: %s", type(exc).__name__)


def request_session_keys(request) -> list[str]:
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


def _revoke_again_after_flush(request, keys, urls, token) -> None:
    """Revoke ``keys`` again once the session flush that follows ``user_logged_out`` has
    committed: this request's session object runs the revoke right after its flush
    (``transaction.on_commit``: at once in autocommit, at the commit otherwise), or
    after its ``aflush`` for Django's ``alogout``."""
    session = getattr(request, "session", None)
    if session is None or not callable(getattr(session, "flush", None)):
        return
    flush = session.flush

    def flush_then_revoke():
        try:
            del session.flush  # this wrapper is needed once
        except AttributeError:
            pass
        try:
            flush()
        finally:
            transaction.on_commit(
                lambda: _revoke_quietly(keys, urls, token, "a logged-out session"),
                using=_session_db(),
            )

    session.flush = flush_then_revoke

    # Django 5.0+'s alogout flushes with aflush; async code runs outside any atomic
    # block, so the deletion has committed when aflush returns.
    aflush = getattr(session, "aflush", None)
    if aflush is None:
        return

    async def aflush_then_revoke():
        from asgiref.sync import sync_to_async

        try:
            del session.aflush
        except AttributeError:
            pass
        try:
            await aflush()
        finally:
            await sync_to_async(_revoke_quietly)(keys, urls, token, "a logged-out session")

    session.aflush = aflush_then_revoke


def _session_db() -> str:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model = getattr(store, "get_model_class", None)
    return router.db_for_write(get_model()) if get_model is not None else DEFAULT_DB_ALIAS


# --- password change, deactivation, deletion -----------------------------------

_PENDING = "_label_gateway_revoke_keys"


def note_user_change(sender, instance, raw=False, update_fields=None, using=None, **kwargs):
    """Before a user is saved: when the password changes or the user is deactivated,
    note the user's session keys now (a password change cycles the current session's
    key in the same transaction; its old key must be revoked too)."""
    try:
        if raw or instance.pk is None or instance._state.adding or not internal_urls():
            return
        if update_fields is not None and not {"password", "is_active"} & set(update_fields):
            return
        # A custom user model may lack either field (is_active can be a plain attribute).
        fields = [name for name in ("password", "is_active") if _is_field(sender, name)]
        if not fields:
            return
        manager = sender._default_manager.db_manager(using)
        old = manager.filter(pk=instance.pk).values(*fields).first()
        if old is None:
            return
        password_changed = "password" in old and old["password"] != instance.password
        deactivated = old.get("is_active") and not instance.is_active
        if password_changed or deactivated:
            from .sessions import user_session_keys

            setattr(instance, _PENDING, user_session_keys(instance))
    except Exception as exc:  # never break a save
        logger.warning("label gateway: user sessions not noted: %s", type(exc).__name__)


def _is_field(model, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except Exception:  # FieldDoesNotExist
        return False
    return True


def revoke_on_user_change(sender, instance, using=None, **kwargs):
    """After saving (a change noted above) or deleting a user: revoke the user's sessions
    on every gateway once the transaction commits."""
    try:
        if kwargs.get("signal") is None:
            return
        from django.db.models.signals import post_delete

        if kwargs["signal"] is post_delete:
            if not internal_urls():
                return
            from .sessions import user_session_keys

            keys = user_session_keys(instance)
        else:
            keys = instance.__dict__.pop(_PENDING, None)
            if keys is None:
                return
            from .sessions import user_session_keys

            keys = list(dict.fromkeys(keys + user_session_keys(instance)))
        if not keys:
            return
        configured = _configured()
        if configured is None:
            return
        transaction.on_commit(
            lambda: _revoke_quietly(keys, *configured, "a changed or deleted user's sessions"),
            using=using,
        )
    except Exception as exc:  # never break a save
        logger.warning("label gateway user session revoke failed: %s", type(exc).__name__)


# --- one revoke round ----------------------------------------------------------


def _revoke_quietly(keys, urls, token, what) -> None:
    try:
        _revoke(keys, urls, token, what=what)
    except Exception as exc:
        logger.warning("label gateway session revoke failed: %s", type(exc).__name__)


def _revoke(keys, urls, token, *, what) -> None:
    for url, error in revoke_sessions(keys, base_urls=urls, token=token).items():
        if error is not None:
            logger.warning(
                "label gateway %s did not revoke %s (it stays valid there for up to "
                "allow_ttl): %s",
                url,
                what,
                _redact(str(error), token, *keys),
            )


def _redact(text: str, *secrets: str) -> str:
    # The error text may quote the gateway's answer: never let a secret through.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
