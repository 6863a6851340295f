#!/usr/bin/env bash
# Create (or refresh) the Python virtualenv used by the Django test project.
#
#   bash tests/setup_python.sh        # prints the venv's python as its last line
#
# The venv lives at ${LABEL_GATEWAY_VENV:-target/pyenv}; a relative path is
# taken from the repository root. pip runs only when the requirements below,
# django/pyproject.toml or the repository location changed since the last run,
# so re-runs take well under a second.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LABEL_GATEWAY_VENV:-target/pyenv}"
case "$venv" in
    /*) ;;
    *) venv="$repo_root/$venv" ;;
esac

requirements=(
    "Django>=5.0,<6"
    "boto3"
    "selenium>=4.10,<5"
    # Batch tests: real multi-page labels with fonts and images (reportlab, img2pdf),
    # and an independent reader of the merged PDF (pypdf).
    "reportlab"
    "img2pdf"
    "pypdf"
    # A second S3 implementation for the storage tests (tests/support/moto.rs).
    "moto[server]"
    "-e" "$repo_root/django"
)

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
    || ! "$python" -c 'import django, boto3, label_gateway_django, reportlab, img2pdf, pypdf, moto.server' 2>/dev/null; then
    "$python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
    printf '%s\n' "$wanted" >"$stamp"
fi

echo "$python"
