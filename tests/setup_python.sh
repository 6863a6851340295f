#!/usr/bin/env bash
# Create (or refresh) the Python virtualenv used by the Django test project.
#
#   bash tests/setup_python.sh          # prints the venv's python as its last line
#   bash tests/setup_python.sh lowest   # the same for a second, small venv holding the
#                                       # lowest Django the app supports (4.2), where
#                                       # tests/run.sh runs the app's tests once more
#
# The venv lives at ${LABEL_GATEWAY_VENV:-target/pyenv}; a relative path is
# taken from the repository root. pip runs only when the requirements below,
# django/pyproject.toml or the repository location changed since the last run,
# so re-runs take well under a second.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LABEL_GATEWAY_VENV:-target/pyenv}"
if [[ "${1:-}" == lowest ]]; then
    venv="${LABEL_GATEWAY_VENV_LOWEST:-target/pyenv-django4.2}"
fi
case "$venv" in
    /*) ;;
    *) venv="$repo_root/$venv" ;;
esac

requirements=(
    # The newest Django the app's requirement allows (django/pyproject.toml bounds it).
    "Django"
    "boto3"
    "selenium>=4.10,<5"
    # Batch tests: real multi-page labels with fonts and images (reportlab, img2pdf),
    # and an independent reader of the merged PDF (pypdf).
    "reportlab"
    "img2pdf"
    "pypdf"
    # Builds the app's wheel in the packaging test (testproject/tests.py).
    "setuptools>=77"
    "-e" "$repo_root/django"
)
modules="django, boto3, label_gateway_django, reportlab, img2pdf, pypdf, setuptools"
if [[ "${1:-}" == lowest ]]; then
    # The app's tests need Django only (and setuptools, for the packaging test).
    requirements=("Django>=4.2,<4.3" "setuptools>=77" "-e" "$repo_root/django")
    modules="django, label_gateway_django, setuptools"
fi

python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
    python3 -m venv "$venv"
fi

stamp="$venv/.label-gateway-requirements"
wanted="$(
    {
        printf '%s\n' "${requirements[@]}"
        cat "$repo_root/django/pyproject.toml"
    } | sha256sum | cut -d' ' -f1
)"

if [[ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]] \
    || ! "$python" -c "import $modules" 2>/dev/null; then
    "$python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
    printf '%s\n' "$wanted" >"$stamp"
fi

echo "$python"
