"""URL patterns for the gateway's internal endpoints.

Include at the project root::

    path("", include("label_gateway_django.urls")),

The tracking number is constrained here, so a malformed one never reaches a
view: the URL resolver answers 404. Each endpoint also matches without the
trailing slash, so that ``APPEND_SLASH`` never answers the gateway with a
redirect.
"""

from django.urls import re_path

from . import TRACKING_PATTERN, views

app_name = "label_gateway"

_TRACKING = rf"(?P<tracking>{TRACKING_PATTERN})"

urlpatterns = [
    re_path(rf"^internal/label-access/{_TRACKING}/$", views.label_access, name="label_access"),
    re_path(rf"^internal/label-access/{_TRACKING}$", views.label_access),
    re_path(
        rf"^internal/label-regenerate/{_TRACKING}/$",
        views.label_regenerate,
        name="label_regenerate",
    ),
    re_path(rf"^internal/label-regenerate/{_TRACKING}$", views.label_regenerate),
]
