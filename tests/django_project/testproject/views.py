"""Helpers that let the gateway's tests drive and observe this project."""

from django.conf import settings
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import stats


@never_cache
@login_required
@require_GET
def home(request):
    """Where a browser login lands: the user's name, a demo label and a logout button."""
    tracking = settings.TEST_DEMO_TRACKING
    return render(
        request,
        "testproject/home.html",
        {"demo_tracking": tracking, "demo_label_url": f"/shipping-label/{tracking}/"},
    )


@csrf_exempt
@require_POST
def logout(request):
    """End the session named by the request's cookie (its row is deleted)."""
    auth_logout(request)
    return HttpResponse(status=204)


@never_cache
@require_GET
def stats_view(request):
    return JsonResponse(stats.snapshot())


@csrf_exempt
@require_POST
def stats_reset(request):
    stats.reset()
    return HttpResponse(status=204)


@never_cache
@require_GET
def health(request):
    return HttpResponse("ok", content_type="text/plain")
