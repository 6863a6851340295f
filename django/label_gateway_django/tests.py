"""Tests for the views, the client, the logout signal and the printing helpers.

The views are tested through Django's test client with this module as the
URLconf; the client talks to a small ``http.server`` on the loopback address,
which also plays the carrier for label URLs and the gateway's internal listener.
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth import logout as auth_logout
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import Resolver404, include, path, resolve, reverse
from django.views.decorators.csrf import csrf_exempt

from . import is_valid_tracking, signals
from .client import (
    LabelGatewayError,
    batch_url,
    fetch_label,
    internal_urls,
    purge_label,
    revoke_session,
    upload_label,
    warm_labels,
)
from .printing import print_selected_response


@csrf_exempt
def logout_view(request):
    auth_logout(request)
    return HttpResponse(status=204)


urlpatterns = [
    path("", include("label_gateway_django.urls")),
    path("test-logout/", logout_view),
]

TOKEN = "regen-secret"
PDF = b"%PDF-1.4\n% test label\n%%EOF\n"


class FakeServer:
    """A loopback HTTP server answering from a route table and recording requests."""

    def __init__(self):
        self.routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[dict] = []
        self.delay = 0.0  # seconds to wait before answering
        self.in_flight = 0
        self.max_in_flight = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                time.sleep(server.delay)
                with lock:
                    server.in_flight -= 1
                status, headers, body = server.routes.get(
                    (self.command, self.path), (404, {}, b'{"error": "no route"}')
                )
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll interval: stop() returns within 50 ms instead of 500.
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def quiet_request_logger(testcase):
    """Hide django.request's report of each 5xx answer a test expects."""
    logger = logging.getLogger("django.request")
    testcase.addCleanup(logger.setLevel, logger.level)
    logger.setLevel(logging.CRITICAL)


# Set by RegenerateTests.setUpClass; read by the fake project hook below.
CARRIER = {"url": ""}


def fake_regenerate(tracking):
    if tracking.startswith("PDF"):
        return PDF
    if tracking.startswith("BOOM"):
        raise RuntimeError("carrier API down")
    if tracking.startswith("TEXT"):
        return b"<html>not a pdf</html>"
    if tracking.startswith("URLFILE"):
        return "file:///etc/passwd"
    if tracking.startswith("URL"):
        return f"{CARRIER['url']}/{tracking}.pdf"
    return None


def fake_tracking_url(tracking):
    return f"https://track.example.test/{tracking}"


def deny_all(request, user, tracking):
    return False


def allow_own(request, user, tracking):
    return tracking.startswith(user.get_username().upper())


def broken_hook(request, user, tracking):
    raise RuntimeError("hook bug")


@override_settings(ROOT_URLCONF=__name__)
class LabelAccessTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user("alice", password="pw")

    def url(self, tracking="ABC123"):
        return reverse("label_gateway:label_access", args=[tracking])

    def test_anonymous_is_forbidden(self):
        response = self.client.get(self.url())
        self.assertEqual(response.status_code, 403)
        self.assertIn("no-store", response["Cache-Control"])
        self.assertFalse(response.cookies)

    def test_invalid_session_cookie_is_forbidden_not_redirected(self):
        self.client.cookies["sessionid"] = "not-a-session"
        response = self.client.get(self.url())
        self.assertEqual(response.status_code, 403)

    def test_logged_in_user_gets_204_and_session_untouched(self):
        self.client.force_login(self.user)
        response = self.client.get(self.url(), HTTP_X_REQUEST_ID="req-1")
        self.assertEqual(response.status_code, 204)
        self.assertEqual(response.content, b"")
        self.assertIn("no-store", response["Cache-Control"])
        self.assertIn("Cookie", response["Vary"])
        self.assertFalse(response.cookies, "a valid session must not be re-issued")

    def test_head_is_allowed(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.head(self.url()).status_code, 204)

    def test_other_methods_are_rejected(self):
        # With CSRF enforced, as on a real server: the answer must be 405, not a CSRF 403.
        client = self.client_class(enforce_csrf_checks=True)
        client.force_login(self.user)
        self.assertEqual(client.post(self.url()).status_code, 405)
        self.assertEqual(client.delete(self.url()).status_code, 405)

    def test_missing_trailing_slash_does_not_redirect(self):
        self.client.force_login(self.user)
        response = self.client.get(self.url().rstrip("/"))
        self.assertEqual(response.status_code, 204)

    @override_settings(LABEL_GATEWAY_ACCESS_CHECK=f"{__name__}.deny_all")
    def test_hook_can_deny(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.get(self.url()).status_code, 403)

    @override_settings(LABEL_GATEWAY_ACCESS_CHECK=f"{__name__}.allow_own")
    def test_hook_receives_user_and_tracking(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.get(self.url("ALICE-1")).status_code, 204)
        self.assertEqual(self.client.get(self.url("BOB-1")).status_code, 403)

    @override_settings(LABEL_GATEWAY_ACCESS_CHECK=f"{__name__}.broken_hook")
    def test_a_hook_that_raises_answers_503_so_the_gateway_caches_nothing(self):
        self.client.force_login(self.user)
        quiet_request_logger(self)
        with self.assertLogs("label_gateway_django.views", "ERROR"):
            response = self.client.get(self.url())
        self.assertEqual(response.status_code, 503)
        self.assertNotIn("X-Label-User", response)

    def test_allowed_answer_names_the_user_for_the_audit_log(self):
        self.client.force_login(self.user)
        response = self.client.get(self.url())
        self.assertEqual(response.status_code, 204)
        self.assertEqual(response["X-Label-User"], "alice")

    @override_settings(LABEL_GATEWAY_AUDIT_USER="pk")
    def test_audit_user_can_be_the_primary_key(self):
        self.client.force_login(self.user)
        self.assertEqual(self.client.get(self.url())["X-Label-User"], str(self.user.pk))

    @override_settings(LABEL_GATEWAY_AUDIT_USER=None)
    def test_audit_user_can_be_turned_off(self):
        self.client.force_login(self.user)
        response = self.client.get(self.url())
        self.assertEqual(response.status_code, 204)
        self.assertNotIn("X-Label-User", response)

    def test_refused_answers_name_no_user(self):
        self.assertNotIn("X-Label-User", self.client.get(self.url()))
        with override_settings(LABEL_GATEWAY_ACCESS_CHECK=f"{__name__}.deny_all"):
            self.client.force_login(self.user)
            response = self.client.get(self.url())
        self.assertEqual(response.status_code, 403)
        self.assertNotIn("X-Label-User", response)

    def test_audit_user_is_one_printable_ascii_token(self):
        user = get_user_model().objects.create_user("jörg k@shop.example", password="pw")
        self.client.force_login(user)
        value = self.client.get(self.url())["X-Label-User"]
        self.assertEqual(value, "j%C3%B6rg%20k@shop.example")
        self.assertRegex(value, r"^[\x21-\x7e]+$")

    def test_bad_audit_user_setting_is_a_system_check_error(self):
        from .views import check_settings

        self.assertEqual(check_settings(), [])
        with override_settings(LABEL_GATEWAY_AUDIT_USER="email"):
            errors = check_settings()
            self.assertEqual([e.id for e in errors], ["label_gateway_django.E001"])
            self.assertIn("LABEL_GATEWAY_AUDIT_USER", errors[0].msg)
            # Should the check be ignored, the view fails closed (the gateway answers 503).
            self.client.force_login(self.user)
            with self.assertRaises(ImproperlyConfigured), self.assertLogs("django.request"):
                self.client.get(self.url())

    def test_invalid_tracking_is_rejected_by_the_resolver(self):
        self.client.force_login(self.user)
        for bad in ("a.b", "a%2Fb", "x" * 65, "sp ace", "%C3%A9"):
            with self.subTest(bad=bad):
                path_ = f"/internal/label-access/{bad}/"
                self.assertEqual(self.client.get(path_).status_code, 404)
        with self.assertRaises(Resolver404):
            resolve("/internal/label-regenerate/../x/", urlconf=__name__)
        self.assertEqual(
            resolve("/internal/label-access/" + "x" * 64 + "/", urlconf=__name__).url_name,
            "label_access",
        )


@override_settings(
    ROOT_URLCONF=__name__,
    LABEL_GATEWAY_REGENERATE_TOKEN=TOKEN,
    LABEL_GATEWAY_REGENERATE=f"{__name__}.fake_regenerate",
    LABEL_GATEWAY_TRACKING_URL=f"{__name__}.fake_tracking_url",
)
class RegenerateTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.carrier = FakeServer()
        CARRIER["url"] = cls.carrier.url
        cls.carrier.routes[("GET", "/URLOK.pdf")] = (200, {"Content-Type": "application/pdf"}, PDF)
        cls.carrier.routes[("GET", "/URLHTML.pdf")] = (200, {}, b"<html></html>")
        # The stand-in carrier listens on loopback, which downloads refuse unless listed.
        cls.allow_carrier = override_settings(
            LABEL_GATEWAY_FETCH_ALLOW_PRIVATE=[cls.carrier.url.removeprefix("http://")]
        )
        cls.allow_carrier.enable()

    @classmethod
    def tearDownClass(cls):
        cls.allow_carrier.disable()
        cls.carrier.stop()
        super().tearDownClass()

    def setUp(self):
        quiet_request_logger(self)
        self.client = self.client_class(enforce_csrf_checks=True)

    def post(self, tracking, token=TOKEN, **extra):
        url = reverse("label_gateway:label_regenerate", args=[tracking])
        if token is not None:
            extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return self.client.post(url, **extra)

    def test_missing_or_wrong_token_is_401(self):
        self.assertEqual(self.post("PDF1", token=None).status_code, 401)
        self.assertEqual(self.post("PDF1", token="wrong").status_code, 401)
        self.assertEqual(self.post("PDF1", token="").status_code, 401)
        response = self.post("PDF1", token=None, HTTP_AUTHORIZATION=f"Basic {TOKEN}")
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["WWW-Authenticate"], "Bearer")

    def test_non_ascii_token_is_401_not_500(self):
        self.assertEqual(self.post("PDF1", token="jalape\u00f1o").status_code, 401)

    @override_settings(LABEL_GATEWAY_REGENERATE_TOKEN="")
    def test_unconfigured_token_fails_closed(self):
        with self.assertLogs("label_gateway_django.views", "ERROR"):
            response = self.post("PDF1", token="")
        self.assertEqual(response.status_code, 503)
        self.assertIn("not configured", response.json()["error"])

    def test_get_is_405(self):
        url = reverse("label_gateway:label_regenerate", args=["PDF1"])
        response = self.client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        self.assertEqual(response.status_code, 405)

    def test_bytes_are_returned_as_pdf(self):
        response = self.post("PDF1")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/pdf")
        self.assertEqual(response.content, PDF)
        self.assertIn("no-store", response["Cache-Control"])

    def test_none_is_404_with_tracking_url(self):
        response = self.post("GONE1")
        self.assertEqual(response.status_code, 404)
        self.assertEqual(response.json()["tracking_url"], "https://track.example.test/GONE1")

    @override_settings(LABEL_GATEWAY_TRACKING_URL=None)
    def test_none_without_tracking_url_setting(self):
        response = self.post("GONE1")
        self.assertEqual(response.status_code, 404)
        self.assertIsNone(response.json()["tracking_url"])

    def test_exception_is_502_and_logged(self):
        with self.assertLogs("label_gateway_django.views", "ERROR") as logs:
            response = self.post("BOOM1", HTTP_X_REQUEST_ID="req-42")
        self.assertEqual(response.status_code, 502)
        self.assertEqual(response.json()["error"], "label regeneration failed: RuntimeError")
        self.assertIn("req-42", logs.output[0])

    def test_non_pdf_bytes_are_502(self):
        self.assertEqual(self.post("TEXT1").status_code, 502)

    def test_url_is_downloaded(self):
        response = self.post("URLOK")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, PDF)

    def test_url_download_failures_are_502(self):
        for tracking in ("URLHTML", "URLMISSING", "URLFILE"):
            with self.subTest(tracking=tracking), self.assertLogs("label_gateway_django.views"):
                response = self.post(tracking)
                self.assertEqual(response.status_code, 502)
                self.assertIn("error", response.json())

    @override_settings(LABEL_GATEWAY_FETCH_MAX_BYTES=10)
    def test_url_download_is_size_bounded(self):
        with self.assertLogs("label_gateway_django.views") as logs:
            response = self.post("URLOK")
        self.assertEqual(response.status_code, 502)
        self.assertEqual(response.json()["error"], "label download failed")
        self.assertIn("answer too large", logs.output[0])

    def test_invalid_tracking_is_404(self):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
        self.assertEqual(
            self.client.post("/internal/label-regenerate/a.b/", **auth).status_code, 404
        )
        self.assertEqual(
            self.client.post("/internal/label-regenerate/" + "x" * 65 + "/", **auth).status_code,
            404,
        )


class ClientTests(SimpleTestCase):
    TOKEN = "ingest-secret-token"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateway = FakeServer()

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        super().tearDownClass()

    def setUp(self):
        self.gateway.routes.clear()
        self.gateway.requests.clear()
        self.kwargs = {"base_url": self.gateway.url + "/", "token": self.TOKEN, "timeout": 5}

    def reply(self, method, path_, status, payload=None):
        body = json.dumps(payload).encode() if payload is not None else b""
        self.gateway.routes[(method, path_)] = (status, {"Content-Type": "application/json"}, body)

    def test_upload_label(self):
        stored = {"key": "labels/ABC.pdf", "size": len(PDF), "etag": '"e"'}
        self.reply("PUT", "/internal/labels/ABC", 201, stored)
        self.assertEqual(upload_label("ABC", PDF, **self.kwargs), stored)
        (req,) = self.gateway.requests
        self.assertEqual(req["headers"]["Authorization"], f"Bearer {self.TOKEN}")
        self.assertEqual(req["headers"]["Content-Type"], "application/pdf")
        self.assertEqual(req["body"], PDF)

    def test_upload_label_overwrite(self):
        self.reply(
            "PUT", "/internal/labels/ABC?overwrite=true", 201, {"key": "k", "size": 1, "etag": "e"}
        )
        upload_label("ABC", PDF, overwrite=True, **self.kwargs)
        self.assertEqual(self.gateway.requests[0]["path"], "/internal/labels/ABC?overwrite=true")

    def test_fetch_label(self):
        self.reply("POST", "/internal/labels/ABC/fetch", 201, {"key": "k", "size": 1, "etag": "e"})
        self.assertEqual(
            fetch_label("ABC", "https://carrier.example/x.pdf", **self.kwargs)["key"], "k"
        )
        (req,) = self.gateway.requests
        self.assertEqual(json.loads(req["body"]), {"url": "https://carrier.example/x.pdf"})
        self.assertEqual(req["headers"]["Content-Type"], "application/json")

    def test_purge_label(self):
        self.reply("DELETE", "/internal/cache/ABC", 204)
        self.assertIsNone(purge_label("ABC", **self.kwargs))
        self.assertEqual(self.gateway.requests[0]["method"], "DELETE")

    def test_error_carries_status_and_message_but_not_token(self):
        self.reply("PUT", "/internal/labels/ABC", 409, {"error": "label already exists"})
        with self.assertRaises(LabelGatewayError) as ctx:
            upload_label("ABC", PDF, **self.kwargs)
        self.assertEqual(ctx.exception.status, 409)
        self.assertEqual(ctx.exception.message, "label already exists")
        self.assertNotIn(self.TOKEN, str(ctx.exception) + repr(ctx.exception))

    def test_error_without_json_body(self):
        self.gateway.routes[("DELETE", "/internal/cache/ABC")] = (500, {}, b"")
        with self.assertRaises(LabelGatewayError) as ctx:
            purge_label("ABC", **self.kwargs)
        self.assertEqual(ctx.exception.status, 500)
        self.assertTrue(ctx.exception.message)

    def test_redirects_are_not_followed(self):
        self.gateway.routes[("POST", "/internal/labels/ABC/fetch")] = (
            307,
            {"Location": "/elsewhere"},
            b"",
        )
        with self.assertRaises(LabelGatewayError) as ctx:
            fetch_label("ABC", "https://carrier.example/x.pdf", **self.kwargs)
        self.assertEqual(ctx.exception.status, 307)
        self.assertEqual(len(self.gateway.requests), 1)

    def test_unreachable_gateway(self):
        stopped = FakeServer()
        stopped.stop()
        with self.assertRaises(LabelGatewayError) as ctx:
            purge_label("ABC", base_url=stopped.url, token=self.TOKEN, timeout=5)
        self.assertIsNone(ctx.exception.status)

    def test_invalid_tracking_never_reaches_the_network(self):
        for bad in ("../admin", "a/b", "", "x" * 65, "a?b"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                purge_label(bad, **self.kwargs)
        self.assertEqual(self.gateway.requests, [])

    def test_configuration_from_settings(self):
        self.reply("DELETE", "/internal/cache/ABC", 204)
        with self.settings(
            LABEL_GATEWAY_URL=self.gateway.url, LABEL_GATEWAY_INTERNAL_TOKEN="from-settings"
        ):
            purge_label("ABC")
        self.assertEqual(
            self.gateway.requests[0]["headers"]["Authorization"], "Bearer from-settings"
        )

    def test_missing_configuration(self):
        from django.core.exceptions import ImproperlyConfigured

        with self.settings(LABEL_GATEWAY_URL=None, LABEL_GATEWAY_INTERNAL_TOKEN=None):
            with self.assertRaises(ImproperlyConfigured):
                purge_label("ABC")


class TrackingPatternTests(SimpleTestCase):
    def test_is_valid_tracking(self):
        for good in ("A", "1Z999AA10123456784", "a_b-C", "x" * 64):
            self.assertTrue(is_valid_tracking(good), good)
        for bad in ("", "x" * 65, "a b", "a/b", "a.b", "abc\n", "\u00e9", None, 12):
            self.assertFalse(is_valid_tracking(bad), bad)


# --- logout revokes the session on every gateway ---------------------------

INTERNAL_TOKEN = "internal-secret-token"
REVOKE = ("POST", "/internal/sessions/revoke")


class RevokeSessionTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateways = [FakeServer(), FakeServer()]

    @classmethod
    def tearDownClass(cls):
        for gateway in cls.gateways:
            gateway.stop()
        super().tearDownClass()

    def setUp(self):
        for gateway in self.gateways:
            gateway.routes.clear()
            gateway.requests.clear()
            gateway.delay = 0.0
            gateway.routes[REVOKE] = (204, {}, b"")
        self.urls = [gateway.url for gateway in self.gateways]

    def test_posts_the_key_to_every_gateway(self):
        outcome = revoke_session("k" * 32, base_urls=self.urls, token=INTERNAL_TOKEN)
        self.assertEqual(outcome, {self.urls[0]: None, self.urls[1]: None})
        for gateway in self.gateways:
            (req,) = gateway.requests
            self.assertEqual((req["method"], req["path"]), REVOKE)
            self.assertEqual(req["headers"]["Authorization"], f"Bearer {INTERNAL_TOKEN}")
            self.assertEqual(req["headers"]["Content-Type"], "application/json")
            self.assertEqual(json.loads(req["body"]), {"session_key": "k" * 32})

    def test_each_gateway_has_its_own_outcome(self):
        self.gateways[1].routes[REVOKE] = (401, {}, b'{"error": "bad token"}')
        stopped = FakeServer()
        stopped.stop()
        outcome = revoke_session(
            "key", base_urls=self.urls + [stopped.url + "/"], token=INTERNAL_TOKEN
        )
        self.assertIsNone(outcome[self.urls[0]])
        self.assertEqual(outcome[self.urls[1]].status, 401)
        self.assertEqual(outcome[self.urls[1]].message, "bad token")
        self.assertIsNone(outcome[stopped.url + "/"].status)

    def test_gateways_are_asked_in_parallel_within_the_timeout(self):
        for gateway in self.gateways:
            gateway.delay = 0.5
        start = time.monotonic()
        outcome = revoke_session("key", base_urls=self.urls, token=INTERNAL_TOKEN, timeout=0.2)
        self.assertLess(time.monotonic() - start, 0.45)
        self.assertTrue(all(error.status is None for error in outcome.values()))

    def test_default_timeout_is_short(self):
        from . import client

        self.assertEqual(client.REVOKE_TIMEOUT, 2.0)
        deadlines = []

        def run_all(jobs, deadline):
            deadlines.append(deadline - time.monotonic())
            return [(204, b"")] * len(jobs)

        with mock.patch.object(client._http, "run_all", run_all):
            revoke_session("key", base_urls=self.urls[:1], token=INTERNAL_TOKEN)
        self.assertEqual(len(deadlines), 1)
        self.assertAlmostEqual(deadlines[0], 2.0, delta=0.5)

    def test_settings(self):
        with self.settings(
            LABEL_GATEWAY_INTERNAL_URLS=self.urls, LABEL_GATEWAY_INTERNAL_TOKEN=INTERNAL_TOKEN
        ):
            self.assertEqual(set(revoke_session("key")), set(self.urls))
        self.assertEqual(len(self.gateways[1].requests), 1)

    def test_bad_arguments(self):
        for bad in ("", None):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                revoke_session(bad, base_urls=self.urls, token=INTERNAL_TOKEN)
        with self.assertRaises(ImproperlyConfigured):
            revoke_session("key", base_urls=[], token=INTERNAL_TOKEN)
        with self.settings(LABEL_GATEWAY_INTERNAL_TOKEN=None), self.assertRaises(
            ImproperlyConfigured
        ):
            revoke_session("key", base_urls=self.urls)
        self.assertEqual(self.gateways[0].requests, [])


class InternalUrlsTests(SimpleTestCase):
    def test_resolution(self):
        cases = [
            (None, None, []),
            ("http://g:9090", None, ["http://g:9090"]),
            ("http://g:9090", ["http://a", "http://b"], ["http://a", "http://b"]),
            ("http://g:9090", [], []),  # explicitly none
            (None, " http://a , ,http://b", ["http://a", "http://b"]),
        ]
        for url, urls, expected in cases:
            with self.subTest(url=url, urls=urls), self.settings(
                LABEL_GATEWAY_URL=url, LABEL_GATEWAY_INTERNAL_URLS=urls
            ):
                self.assertEqual(internal_urls(), expected)


@override_settings(ROOT_URLCONF=__name__, LABEL_GATEWAY_INTERNAL_TOKEN=INTERNAL_TOKEN)
class LogoutSignalTests(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateways = [FakeServer(), FakeServer()]

    @classmethod
    def tearDownClass(cls):
        for gateway in cls.gateways:
            gateway.stop()
        super().tearDownClass()

    @classmethod
    def setUpTestData(cls):
        cls.user = get_user_model().objects.create_user("erin", password="pw")

    def setUp(self):
        for gateway in self.gateways:
            gateway.routes.clear()
            gateway.requests.clear()
            gateway.delay = 0.0
            gateway.routes[REVOKE] = (204, {}, b"")
        self.urls = [gateway.url for gateway in self.gateways]
        self.client.force_login(self.user)
        self.key = self.client.session.session_key

    def logout(self):
        response = self.client.post("/test-logout/")
        self.assertEqual(response.status_code, 204)
        self.assertFalse(Session.objects.filter(session_key=self.key).exists())

    def revoked(self, gateway):
        return [json.loads(req["body"])["session_key"] for req in gateway.requests]

    def test_logout_revokes_on_every_gateway(self):
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=self.urls, LABEL_GATEWAY_URL=None):
            with self.assertNoLogs("label_gateway_django", "WARNING"):
                self.logout()
        for gateway in self.gateways:
            self.assertEqual(self.revoked(gateway), [self.key])
            self.assertEqual(
                gateway.requests[0]["headers"]["Authorization"], f"Bearer {INTERNAL_TOKEN}"
            )

    def test_label_gateway_url_alone_is_the_default(self):
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=None, LABEL_GATEWAY_URL=self.urls[1]):
            self.logout()
        self.assertEqual(self.gateways[0].requests, [])
        self.assertEqual(self.revoked(self.gateways[1]), [self.key])

    def test_nothing_configured_does_nothing_silently(self):
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=None, LABEL_GATEWAY_URL=None):
            with mock.patch.object(signals, "revoke_sessions") as revoke:
                with self.assertNoLogs("label_gateway_django", "DEBUG"):
                    self.logout()
        revoke.assert_not_called()

    def test_anonymous_logout_without_session_sends_nothing(self):
        self.client.logout()
        self.client.cookies.clear()
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=self.urls):
            self.assertEqual(self.client.post("/test-logout/").status_code, 204)
        self.assertEqual(self.gateways[0].requests, [])

    def test_failures_are_logged_without_secrets_and_logout_completes(self):
        # The first gateway's error text quotes the key: it must be redacted.
        echo = json.dumps({"error": f"no session {self.key} ({INTERNAL_TOKEN})"}).encode()
        self.gateways[0].routes[REVOKE] = (400, {}, echo)
        stopped = FakeServer()
        stopped.stop()
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=[self.urls[0], stopped.url, self.urls[1]]):
            with self.assertLogs("label_gateway_django.signals", "WARNING") as logs:
                self.logout()
        self.assertEqual(len(logs.records), 2)
        text = "\n".join(logs.output)
        self.assertIn(self.urls[0], text)
        self.assertIn(stopped.url, text)
        self.assertNotIn(self.key, text)
        self.assertNotIn(INTERNAL_TOKEN, text)
        self.assertEqual(self.revoked(self.gateways[1]), [self.key])

    def test_a_slow_gateway_delays_logout_by_the_timeout_only(self):
        from . import client

        self.gateways[0].delay = 1.0
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=self.urls), mock.patch.object(
            client, "REVOKE_TIMEOUT", 0.2
        ):
            start = time.monotonic()
            with self.assertLogs("label_gateway_django.signals", "WARNING"):
                self.logout()
        self.assertLess(time.monotonic() - start, 0.9)
        self.assertEqual(self.revoked(self.gateways[1]), [self.key])

    def test_missing_token_warns(self):
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=self.urls, LABEL_GATEWAY_INTERNAL_TOKEN=""):
            with self.assertLogs("label_gateway_django.signals", "WARNING") as logs:
                self.logout()
        self.assertIn("LABEL_GATEWAY_INTERNAL_TOKEN", logs.output[0])
        self.assertEqual(self.gateways[0].requests, [])

    def test_unexpected_error_never_breaks_logout(self):
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=self.urls), mock.patch.object(
            signals, "revoke_sessions", side_effect=RuntimeError(f"boom {self.key}")
        ):
            with self.assertLogs("label_gateway_django.signals", "WARNING") as logs:
                self.logout()
        self.assertNotIn(self.key, "\n".join(logs.output))

    @override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
    def test_signed_cookie_sessions_revoke_the_cookie_value(self):
        self.client.force_login(self.user)
        cookie = self.client.cookies["sessionid"].value
        with self.settings(LABEL_GATEWAY_INTERNAL_URLS=self.urls[:1]):
            self.assertEqual(self.client.post("/test-logout/").status_code, 204)
        self.assertIn(cookie, self.revoked(self.gateways[0]))


# --- warm-up ---------------------------------------------------------------


class WarmLabelsTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gateway = FakeServer()

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        super().tearDownClass()

    def setUp(self):
        self.gateway.routes.clear()
        self.gateway.requests.clear()
        self.gateway.delay = 0.0
        self.gateway.max_in_flight = 0
        self.kwargs = {"base_url": self.gateway.url, "token": INTERNAL_TOKEN, "timeout": 5}

    def route(self, tracking, status):
        self.gateway.routes[("PUT", f"/internal/cache/{tracking}")] = (status, {}, b"")

    def test_outcomes_in_given_order(self):
        for tracking, status in [("C1", 204), ("C2", 204), ("R1", 409), ("E1", 500), ("E2", 401)]:
            self.route(tracking, status)
        # M1 has no route: the fake answers 404.
        given = ["C2", "M1", "R1", "bad/one", "E1", "C1", "C2", None, "E2"]
        result = warm_labels(given, **self.kwargs)
        self.assertEqual(
            result,
            {
                "cached": ["C2", "C1"],
                "missing": ["M1"],
                "refused": ["R1"],
                "failed": ["bad/one", "E1", None, "E2"],
            },
        )
        paths = sorted(req["path"] for req in self.gateway.requests)
        self.assertEqual(paths, sorted(f"/internal/cache/{t}" for t in "C1 C2 M1 R1 E1 E2".split()))
        for req in self.gateway.requests:
            self.assertEqual(req["method"], "PUT")
            self.assertEqual(req["headers"]["Authorization"], f"Bearer {INTERNAL_TOKEN}")
            self.assertEqual(req["headers"]["Content-Length"], "0")

    def test_concurrency_is_bounded(self):
        self.gateway.delay = 0.05
        labels = [f"L{i}" for i in range(12)]
        for tracking in labels:
            self.route(tracking, 204)
        result = warm_labels(labels, 3, **self.kwargs)
        self.assertEqual(result["cached"], labels)
        self.assertLessEqual(self.gateway.max_in_flight, 3)
        self.assertGreater(self.gateway.max_in_flight, 1)

    def test_unreachable_gateway_fails_every_label(self):
        stopped = FakeServer()
        stopped.stop()
        result = warm_labels(["A", "B"], base_url=stopped.url, token=INTERNAL_TOKEN, timeout=5)
        self.assertEqual(result, {"cached": [], "missing": [], "refused": [], "failed": ["A", "B"]})

    def test_empty_and_bad_arguments(self):
        nothing = {"cached": [], "missing": [], "refused": [], "failed": []}
        self.assertEqual(warm_labels([], **self.kwargs), nothing)
        with self.assertRaises(ValueError):
            warm_labels("ABC", **self.kwargs)
        with self.assertRaises(ValueError):
            warm_labels(["A"], 0, **self.kwargs)
        with self.settings(LABEL_GATEWAY_URL=None), self.assertRaises(ImproperlyConfigured):
            warm_labels(["A"], token=INTERNAL_TOKEN)
        self.assertEqual(self.gateway.requests, [])

    def test_settings_and_generators(self):
        self.route("G1", 204)
        with self.settings(
            LABEL_GATEWAY_URL=self.gateway.url, LABEL_GATEWAY_INTERNAL_TOKEN=INTERNAL_TOKEN
        ):
            self.assertEqual(warm_labels(t for t in ["G1"])["cached"], ["G1"])


# --- batch printing --------------------------------------------------------


class BatchPrintingTests(SimpleTestCase):
    def test_batch_url(self):
        self.assertEqual(
            batch_url(["A", "B-2", "c_3"]), "/shipping-label/batch.pdf?t=A&t=B-2&t=c_3"
        )
        self.assertEqual(batch_url(("A",), "zip"), "/shipping-label/batch.zip?t=A")
        self.assertEqual(batch_url(["A"], partial=True), "/shipping-label/batch.pdf?t=A&partial=1")

    def test_batch_url_rejects_bad_input(self):
        for bad in ([], ["A", "a&t=b"], ["A", None], "ABC"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                batch_url(bad)
        with self.assertRaises(ValueError):
            batch_url(["A"], "tar")

    def test_short_list_redirects(self):
        labels = [f"1Z{i:016d}" for i in range(50)]
        response = print_selected_response(labels)
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], batch_url(labels))
        self.assertIn("no-store", response["Cache-Control"])
        query = parse_qsl(urlsplit(response["Location"]).query)
        self.assertEqual([value for _, value in query], labels)

    def test_long_list_posts_a_self_submitting_form(self):
        labels = [f"1Z{i:016d}" for i in range(51)]
        response = print_selected_response(labels, "zip", partial=True)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "text/html; charset=utf-8")
        self.assertIn("no-store", response["Cache-Control"])
        page = response.content.decode()
        form = re.search(r'<form id="label-gateway-batch" method="post" action="([^"]+)">', page)
        self.assertEqual(html.unescape(form.group(1)), "/shipping-label/batch.zip?partial=1")
        fields = re.findall(r'<input type="hidden" name="t" value="([^"]+)">', page)
        self.assertEqual(fields, labels)
        self.assertNotIn("csrfmiddlewaretoken", page)
        self.assertIn('document.getElementById("label-gateway-batch").submit()', page)
        self.assertIn('<button type="submit"', page)

    def test_long_tracking_numbers_post_before_fifty(self):
        labels = [f"{i:02d}" + "X" * 62 for i in range(40)]  # 40 URLs of 64 characters
        self.assertEqual(print_selected_response(labels).status_code, 200)
        self.assertEqual(print_selected_response(labels[:5]).status_code, 302)
        self.assertEqual(print_selected_response(labels[:5], max_redirect=4).status_code, 200)

    def test_invalid_input_raises(self):
        for bad in ([], ["ok", "<script>"]):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                print_selected_response(bad)
