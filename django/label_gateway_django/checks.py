"""System checks: settings that would make every label fail, or fail open, are reported
at start-up (``manage.py check``, ``runserver``, ``migrate``), not by the first packer.

===================================  ===============================================
``label_gateway_django.E001``        ``LABEL_GATEWAY_AUDIT_USER`` is not ``"username"``,
                                     ``"pk"`` or ``None``.
``label_gateway_django.E002``        ``LABEL_GATEWAY_ACCESS_CHECK`` is empty, cannot be
                                     imported, is not a function, or is a coroutine
                                     function (an ``async def`` hook's result is a
                                     coroutine, never ``True``: every label would be
                                     denied).
``label_gateway_django.E003``        A token setting holds a character outside visible
                                     ASCII (its value is never shown).
``label_gateway_django.E004``        ``LABEL_GATEWAY_FETCH_ALLOW_PRIVATE`` holds an entry
                                     that is not ``ip:port``.
``label_gateway_django.W001``        No ``LABEL_GATEWAY_ACCESS_CHECK``: every logged-in
                                     user may read every label. Silence it
                                     (``SILENCED_SYSTEM_CHECKS``) where that is meant.
``label_gateway_django.W002``        ``SECURE_SSL_REDIRECT`` redirects the gateway's
                                     plain-HTTP calls to the internal endpoints.
===================================  ===============================================
"""

from __future__ import annotations

import inspect
import re

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string

from . import netguard
from .client import clean_token

TOKEN_SETTINGS = ("LABEL_GATEWAY_REGENERATE_TOKEN", "LABEL_GATEWAY_INTERNAL_TOKEN")


def check_settings(app_configs=None, **kwargs):
    """The app's system checks (see the module's table)."""
    from .views import audit_user_setting

    messages = []
    try:
        audit_user_setting()
    except ImproperlyConfigured as exc:
        messages.append(checks.Error(str(exc), id="label_gateway_django.E001"))
    messages.extend(_access_check_messages())
    for name in TOKEN_SETTINGS:
        try:
            clean_token(getattr(settings, name, None), name)
        except ImproperlyConfigured as exc:
            messages.append(checks.Error(str(exc), id="label_gateway_django.E003"))
    for value in getattr(settings, "LABEL_GATEWAY_FETCH_ALLOW_PRIVATE", None) or ():
        if netguard.parse_pair(value) is None:
            messages.append(
                checks.Error(
                    f"LABEL_GATEWAY_FETCH_ALLOW_PRIVATE entry {value!r} is not ip:port "
                    "(e.g. '127.0.0.1:8443' or '[::1]:8443')",
                    id="label_gateway_django.E004",
                )
            )
    messages.extend(_ssl_redirect_messages())
    return messages


def _access_check_messages():
    if not hasattr(settings, "LABEL_GATEWAY_ACCESS_CHECK") or (
        settings.LABEL_GATEWAY_ACCESS_CHECK is None
    ):
        return [
            checks.Warning(
                "LABEL_GATEWAY_ACCESS_CHECK is not set: every logged-in user may read every "
                "shipping label, names and addresses included.",
                hint="Set it to a hook(request, user, tracking) that returns True for the "
                "labels a user may read, or silence label_gateway_django.W001 where every "
                "user is staff.",
                id="label_gateway_django.W001",
            )
        ]
    path = settings.LABEL_GATEWAY_ACCESS_CHECK
    if not isinstance(path, str):
        problem = "is not a dotted path (a string)"
    elif not path.strip():
        problem = "is empty (unset it, or name a hook)"
    else:
        try:
            hook = import_string(path)
        except ImportError as exc:
            problem = f"cannot be imported ({type(exc).__name__})"
        else:
            problem = _hook_problem(hook)
    if problem is None:
        return []
    return [
        checks.Error(
            f"LABEL_GATEWAY_ACCESS_CHECK {problem}: every label check would fail.",
            hint="It must name a plain function hook(request, user, tracking) returning True "
            "to allow and False to deny.",
            id="label_gateway_django.E002",
        )
    ]


def _hook_problem(hook) -> str | None:
    if inspect.isclass(hook):
        return "names a class, not a function"
    if not callable(hook):
        return "names something that cannot be called"
    if _is_coroutine_function(hook) or _is_coroutine_function(getattr(hook, "__call__", None)):
        return "is a coroutine function (async def); the check view calls it synchronously"
    return None


def _is_coroutine_function(func) -> bool:
    if func is None:
        return False
    if inspect.iscoroutinefunction(func):
        return True
    try:  # also functions marked with asgiref's markcoroutinefunction
        from asgiref.sync import iscoroutinefunction
    except ImportError:  # pragma: no cover - asgiref older than Django 4.2 needs
        return False
    return iscoroutinefunction(func)


def _ssl_redirect_messages():
    if not getattr(settings, "SECURE_SSL_REDIRECT", False):
        return []
    exempt = [re.compile(pattern) for pattern in getattr(settings, "SECURE_REDIRECT_EXEMPT", [])]
    redirected = []
    for name in ("label_gateway:label_access", "label_gateway:label_regenerate"):
        try:
            path = reverse(name, args=["T"]).lstrip("/")
        except NoReverseMatch:
            continue  # the endpoints are not routed here: nothing to redirect
        if not any(pattern.search(path) for pattern in exempt):
            redirected.append("/" + path)
    if not redirected:
        return []
    return [
        checks.Warning(
            "SECURE_SSL_REDIRECT redirects the gateway's plain-HTTP calls to "
            + " and ".join(redirected)
            + ": the gateway takes a redirect from the check as 'denied' (every label "
            "404) and cannot regenerate labels.",
            hint="Exempt them: SECURE_REDIRECT_EXEMPT = [r'^internal/label-(access|regenerate)/']"
            " (adjust the prefix to where the app's URLs are included).",
            id="label_gateway_django.W002",
        )
    ]
