import io
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock

import django
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import SimpleTestCase, TestCase, override_settings

from . import labels, stats

ACCESS = "/internal/label-access/{}/"
REGENERATE = "/internal/label-regenerate/{}/"


def make_session(username, password=None):
    out = io.StringIO()
    args = ["--username", username] + (["--password", password] if password else [])
    call_command("make_session", *args, stdout=out)
    return out.getvalue()


class LabelsTests(SimpleTestCase):
    def test_regen_pdf_is_deterministic_and_sized(self):
        pdf = labels.regenerate("REGEN123")
        self.assertEqual(len(pdf), labels.LABEL_SIZE)
        self.assertTrue(pdf.startswith(b"%PDF-1.4\n"))
        self.assertTrue(pdf.endswith(b"%%EOF\n"))
        self.assertIn(b"REGEN123", pdf)
        self.assertEqual(pdf, labels.regenerate("REGEN123"))
        self.assertNotEqual(pdf, labels.regenerate("REGEN124"))

    def test_pdf_cross_reference_offsets_are_correct(self):
        pdf = labels.label_pdf("REGEN" + "x" * 59)
        startxref = int(re.search(rb"startxref\n(\d+)\n", pdf).group(1))
        self.assertTrue(pdf[startxref:].startswith(b"xref\n"))
        offsets = re.findall(rb"(\d{10}) 00000 n \n", pdf)
        for number, offset in enumerate(offsets, start=1):
            self.assertTrue(pdf[int(offset) :].startswith(b"%d 0 obj" % number))

    def test_other_prefixes(self):
        with mock.patch.object(labels.time, "sleep") as sleep:
            self.assertEqual(labels.regenerate("SLOW1"), labels.label_pdf("SLOW1"))
        sleep.assert_called_once_with(labels.SLOW_SECONDS)
        with self.assertRaises(RuntimeError):
            labels.regenerate("FAIL1")
        self.assertIsNone(labels.regenerate("NOPE1"))
        self.assertEqual(
            labels.tracking_url("NOPE1"), "https://tracking.example.com/track?number=NOPE1"
        )

    def test_url_prefix_reads_environment(self):
        with mock.patch.dict(
            os.environ, {"LABEL_GATEWAY_TEST_CARRIER_URL": "http://127.0.0.1:1/x.pdf"}
        ):
            self.assertEqual(labels.regenerate("URL1"), "http://127.0.0.1:1/x.pdf")
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertIsNone(labels.regenerate("URL1"))


class CommandTests(TestCase):
    def test_make_session_prints_only_a_working_session_key(self):
        output = make_session("alice")
        self.assertRegex(output, r"^[a-z0-9]{32}\n$")
        key = output.strip()
        self.assertTrue(Session.objects.filter(session_key=key).exists())

        self.client.cookies[settings.SESSION_COOKIE_NAME] = key
        self.assertEqual(self.client.get(ACCESS.format("ABC")).status_code, 204)

    def test_make_session_reuses_an_existing_user(self):
        first = make_session("bob", "s3cret").strip()
        second = make_session("bob", "s3cret").strip()
        self.assertNotEqual(first, second)
        with self.assertRaises(CommandError):
            make_session("bob", "other")

    def test_gateway_setup_is_quiet_and_idempotent(self):
        out = io.StringIO()
        call_command("gateway_setup", stdout=out)
        self.assertEqual(out.getvalue(), "")


class GatewayFlowTests(TestCase):
    def setUp(self):
        # Hide django.request's report of the 502 that a test expects.
        request_logger = logging.getLogger("django.request")
        self.addCleanup(request_logger.setLevel, request_logger.level)
        request_logger.setLevel(logging.CRITICAL)
        stats.reset()
        self.client = self.client_class(enforce_csrf_checks=True)
        self.key = make_session("carol").strip()
        self.client.cookies[settings.SESSION_COOKIE_NAME] = self.key

    def test_logout_invalidates_the_session(self):
        self.assertEqual(self.client.get(ACCESS.format("ABC")).status_code, 204)
        self.assertEqual(self.client.post("/test/logout/").status_code, 204)
        self.assertFalse(Session.objects.filter(session_key=self.key).exists())
        self.client.cookies[settings.SESSION_COOKIE_NAME] = self.key
        self.assertEqual(self.client.get(ACCESS.format("ABC")).status_code, 403)

    def test_someone_elses_label_is_denied_to_a_logged_in_user(self):
        self.assertEqual(self.client.get(ACCESS.format("MINE1")).status_code, 204)
        self.assertEqual(self.client.get(ACCESS.format("NOTYOURS1")).status_code, 403)

    def test_stats_count_calls_by_endpoint_and_tracking(self):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {settings.LABEL_GATEWAY_REGENERATE_TOKEN}"}
        self.client.get(ACCESS.format("A1"))
        self.client.get(ACCESS.format("A1"))
        self.client.get(ACCESS.format("B2"))
        self.client.post(REGENERATE.format("REGEN1"), **auth)
        self.client.get("/test/health/")

        counts = self.client.get("/test/stats/").json()
        self.assertEqual(counts["label-access"], {"total": 3, "by_tracking": {"A1": 2, "B2": 1}})
        self.assertEqual(counts["label-regenerate"], {"total": 1, "by_tracking": {"REGEN1": 1}})
        self.assertEqual(counts["forwarded"]["B2"], {"for": None, "proto": None, "host": None})

        self.assertEqual(self.client.post("/test/stats/reset/").status_code, 204)
        counts = self.client.get("/test/stats/").json()
        self.assertEqual(counts["label-access"], {"total": 0, "by_tracking": {}})

    def test_regenerate_through_project_settings(self):
        auth = {"HTTP_AUTHORIZATION": f"Bearer {settings.LABEL_GATEWAY_REGENERATE_TOKEN}"}
        response = self.client.post(REGENERATE.format("REGEN9"), **auth)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.content, labels.label_pdf("REGEN9"))

        response = self.client.post(REGENERATE.format("NOPE9"), **auth)
        self.assertEqual(response.status_code, 404)
        self.assertEqual(
            response.json()["tracking_url"], "https://tracking.example.com/track?number=NOPE9"
        )

        with self.assertLogs("label_gateway_django.views", "ERROR"):
            response = self.client.post(REGENERATE.format("FAIL9"), **auth)
        self.assertEqual(response.status_code, 502)

    def test_health(self):
        response = self.client.get("/test/health/")
        self.assertEqual((response.status_code, response.content), (200, b"ok"))


def csrf_token(page):
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)


class RevokeRecorder:
    """A stand-in for a gateway's internal listener: records each session revoke."""

    def __init__(self):
        self.revoked = []
        self.authorizations = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/internal/sessions/revoke":
                    recorder.revoked.append(json.loads(body)["session_key"])
                    recorder.authorizations.append(self.headers.get("Authorization"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class SettingsTests(SimpleTestCase):
    SETTINGS = str(Path(__file__).with_name("settings.py"))

    def load(self, **env):
        base = {"LABEL_GATEWAY_TEST_DB": "/tmp/unused.sqlite3"}
        with mock.patch.dict(os.environ, {**base, **env}, clear=True):
            return runpy.run_path(self.SETTINGS)

    def test_internal_gateways_from_the_environment(self):
        loaded = self.load(
            LABEL_GATEWAY_TEST_INTERNAL_URLS=" http://127.0.0.1:9090, http://127.0.0.1:9091 ,",
            LABEL_GATEWAY_TEST_INTERNAL_TOKEN="tok",
        )
        self.assertEqual(
            loaded["LABEL_GATEWAY_INTERNAL_URLS"],
            ["http://127.0.0.1:9090", "http://127.0.0.1:9091"],
        )
        self.assertEqual(loaded["LABEL_GATEWAY_INTERNAL_TOKEN"], "tok")

    def test_unset_means_no_gateway_and_no_token(self):
        loaded = self.load()
        self.assertNotIn("LABEL_GATEWAY_INTERNAL_URLS", loaded)
        self.assertNotIn("LABEL_GATEWAY_URL", loaded)
        self.assertIsNone(loaded["LABEL_GATEWAY_INTERNAL_TOKEN"])
        self.assertEqual(loaded["TEST_DEMO_TRACKING"], "DEMO123")
        self.assertEqual(loaded["LOGIN_REDIRECT_URL"], "/test/home/")
        self.assertEqual(loaded["LOGOUT_REDIRECT_URL"], "/accounts/login/")
        self.assertIn("label_gateway_django", loaded["INSTALLED_APPS"])

    def test_gateway_token_name_is_a_fallback(self):
        self.assertEqual(
            self.load(LABEL_GATEWAY_INTERNAL__TOKEN="g")["LABEL_GATEWAY_INTERNAL_TOKEN"], "g"
        )
        both = self.load(LABEL_GATEWAY_INTERNAL__TOKEN="g", LABEL_GATEWAY_TEST_INTERNAL_TOKEN="t")
        self.assertEqual(both["LABEL_GATEWAY_INTERNAL_TOKEN"], "t")
        self.assertEqual(
            self.load(LABEL_GATEWAY_TEST_DEMO_TRACKING="X9")["TEST_DEMO_TRACKING"], "X9"
        )


class LandingPageTests(TestCase):
    def test_anonymous_is_sent_to_the_login_page(self):
        response = self.client.get("/test/home/")
        self.assertEqual(response.status_code, 302)
        self.assertEqual(response["Location"], "/accounts/login/?next=/test/home/")

    @override_settings(TEST_DEMO_TRACKING="DEMO777")
    def test_page_shows_user_demo_link_and_logout_button(self):
        make_session("frank", "pw")
        self.client.login(username="frank", password="pw")
        response = self.client.get("/test/home/")
        self.assertEqual(response.status_code, 200)
        self.assertIn("no-store", response["Cache-Control"])
        page = response.content.decode()
        self.assertIn('<strong id="username">frank</strong>', page)
        self.assertIn('<a id="demo-label" href="/shipping-label/DEMO777/">', page)
        self.assertRegex(page, r'<form method="post" action="/accounts/logout/">\s*<input')
        self.assertIn('name="csrfmiddlewaretoken"', page)
        self.assertIn('<button type="submit" id="logout-submit">', page)


class LoginPageTests(TestCase):
    def test_login_page_has_the_fields_a_browser_fills_in(self):
        page = self.client.get("/accounts/login/").content.decode()
        self.assertIn('id="id_username"', page)
        self.assertIn('id="id_password"', page)
        self.assertIn('name="csrfmiddlewaretoken"', page)
        self.assertIn('<button type="submit" id="login-submit">', page)

    def test_browser_session_login_home_logout_revokes_on_every_gateway(self):
        gateways = [RevokeRecorder(), RevokeRecorder()]
        for gateway in gateways:
            self.addCleanup(gateway.stop)
        make_session("gina", "pw")
        client = self.client_class(enforce_csrf_checks=True)

        page = client.get("/accounts/login/")
        response = client.post(
            "/accounts/login/",
            {"username": "gina", "password": "pw", "csrfmiddlewaretoken": csrf_token(page)},
        )
        self.assertEqual((response.status_code, response["Location"]), (302, "/test/home/"))
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        self.assertEqual(client.get(ACCESS.format("DEMO123")).status_code, 204)

        home = client.get("/test/home/")
        with self.settings(
            LABEL_GATEWAY_INTERNAL_URLS=[g.url for g in gateways],
            LABEL_GATEWAY_INTERNAL_TOKEN="internal-tok",
        ):
            response = client.post(
                "/accounts/logout/", {"csrfmiddlewaretoken": csrf_token(home)}
            )
        self.assertEqual((response.status_code, response["Location"]), (302, "/accounts/login/"))
        for gateway in gateways:
            self.assertEqual(gateway.revoked, [key])
            self.assertEqual(gateway.authorizations, ["Bearer internal-tok"])
        self.assertFalse(Session.objects.filter(session_key=key).exists())
        client.cookies[settings.SESSION_COOKIE_NAME] = key
        self.assertEqual(client.get(ACCESS.format("DEMO123")).status_code, 403)

    def test_test_logout_endpoint_revokes_too(self):
        gateway = RevokeRecorder()
        self.addCleanup(gateway.stop)
        key = make_session("hank").strip()
        self.client.cookies[settings.SESSION_COOKIE_NAME] = key
        with self.settings(
            LABEL_GATEWAY_INTERNAL_URLS=[gateway.url], LABEL_GATEWAY_INTERNAL_TOKEN="t"
        ):
            self.assertEqual(self.client.post("/test/logout/").status_code, 204)
        self.assertEqual(gateway.revoked, [key])

    def test_login_form_creates_a_session_the_gateway_accepts(self):
        make_session("dave", "pw")
        client = self.client_class(enforce_csrf_checks=True)
        page = client.get("/accounts/login/")
        self.assertEqual(page.status_code, 200)
        token = re.search(
            r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()
        ).group(1)
        response = client.post(
            "/accounts/login/",
            {"username": "dave", "password": "pw", "csrfmiddlewaretoken": token},
        )
        self.assertEqual(response.status_code, 302)
        self.assertEqual(client.get(ACCESS.format("ABC")).status_code, 204)


APP_DIR = Path(__file__).resolve().parents[3] / "django"


class PackagingTests(SimpleTestCase):
    """The app's metadata agrees with what its tests run on (tests/run.sh runs them on the
    lowest and the newest Django allowed), and its wheel carries the licence."""

    def project(self):
        with open(APP_DIR / "pyproject.toml", "rb") as f:
            return tomllib.load(f)["project"]

    def test_the_django_and_python_running_these_tests_are_allowed_and_named(self):
        project = self.project()
        running = django.VERSION[:2]
        self.assertIn(f"Framework :: Django :: {running[0]}.{running[1]}", project["classifiers"])
        (requirement,) = [d for d in project["dependencies"] if d.startswith("Django")]
        low, high = re.fullmatch(r"Django>=([\d.]+),<([\d.]+)", requirement).groups()
        as_tuple = lambda v: tuple(int(part) for part in v.split("."))  # noqa: E731
        self.assertLessEqual(as_tuple(low), running)
        self.assertLess(running, as_tuple(high))
        python = f"{sys.version_info[0]}.{sys.version_info[1]}"
        self.assertIn(f"Programming Language :: Python :: {python}", project["classifiers"])
        self.assertLessEqual(as_tuple(project["requires-python"].removeprefix(">=")), sys.version_info[:2])

    def test_the_wheel_ships_the_mit_license(self):
        with tempfile.TemporaryDirectory() as scratch:
            # A copy, so that the build leaves nothing in the repository.
            source = Path(scratch) / "src"
            shutil.copytree(APP_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--quiet", "--disable-pip-version-check", "-w", scratch, str(source)],
                check=True,
                capture_output=True,
            )  # fmt: skip
            (wheel,) = Path(scratch).glob("*.whl")
            with zipfile.ZipFile(wheel) as archive:
                licenses = [
                    name
                    for name in archive.namelist()
                    if ".dist-info/" in name and name.endswith("/LICENSE")
                ]
                self.assertEqual(len(licenses), 1, archive.namelist())
                self.assertIn("MIT License", archive.read(licenses[0]).decode())
