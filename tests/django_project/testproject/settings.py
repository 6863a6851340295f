"""Settings of the test project. Only for tests and benchmarks: never deploy these."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "label-gateway-test-only-secret-key-not-for-production"
)
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "label_gateway_django",
    "testproject",
]

MIDDLEWARE = [
    # First, so that it counts every request, whatever later middleware does.
    "testproject.middleware.request_stats",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "testproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LABEL_GATEWAY_TEST_DB") or BASE_DIR / "db.sqlite3",
        # runserver is threaded; wait for a writer rather than fail with "database is locked".
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

SESSION_COOKIE_NAME = os.environ.get("DJANGO_SESSION_COOKIE_NAME", "sessionid")

# Fast hashing keeps make_session quick. Test-only: never use in production.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A real browser session: log in, land on a page with a demo label and a logout button.
LOGIN_REDIRECT_URL = "/test/home/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# The label the landing page links to (README "Try it by hand" stores DEMO123.pdf).
TEST_DEMO_TRACKING = os.environ.get("LABEL_GATEWAY_TEST_DEMO_TRACKING", "DEMO123")

USE_TZ = True
TIME_ZONE = "UTC"

LABEL_GATEWAY_ACCESS_CHECK = "testproject.labels.may_read"
LABEL_GATEWAY_REGENERATE = "testproject.labels.regenerate"
LABEL_GATEWAY_TRACKING_URL = "testproject.labels.tracking_url"
LABEL_GATEWAY_REGENERATE_TOKEN = os.environ.get(
    "LABEL_GATEWAY_REGENERATE__TOKEN", "test-regenerate-token"
)


def _env_list(name):
    """A comma-separated environment variable as a list; None when unset or empty."""
    items = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
    return items or None


# Logout revokes the session on these gateways' internal listeners at once
# (label_gateway_django's user_logged_out handler). Unset: logout calls no gateway.
_internal_urls = _env_list("LABEL_GATEWAY_TEST_INTERNAL_URLS")
if _internal_urls:
    LABEL_GATEWAY_INTERNAL_URLS = _internal_urls
# The gateway's own variable name works too, so one environment can serve both.
LABEL_GATEWAY_INTERNAL_TOKEN = (
    os.environ.get("LABEL_GATEWAY_TEST_INTERNAL_TOKEN")
    or os.environ.get("LABEL_GATEWAY_INTERNAL__TOKEN")
    or None
)

# Warnings and worse only. Django reports every 4xx answer as a warning on
# django.request and django.server; 403 and 404 are expected outcomes here and
# would flood the runserver output, so those two loggers start at ERROR.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.request": {"level": "ERROR"},
        "django.server": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
