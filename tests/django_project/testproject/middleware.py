import re

from . import stats

_COUNTED_PATH = re.compile(r"^/internal/(label-access|label-regenerate)/([^/]*)")


def request_stats(get_response):
    """Count calls to the gateway's endpoints by endpoint and tracking number.

    Counted before the view runs, so a slow regeneration shows up at once.
    """

    def middleware(request):
        match = _COUNTED_PATH.match(request.path_info)
        if match:
            stats.record(match.group(1), match.group(2))
            stats.record_forwarded(
                match.group(2),
                {
                    name: request.META.get("HTTP_X_FORWARDED_" + name.upper())
                    for name in ("for", "proto", "host")
                },
            )
        return get_response(request)

    return middleware
