"""Helpers that let the gateway's tests drive and observe this project."""

from django.contrib.auth import logout as auth_logout
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from . import stats


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
