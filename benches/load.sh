#!/usr/bin/env bash
# The end-to-end load bench, one command:
#
#   bash benches/load.sh              # full run, about 14 minutes on 2 cores
#   LOAD_QUICK=1 bash benches/load.sh # short run, about 4 minutes
#
# Installs wrk and nginx when missing (Debian packages), makes the Django test app's
# virtualenv (tests/setup_python.sh), then `cargo bench --bench load`, which builds the
# release gateway and the driver in benches/load/. Everything runs on 127.0.0.1; every
# process it starts is stopped when it ends. Other knobs: see benches/load/main.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

if ! have wrk || ! have nginx; then
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    echo "== installing wrk and nginx"
    # Debian's postinst may try to start nginx's own service; the bench never uses it.
    if ! "${sudo[@]}" apt-get install -y wrk nginx; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y wrk nginx
    fi
fi

echo "== Django test app (virtualenv)"
if python="$(bash tests/setup_python.sh | tail -n 1)"; then
    export LABEL_GATEWAY_TEST_PYTHON="$python"
else
    echo "warning: no Django virtualenv; the Django-check row will be skipped" >&2
fi

echo "== building (release) and running the load bench"
cargo bench --bench load
