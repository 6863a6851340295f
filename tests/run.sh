#!/usr/bin/env bash
# The test command: installs what the tests need (a virtualenv with Django, boto3 and the
# PDF tools of the batch tests under target/pyenv, a second one with the lowest supported
# Django under target/pyenv-django4.2; qpdf and poppler-utils from Debian), then runs every
# test: Rust unit and integration tests, and the Django app's own tests on both Djangos. Run from anywhere: `bash tests/run.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python="$(bash tests/setup_python.sh | tail -n 1)"
export LABEL_GATEWAY_TEST_PYTHON="$python"

# Debian packages some tests run for real, and fail without (never skip): nginx in front of
# gateway copies (tests/it/fleet.rs, tests/it/browser.rs), Chromium and its driver for the
# browser test (tests/it/browser.rs), and independent readers of merged PDFs for the batch
# tests: qpdf (--check) and poppler (pdfinfo, pdftotext). Installed when missing.
have() { command -v "$1" >/dev/null 2>&1; }
packages=()
if ! have nginx && [[ ! -x /usr/sbin/nginx ]]; then
    packages+=(nginx-light)
fi
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
[[ -x /usr/bin/chromedriver ]] || packages+=(chromium-driver)
have qpdf || packages+=(qpdf)
{ have pdfinfo && have pdftotext; } || packages+=(poppler-utils)
if ((${#packages[@]})); then
    echo "== installing ${packages[*]}"
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
    fi
fi

db_dir="$(mktemp -d)"
trap 'rm -rf "$db_dir"' EXIT
# On the newest Django the app allows (the venv above, which the Rust tests use too) and on
# the lowest it supports (a second, small venv: tests/setup_python.sh lowest).
python_lowest="$(bash tests/setup_python.sh lowest | tail -n 1)"
for django_python in "$python" "$python_lowest"; do
    echo "== Django app tests, Django $("$django_python" -c 'import django; print(django.__version__)')"
    LABEL_GATEWAY_TEST_DB="$db_dir/db.sqlite3" "$django_python" tests/django_project/manage.py \
        test label_gateway_django testproject --verbosity 1
done

echo "== Formatting and lints"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

echo "== Rust tests"
# Benches are checked by clippy above; running them is `benches/load.sh`, not a test.
cargo test --locked --lib --bins --tests -- --test-threads "${LABEL_GATEWAY_TEST_THREADS:-4}"
