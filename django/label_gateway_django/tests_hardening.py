"""Tests for the app's fail-closed rules: the ownership hook, tokens, the internal
client's transport (no proxy, wall-clock deadlines), the read-only session check,
revocation beyond logout, the carrier download's address rule and the system checks.

Slow peers are raw sockets that drip their answer; a deadline is shown to hold by the
peer seeing its connection closed long before its answer was complete, never by timing
the call.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
from unittest import mock

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import reverse

from . import _http, netguard, signals, views
from .checks import check_settings
from .client import (
    LabelGatewayError,
    clean_token,
    purge_label,
    revoke_session,
    revoke_sessions,
    upload_label,
)
from .sessions import revoke_user_sessions
from .tests import INTERNAL_TOKEN, PDF, REVOKE, FakeServer, quiet_request_logger

URLCONF = "label_gateway_django.tests"
HOOKS = __name__
REGEN_TOKEN = "regen-secret"


def allow_true(request, user, tracking):
    return True


def allow_string_false(request, user, tracking):
    return "False"


def allow_one(request, user, tracking):
    return 1


async def async_deny(request, user, tracking):
    return False


class HookClass:
    def __init__(self, request, user, tracking):
        pass


def regenerate_from_carrier(tracking):
    return CARRIER_URL["url"]


CARRIER_URL = {"url": ""}


class Listener:
    """A listening socket that only counts the connections made to it (a proxy, a
    private address): the tests expect none."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, OSError):
                return count
            conn.close()
            count += 1

    def close(self):
        self.sock.close()


class DripServer:
    """Answers one request with ``head`` and then ``drip`` one byte at a time, 50 ms
    apart (about 5 s for 100 bytes), and records whether the client closed the
    connection before the last byte."""

    def __init__(self, head: bytes, drip: bytes = b"x" * 100):
        self.head = head
        self.drip = drip
        self.closed_early = threading.Event()
        self.finished = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(self.head)
                for byte in self.drip:
                    if self.closed_early.wait(0.05):
                        return
                    conn.sendall(bytes([byte]))
                    # A closed peer shows as readable with nothing to read.
                    conn.settimeout(0)
                    try:
                        if conn.recv(1) == b"":
                            self.closed_early.set()
                            return
                    except BlockingIOError:
                        pass
                    finally:
                        conn.settimeout(None)
                self.finished.set()
            except OSError:
                self.closed_early.set()

    def close(self):
        self.sock.close()


def proxy_env(url):
    """The environment an operator might have: every proxy variable set, no NO_PROXY."""
    env = {name: url for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")}
    env.update(ALL_PROXY=url, all_proxy=url)
    return env


def without_no_proxy():
    return {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}


def run_with_proxy_env(proxy_url: str, code: str) -> str:
    """Run ``code`` in a new Python whose environment sets every proxy variable from
    the start, as an operator's would (urllib reads them when its opener is built, at
    import): returns what it printed."""
    env = {**without_no_proxy(), **proxy_env(proxy_url)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout + done.stderr


# --- the ownership hook fails closed ---------------------------------------------


@override_settings(ROOT_URLCONF=URLCONF)
class OwnershipHookTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user("hank", password="pw")

    def setUp(self):
        self.client.force_login(self.user)

    def status(self, hook):
        with self.settings(LABEL_GATEWAY_ACCESS_CHECK=hook):
            return self.client.get(reverse("label_gateway:label_access", args=["T1"])).status_code

    def test_only_true_allows(self):
        self.assertEqual(self.status(f"{HOOKS}.allow_true"), 204)
        for hook in ("allow_string_false", "allow_one", "HookClass"):
            with self.subTest(hook=hook), self.assertLogs("label_gateway_django.views", "ERROR"):
                self.assertEqual(self.status(f"{HOOKS}.{hook}"), 403)

    def test_an_async_hook_is_denied_and_its_coroutine_closed(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with self.assertLogs("label_gateway_django.views", "ERROR") as logs:
                self.assertEqual(self.status(f"{HOOKS}.async_deny"), 403)
            gc.collect()
        self.assertIn("awaitable", logs.output[0])
        self.assertEqual([w for w in caught if "never awaited" in str(w.message)], [])

    def test_an_empty_or_unimportable_hook_answers_503(self):
        quiet_request_logger(self)
        for hook in ("", f"{HOOKS}.no_such_hook"):
            with self.subTest(hook=hook), self.assertLogs("label_gateway_django.views", "ERROR"):
                self.assertEqual(self.status(hook), 503)

    def test_anonymous_is_refused_before_the_hook(self):
        self.client.logout()
        with mock.patch(f"{HOOKS}.allow_true") as hook:
            self.assertEqual(self.status(f"{HOOKS}.allow_true"), 403)
        hook.assert_not_called()


class SystemCheckTests(SimpleTestCase):
    def ids(self, **overrides):
        with self.settings(**overrides):
            return [message.id for message in check_settings()]

    def test_access_check_setting(self):
        good = {"LABEL_GATEWAY_ACCESS_CHECK": f"{HOOKS}.allow_true"}
        self.assertEqual(self.ids(**good), [])
        for hook in ("", "  ", f"{HOOKS}.no_such_hook", "nowhere.at.all", f"{HOOKS}.async_deny"):
            with self.subTest(hook=hook):
                self.assertEqual(
                    self.ids(LABEL_GATEWAY_ACCESS_CHECK=hook), ["label_gateway_django.E002"]
                )
        self.assertEqual(
            self.ids(LABEL_GATEWAY_ACCESS_CHECK=f"{HOOKS}.HookClass"), ["label_gateway_django.E002"]
        )
        self.assertEqual(self.ids(LABEL_GATEWAY_ACCESS_CHECK=None), ["label_gateway_django.W001"])

    def test_no_hook_warning_can_be_silenced(self):
        from django.core import checks

        with self.settings(
            LABEL_GATEWAY_ACCESS_CHECK=None,
            SILENCED_SYSTEM_CHECKS=["label_gateway_django.W001"],
        ):
            shown = [m.id for m in checks.run_checks() if not m.is_silenced()]
        self.assertNotIn("label_gateway_django.W001", shown)

    def test_tokens_outside_visible_ascii_are_errors_that_never_show_the_token(self):
        base = {"LABEL_GATEWAY_ACCESS_CHECK": f"{HOOKS}.allow_true"}
        self.assertEqual(
            self.ids(**base, LABEL_GATEWAY_INTERNAL_TOKEN="tok-from-a-file\n"), [], "stripped"
        )
        for bad in ("two words", "tab\tinside", "jalape\u00f1o", "nul\x00"):
            for name in ("LABEL_GATEWAY_INTERNAL_TOKEN", "LABEL_GATEWAY_REGENERATE_TOKEN"):
                with self.subTest(name=name, bad=bad), self.settings(**base, **{name: bad}):
                    (message,) = check_settings()
                    self.assertEqual(message.id, "label_gateway_django.E003")
                    self.assertIn(name, message.msg)
                    self.assertNotIn(bad, message.msg)
                    self.assertNotIn(bad.split()[0], message.msg)

    @override_settings(ROOT_URLCONF=URLCONF, LABEL_GATEWAY_ACCESS_CHECK=f"{HOOKS}.allow_true")
    def test_ssl_redirect_of_the_internal_endpoints_is_reported(self):
        self.assertEqual(self.ids(SECURE_SSL_REDIRECT=True), ["label_gateway_django.W002"])
        self.assertEqual(
            self.ids(
                SECURE_SSL_REDIRECT=True,
                SECURE_REDIRECT_EXEMPT=[r"^internal/label-(access|regenerate)/"],
            ),
            [],
        )
        self.assertEqual(self.ids(SECURE_SSL_REDIRECT=False), [])

    def test_allow_private_entries_must_be_ip_and_port(self):
        base = {"LABEL_GATEWAY_ACCESS_CHECK": f"{HOOKS}.allow_true"}
        self.assertEqual(self.ids(**base, LABEL_GATEWAY_FETCH_ALLOW_PRIVATE=["127.0.0.1:80"]), [])
        self.assertEqual(
            self.ids(**base, LABEL_GATEWAY_FETCH_ALLOW_PRIVATE=["localhost:80", "10.0.0.1"]),
            ["label_gateway_django.E004", "label_gateway_django.E004"],
        )


# --- tokens ----------------------------------------------------------------------


class TokenTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateway = FakeServer()

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        super().tearDownClass()

    def setUp(self):
        self.gateway.requests.clear()
        self.gateway.routes[("DELETE", "/internal/cache/ABC")] = (204, {}, b"")

    def test_clean_token(self):
        self.assertEqual(clean_token(" tok-1\n", "X"), "tok-1")
        self.assertIsNone(clean_token("\n", "X"))
        self.assertIsNone(clean_token(None, "X"))
        for bad in ("a b", "a\nb", "t\u00f6k", "\x7f", 12):
            with self.subTest(bad=bad), self.assertRaises(ImproperlyConfigured) as ctx:
                clean_token(bad, "SOME_SETTING")
            self.assertIn("SOME_SETTING", str(ctx.exception))
            self.assertNotIn(str(bad), str(ctx.exception))

    def test_a_token_read_from_a_file_is_sent_without_its_newline(self):
        with self.settings(
            LABEL_GATEWAY_URL=self.gateway.url, LABEL_GATEWAY_INTERNAL_TOKEN="file-token\n"
        ):
            purge_label("ABC")
        self.assertEqual(self.gateway.requests[0]["headers"]["Authorization"], "Bearer file-token")

    def test_a_token_with_an_inner_control_character_is_refused_without_echo(self):
        with self.assertRaises(ImproperlyConfigured) as ctx:
            purge_label("ABC", base_url=self.gateway.url, token="sec\nret", timeout=5)
        self.assertNotIn("sec", str(ctx.exception))
        self.assertEqual(self.gateway.requests, [])

    def test_request_construction_errors_have_fixed_texts(self):
        token = "very-secret-token"

        def exchange(*args, **kwargs):
            raise ValueError(f"Invalid header value b'Bearer {token}\\n'")

        with mock.patch.object(_http, "exchange", exchange):
            with self.assertRaises(LabelGatewayError) as ctx:
                purge_label("ABC", base_url=self.gateway.url, token=token, timeout=5)
        self.assertEqual(ctx.exception.message, "request could not be built")
        self.assertNotIn(token, str(ctx.exception) + repr(ctx.exception))
        with self.assertRaises(LabelGatewayError) as ctx:
            purge_label("ABC", base_url="http://127.0.0.1:notaport", token=token, timeout=5)
        self.assertEqual(ctx.exception.message, "request could not be built")


@override_settings(
    ROOT_URLCONF=URLCONF,
    LABEL_GATEWAY_REGENERATE=f"{__name__}.regenerate_pdf",
)
class RegenerateTokenTests(SimpleTestCase):
    def post(self, token):
        url = reverse("label_gateway:label_regenerate", args=["PDF1"])
        return self.client.post(url, HTTP_AUTHORIZATION=f"Bearer {token}")

    def test_the_configured_token_is_stripped_like_the_supplied_one(self):
        with self.settings(LABEL_GATEWAY_REGENERATE_TOKEN=f"{REGEN_TOKEN}\n"):
            self.assertEqual(self.post(REGEN_TOKEN).status_code, 200)

    def test_a_configured_token_outside_visible_ascii_refuses_without_echo(self):
        quiet_request_logger(self)
        with self.settings(LABEL_GATEWAY_REGENERATE_TOKEN="regen secret"):
            with self.assertLogs("label_gateway_django.views", "ERROR") as logs:
                response = self.post("regen secret")
        self.assertEqual(response.status_code, 503)
        self.assertNotIn("regen secret", "\n".join(logs.output))


def regenerate_pdf(tracking):
    return PDF


# --- the client's transport --------------------------------------------------------


class ClientTransportTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateway = FakeServer()

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        super().tearDownClass()

    def setUp(self):
        self.gateway.requests.clear()
        self.gateway.routes.clear()
        self.proxy = Listener()
        self.addCleanup(self.proxy.close)

    def test_no_environment_proxy_sees_the_bearer_token(self):
        self.gateway.routes[("DELETE", "/internal/cache/ABC")] = (204, {}, b"")
        self.gateway.routes[REVOKE] = (204, {}, b"")
        output = run_with_proxy_env(
            self.proxy.url,
            f"""
            from label_gateway_django.client import purge_label, revoke_session
            gateway, token = {self.gateway.url!r}, {INTERNAL_TOKEN!r}
            purge_label("ABC", base_url=gateway, token=token, timeout=2)
            print(revoke_session("key", base_urls=[gateway], token=token, timeout=2))
            """,
        )
        self.assertIn(f"{{'{self.gateway.url}': None}}", output)
        self.assertEqual(len(self.gateway.requests), 2)
        self.assertEqual(self.proxy.connections(), 0)

    def test_only_http_and_https_urls(self):
        for base_url in ('data:application/json,{"key": "x"}#', "file:///etc/passwd#", "ftp://h/"):
            with self.subTest(base_url=base_url), self.assertRaises(ImproperlyConfigured):
                upload_label("ABC", PDF, base_url=base_url, token=INTERNAL_TOKEN, timeout=5)
        outcome = revoke_session("k", base_urls=["file:///tmp/x"], token=INTERNAL_TOKEN)
        self.assertIsNone(outcome["file:///tmp/x"].status)

    def test_a_2xx_answer_without_json_is_not_an_error(self):
        self.gateway.routes[("PUT", "/internal/labels/ABC")] = (
            201,
            {"Content-Type": "text/plain"},
            b"stored",
        )
        self.assertIsNone(
            upload_label("ABC", PDF, base_url=self.gateway.url, token=INTERNAL_TOKEN, timeout=5)
        )

    def test_a_dripping_gateway_is_cut_off_at_the_deadline(self):
        drip = DripServer(b"HTTP/1.1 204 No Content\r\nX-Drip: ")
        self.addCleanup(drip.close)
        outcome = revoke_session("key", base_urls=[drip.url], token=INTERNAL_TOKEN, timeout=0.3)
        self.assertEqual(outcome[drip.url].message, "timed out")
        self.assertTrue(drip.closed_early.wait(5), "the connection outlived the deadline")
        self.assertFalse(drip.finished.is_set())

    def test_every_key_on_every_gateway_in_one_parallel_round(self):
        gateways = [FakeServer(), FakeServer()]
        for gateway in gateways:
            self.addCleanup(gateway.stop)
            gateway.routes[REVOKE] = (204, {}, b"")
            gateway.delay = 0.3
        urls = [gateway.url for gateway in gateways]
        outcome = revoke_sessions(["k1", "k2"], base_urls=urls, token=INTERNAL_TOKEN, timeout=5)
        self.assertEqual(outcome, {urls[0]: None, urls[1]: None})
        for gateway in gateways:
            self.assertEqual(
                sorted(json.loads(r["body"])["session_key"] for r in gateway.requests),
                ["k1", "k2"],
            )
            self.assertEqual(gateway.max_in_flight, 2, "both keys asked at once")


# --- the check reads the session and never writes it -----------------------------


@override_settings(ROOT_URLCONF=URLCONF, LABEL_GATEWAY_ACCESS_CHECK=f"{HOOKS}.allow_true")
class ReadOnlySessionTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user("ida", password="pw")

    def check(self):
        return self.client.get(reverse("label_gateway:label_access", args=["T1"]))

    def test_a_session_signed_with_a_fallback_key_is_neither_refused_nor_re_keyed(self):
        with self.settings(SECRET_KEY="old-key-" + "x" * 50):
            self.client.force_login(self.user)
        key = self.client.session.session_key
        rotated = {
            "SECRET_KEY": "new-key-" + "y" * 50,
            "SECRET_KEY_FALLBACKS": ["old-key-" + "x" * 50],
        }
        with self.settings(**rotated):
            response = self.check()
        # As a page of the site would see it: Django honours fallback keys for sessions.
        self.assertEqual(response.status_code, 204)
        self.assertFalse(response.cookies)
        self.assertEqual(list(Session.objects.values_list("session_key", flat=True)), [key])

    def test_a_session_of_another_secret_is_refused_and_left_alone(self):
        with self.settings(SECRET_KEY="old-key-" + "x" * 50):
            self.client.force_login(self.user)
        key = self.client.session.session_key
        with self.settings(SECRET_KEY="new-key-" + "y" * 50):
            self.assertEqual(self.check().status_code, 403)
        self.assertTrue(Session.objects.filter(session_key=key).exists())

    @override_settings(SESSION_SAVE_EVERY_REQUEST=True)
    def test_save_every_request_does_not_save_on_a_check(self):
        self.client.force_login(self.user)
        row = Session.objects.get()
        response = self.check()
        self.assertEqual(response.status_code, 204)
        self.assertFalse(response.cookies)
        self.assertEqual(Session.objects.get().expire_date, row.expire_date)
        self.assertEqual(Session.objects.get().session_data, row.session_data)

    def test_inactive_and_password_changed_users_are_refused(self):
        self.client.force_login(self.user)
        get_user_model().objects.filter(pk=self.user.pk).update(is_active=False)
        self.assertEqual(self.check().status_code, 403)
        get_user_model().objects.filter(pk=self.user.pk).update(is_active=True, password="x")
        self.assertEqual(self.check().status_code, 403)


# --- revocation beyond logout ----------------------------------------------------


@override_settings(ROOT_URLCONF=URLCONF, LABEL_GATEWAY_INTERNAL_TOKEN=INTERNAL_TOKEN)
class RevokeUserSessionsTests(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateway = FakeServer()

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        super().tearDownClass()

    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user("jo", password="pw")
        cls.other = get_user_model().objects.create_user("kim", password="pw")

    def setUp(self):
        self.gateway.requests.clear()
        self.gateway.routes[REVOKE] = (204, {}, b"")
        self.keys = []
        for _ in range(2):
            client = self.client_class()
            client.force_login(self.user)
            self.keys.append(client.session.session_key)
        other = self.client_class()
        other.force_login(self.other)
        self.other_key = other.session.session_key
        self.gateway_settings = self.settings(LABEL_GATEWAY_INTERNAL_URLS=[self.gateway.url])
        self.gateway_settings.enable()
        self.addCleanup(self.gateway_settings.disable)

    def revoked(self):
        return sorted(json.loads(r["body"])["session_key"] for r in self.gateway.requests)

    def test_revoke_user_sessions_revokes_every_session_of_the_user_only(self):
        self.assertEqual(revoke_user_sessions(self.user), {self.gateway.url: None})
        self.assertEqual(self.revoked(), sorted(self.keys))

    def test_a_password_change_revokes_once_committed(self):
        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            self.user.set_password("new")
            self.user.save()
        self.assertEqual(self.gateway.requests, [], "not before the commit")
        for callback in callbacks:
            callback()
        self.assertEqual(self.revoked(), sorted(self.keys))

    def test_deactivation_and_deletion_revoke(self):
        with self.captureOnCommitCallbacks(execute=True):
            self.user.is_active = False
            self.user.save(update_fields=["is_active"])
        self.assertEqual(self.revoked(), sorted(self.keys))
        self.gateway.requests.clear()
        with self.captureOnCommitCallbacks(execute=True):
            self.other.delete()
        self.assertEqual(self.revoked(), [self.other_key])

    def test_other_saves_revoke_nothing(self):
        with self.captureOnCommitCallbacks(execute=True):
            self.user.first_name = "Jo"
            self.user.save()
            self.user.save(update_fields=["last_login"])
        self.assertEqual(self.gateway.requests, [])

    def test_logout_sends_a_token_read_from_a_file_without_its_newline(self):
        client = self.client_class()
        client.force_login(self.other)
        key = client.session.session_key
        with self.settings(LABEL_GATEWAY_INTERNAL_TOKEN=f"{INTERNAL_TOKEN}\n"):
            with self.assertNoLogs("label_gateway_django", "WARNING"):
                with self.captureOnCommitCallbacks(execute=True):
                    self.assertEqual(client.post("/test-logout/").status_code, 204)
        self.assertEqual(self.revoked(), [key, key])
        for request in self.gateway.requests:
            self.assertEqual(request["headers"]["Authorization"], f"Bearer {INTERNAL_TOKEN}")

    def test_logout_revokes_again_once_the_flush_has_committed(self):
        client = self.client_class()
        client.force_login(self.user)
        key = client.session.session_key
        seen = []

        def record(keys, **kwargs):
            seen.append((list(keys), Session.objects.filter(session_key=key).exists()))
            return {url: None for url in kwargs["base_urls"]}

        with mock.patch.object(signals, "revoke_sessions", record):
            with self.captureOnCommitCallbacks(execute=True):
                self.assertEqual(client.post("/test-logout/").status_code, 204)
        self.assertEqual(seen, [([key], True), ([key], False)])


    def test_async_logout_revokes_again_after_the_flush(self):
        from django.contrib import auth

        if not hasattr(auth, "alogout"):
            # Django 4.2 has no async logout: the sync one above is the only one.
            self.assertLess(django.VERSION, (5, 0))
            return
        from asgiref.sync import async_to_sync
        from django.contrib.sessions.backends.db import SessionStore
        from django.test import RequestFactory

        client = self.client_class()
        client.force_login(self.user)
        key = client.session.session_key
        request = RequestFactory().post("/logout/")
        request.COOKIES[settings.SESSION_COOKIE_NAME] = key
        request.session = SessionStore(key)
        seen = []

        def record(keys, **kwargs):
            seen.append((list(keys), Session.objects.filter(session_key=key).exists()))
            return {url: None for url in kwargs["base_urls"]}

        with mock.patch.object(signals, "revoke_sessions", record):
            async_to_sync(auth.alogout)(request)
        self.assertEqual(seen, [([key], True), ([key], False)])


@override_settings(ROOT_URLCONF=URLCONF)
class LoginRequiredMiddlewareTests(TestCase):
    """Django 5.1+ can require a login for every view; the gateway's endpoints opt out."""

    MIDDLEWARE = "django.contrib.auth.middleware.LoginRequiredMiddleware"

    def test_the_gateway_endpoints_are_not_redirected_to_the_login_page(self):
        if django.VERSION < (5, 1):
            # The middleware does not exist before 5.1: nothing to opt out of.
            from django.contrib.auth import middleware

            self.assertFalse(hasattr(middleware, "LoginRequiredMiddleware"))
            return
        with self.settings(
            MIDDLEWARE=[*settings.MIDDLEWARE, self.MIDDLEWARE],
            LABEL_GATEWAY_REGENERATE_TOKEN=REGEN_TOKEN,
            LABEL_GATEWAY_REGENERATE=f"{__name__}.regenerate_pdf",
        ):
            anonymous = self.client.get(reverse("label_gateway:label_access", args=["T1"]))
            regenerated = self.client.post(
                reverse("label_gateway:label_regenerate", args=["T1"]),
                HTTP_AUTHORIZATION=f"Bearer {REGEN_TOKEN}",
            )
        self.assertEqual(anonymous.status_code, 403)
        self.assertEqual(regenerated.status_code, 200)


# --- the carrier download --------------------------------------------------------


@override_settings(
    ROOT_URLCONF=URLCONF,
    LABEL_GATEWAY_REGENERATE_TOKEN=REGEN_TOKEN,
    LABEL_GATEWAY_REGENERATE=f"{__name__}.regenerate_from_carrier",
)
class CarrierDownloadTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.carrier = FakeServer()
        cls.carrier.routes[("GET", "/ok.pdf")] = (200, {}, PDF)
        cls.carrier.routes[("GET", "/html")] = (200, {}, b"<html>")
        cls.allowed = [cls.carrier.url.removeprefix("http://")]

    @classmethod
    def tearDownClass(cls):
        cls.carrier.stop()
        super().tearDownClass()

    def setUp(self):
        quiet_request_logger(self)
        self.carrier.requests.clear()

    def regenerate(self, url, allow=None):
        CARRIER_URL["url"] = url
        allowed = self.allowed if allow is None else allow
        with self.settings(LABEL_GATEWAY_FETCH_ALLOW_PRIVATE=allowed):
            return self.client.post(
                reverse("label_gateway:label_regenerate", args=["U1"]),
                HTTP_AUTHORIZATION=f"Bearer {REGEN_TOKEN}",
            )

    def assertFailed(self, response):
        self.assertEqual(response.status_code, 502)
        self.assertEqual(response.json(), {"error": "label download failed"})

    def test_an_allowed_carrier_is_downloaded_without_the_environment_proxy(self):
        proxy = Listener()
        self.addCleanup(proxy.close)
        output = run_with_proxy_env(
            proxy.url,
            f"""
            import django
            from django.conf import settings
            settings.configure(
                INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
                LABEL_GATEWAY_FETCH_ALLOW_PRIVATE={self.allowed!r},
                LABEL_GATEWAY_FETCH_TIMEOUT=2,
            )
            django.setup()
            from label_gateway_django.views import _download
            print("downloaded", len(_download({self.carrier.url + "/ok.pdf"!r})))
            """,
        )
        self.assertIn(f"downloaded {len(PDF)}", output)
        self.assertEqual(len(self.carrier.requests), 1)
        self.assertEqual(proxy.connections(), 0)

    def test_loopback_is_refused_unless_listed(self):
        with self.assertLogs("label_gateway_django.views", "WARNING"):
            self.assertFailed(self.regenerate(f"{self.carrier.url}/ok.pdf", allow=[]))
        self.assertEqual(self.carrier.requests, [])

    def test_every_redirect_hop_is_held_to_the_address_rule(self):
        inside = Listener()  # a private service the carrier's redirect points at
        self.addCleanup(inside.close)
        for target in (f"{inside.url}/admin", "http://169.254.169.254/latest/meta-data/"):
            self.carrier.routes[("GET", "/moved")] = (302, {"Location": target}, b"")
            with self.subTest(target=target), self.assertLogs("label_gateway_django.views"):
                self.assertFailed(self.regenerate(f"{self.carrier.url}/moved"))
        self.assertEqual(inside.connections(), 0)
        self.carrier.routes[("GET", "/moved")] = (302, {"Location": "/ok.pdf"}, b"")
        self.assertEqual(self.regenerate(f"{self.carrier.url}/moved").content, PDF)

    def test_one_message_for_every_failure(self):
        closed = Listener()
        closed.close()
        for url in (
            f"{closed.url}/x.pdf",
            f"{self.carrier.url}/missing",
            f"{self.carrier.url}/html",
            "ftp://carrier.example/x.pdf",
        ):
            with self.subTest(url=url), self.assertLogs("label_gateway_django.views"):
                self.assertFailed(self.regenerate(url, allow=[*self.allowed, closed.url[7:]]))

    def test_a_redirect_from_https_to_http_is_refused(self):
        answers = [_http.Response(302, {"Location": "http://carrier.example/x.pdf"}, b"")]
        with mock.patch.object(netguard, "checked_address", return_value="192.0.2.1"):
            with mock.patch.object(_http, "exchange", side_effect=answers) as exchange:
                with self.assertRaises(views._DownloadError) as ctx:
                    views._download("https://carrier.example/x.pdf")
        self.assertEqual(exchange.call_count, 1)
        self.assertIn("https to http", str(ctx.exception))

    @override_settings(LABEL_GATEWAY_FETCH_TIMEOUT=0.3)
    def test_a_dripping_carrier_is_cut_off_at_the_deadline(self):
        drip = DripServer(b"HTTP/1.1 200 OK\r\nContent-Length: 105\r\n\r\n%PDF-")
        self.addCleanup(drip.close)
        with self.assertLogs("label_gateway_django.views") as logs:
            self.assertFailed(self.regenerate(drip.url, allow=[drip.url[7:]]))
        self.assertIn("timed out", logs.output[0])
        self.assertTrue(drip.closed_early.wait(5), "the download outlived its deadline")
        self.assertFalse(drip.finished.is_set())


class PublicAddressTests(SimpleTestCase):
    """The same addresses as the gateway's own rule (src/netguard.rs)."""

    def test_internal_addresses_are_not_public(self):
        for address in (
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
            "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
            "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1", "fd00::1", "ff02::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:a00:1::",
            "2001:db8::1", "::127.0.0.1",
        ):  # fmt: skip
            with self.subTest(address=address):
                self.assertFalse(netguard.is_public(ipaddress.ip_address(address)))

    def test_public_addresses_are_public(self):
        for address in ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"):
            with self.subTest(address=address):
                self.assertTrue(netguard.is_public(ipaddress.ip_address(address)))
