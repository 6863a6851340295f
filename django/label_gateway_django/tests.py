"""Tests for the views and the client.

The views are tested through Django's test client with this module as the
URLconf; the client talks to a small ``http.server`` on the loopback address,
which also plays the carrier for label URLs.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.contrib.auth import get_user_model
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import Resolver404, include, path, resolve, reverse

from . import is_valid_tracking
from .client import LabelGatewayError, fetch_label, purge_label, upload_label

urlpatterns = [path("", include("label_gateway_django.urls"))]

TOKEN = "regen-secret"
PDF = b"%PDF-1.4\n% test label\n%%EOF\n"


class FakeServer:
    """A loopback HTTP server answering from a route table and recording requests."""

    def __init__(self):
        self.routes: dict[tuple[str, str], tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                status, headers, body = server.routes.get(
                    (self.command, self.path), (404, {}, b'{"error": "no route"}')
                )
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
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
    def test_broken_hook_fails_closed(self):
        self.client.force_login(self.user)
        with self.assertLogs("label_gateway_django.views", "ERROR"):
            self.assertEqual(self.client.get(self.url()).status_code, 403)

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

    @classmethod
    def tearDownClass(cls):
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
        with self.assertLogs("label_gateway_django.views"):
            response = self.post("URLOK")
        self.assertEqual(response.status_code, 502)
        self.assertIn("exceeds", response.json()["error"])

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
