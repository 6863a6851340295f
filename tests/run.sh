#!/usr/bin/env bash
# The test command: installs what the tests need (a virtualenv with Django and boto3 under
# target/pyenv), then runs every test: Rust unit and integration tests, and the Django
# app's own tests. Run from anywhere: `bash tests/run.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python="$(bash tests/setup_python.sh | tail -n 1)"
export LABEL_GATEWAY_TEST_PYTHON="$python"

# The fleet tests (tests/it/fleet.rs) run real nginx in front of three gateway copies, and
# fail without it: install Debian's nginx-light when there is no nginx.
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    echo "== installing nginx-light"
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light
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
