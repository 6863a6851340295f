#!/usr/bin/env bash
# The test command: installs what the tests need (a virtualenv with Django, boto3 and the
# PDF tools of the batch tests under target/pyenv; qpdf and poppler-utils from Debian),
# then runs every test: Rust unit and integration tests, and the Django
# app's own tests. Run from anywhere: `bash tests/run.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python="$(bash tests/setup_python.sh | tail -n 1)"
export LABEL_GATEWAY_TEST_PYTHON="$python"

# The batch tests read merged PDFs with independent readers: qpdf (--check) and poppler
# (pdfinfo, pdftotext). They fail, never skip, when these are missing.
have() { command -v "$1" >/dev/null 2>&1; }
if ! have qpdf || ! have pdfinfo || ! have pdftotext; then
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    echo "== installing qpdf and poppler-utils"
    if ! "${sudo[@]}" apt-get install -y qpdf poppler-utils; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y qpdf poppler-utils
    fi
fi

echo "== Django app tests"
db_dir="$(mktemp -d)"
trap 'rm -rf "$db_dir"' EXIT
LABEL_GATEWAY_TEST_DB="$db_dir/db.sqlite3" "$python" tests/django_project/manage.py test \
    label_gateway_django testproject --verbosity 1

echo "== Formatting and lints"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

echo "== Rust tests"
# Benches are checked by clippy above; running them is `benches/load.sh`, not a test.
cargo test --locked --lib --bins --tests -- --test-threads "${LABEL_GATEWAY_TEST_THREADS:-4}"
