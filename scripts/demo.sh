#!/usr/bin/env bash
# A newcomer's first label, one command:
#
#   bash scripts/demo.sh
#
# Sets up the Django test app's virtualenv when needed (tests/setup_python.sh), starts the
# test app on 127.0.0.1:8000 where the shipped config.toml expects the Django app, puts a
# demo label (DEMO123.pdf, a real one-page PDF) in the shipped local store
# ./media/shipping_labels, builds and starts the gateway on the shipped config.toml (labels
# on 127.0.0.1:8080, /internal/ and /metrics on 127.0.0.1:9090), logs a user in for real,
# checks that the label comes back with that session and is refused without it, and prints
# both as curl lines. Then it shows the gateway's log until Ctrl-C, which stops everything
# it started.
#
# Knobs (environment), for when the shipped ports are taken:
#   DEMO_APP_PORT (8000), DEMO_PORT (8080), DEMO_INTERNAL_PORT (9090): other ports, passed to
#     the gateway as its LABEL_GATEWAY_* overrides; the config file stays the shipped one.
#   LABEL_GATEWAY_BIN: a built gateway to run instead of `cargo build --release`'s.
#   LABEL_GATEWAY_STORAGE__LOCAL_ROOT: another local store (the gateway reads it too).
#   DEMO_DIR (target/demo): the test app's database and both logs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

app_port="${DEMO_APP_PORT:-8000}"
port="${DEMO_PORT:-8080}"
internal_port="${DEMO_INTERNAL_PORT:-9090}"
demo_dir="${DEMO_DIR:-target/demo}"
store="${LABEL_GATEWAY_STORAGE__LOCAL_ROOT:-./media/shipping_labels}"
tracking=DEMO123
user=demo

say() { printf '== %s\n' "$*"; }
fail() {
    printf 'demo: %s\n' "$*" >&2
    exit 1
}

# --- what the demo needs -------------------------------------------------------------
if ! command -v curl >/dev/null 2>&1; then
    say "installing curl"
    sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    if ! "${sudo[@]}" apt-get install -y curl; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y curl
    fi
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$app_port:DEMO_APP_PORT" "$port:DEMO_PORT" "$internal_port:DEMO_INTERNAL_PORT"; do
    if port_busy "${p%%:*}"; then
        fail "port ${p%%:*} is in use (another gateway or Django?): stop it, or pick another with ${p#*:}=..."
    fi
done

say "Django test app: virtualenv"
python="$(bash tests/setup_python.sh | tail -n 1)"

if [[ -n "${LABEL_GATEWAY_BIN:-}" ]]; then
    gateway="$LABEL_GATEWAY_BIN"
else
    say "building the gateway (release; the first build takes a few minutes)"
    cargo build --release --bin label-gateway
    gateway="${CARGO_TARGET_DIR:-target}/release/label-gateway"
fi
[[ -x "$gateway" ]] || fail "no gateway binary at $gateway"

# --- start what the demo runs, and stop it on the way out ------------------------------
mkdir -p "$demo_dir"
export LABEL_GATEWAY_TEST_DB="$demo_dir/db.sqlite3"
# One token serves both sides: the test app reads the gateway's own variable name.
export LABEL_GATEWAY_REGENERATE__TOKEN="${LABEL_GATEWAY_REGENERATE__TOKEN:-demo-regenerate-token}"
app="http://127.0.0.1:$app_port"
base="http://127.0.0.1:$port"
if [[ "$app_port" != 8000 ]]; then
    export LABEL_GATEWAY_AUTH__CHECK_URL="$app/internal/label-access/{tracking}/"
    export LABEL_GATEWAY_REGENERATE__URL="$app/internal/label-regenerate/{tracking}/"
fi
if [[ "$port" != 8080 ]]; then export LABEL_GATEWAY_SERVER__LISTEN="127.0.0.1:$port"; fi
if [[ "$internal_port" != 9090 ]]; then
    export LABEL_GATEWAY_SERVER__INTERNAL_LISTEN="127.0.0.1:$internal_port"
fi

pids=()
stop() {
    trap - INT TERM EXIT
    if ((${#pids[@]})); then
        printf '\n== stopping the gateway and the test app\n'
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop EXIT
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

say "Django test app on $app (database $LABEL_GATEWAY_TEST_DB, log $demo_dir/django.log)"
"$python" tests/django_project/manage.py gateway_setup
"$python" tests/django_project/manage.py runserver "127.0.0.1:$app_port" --noreload \
    >"$demo_dir/django.log" 2>&1 &
pids+=("$!")

mkdir -p "$store"
# The label the app regenerates below: gone, so that every run shows regeneration.
rm -f "$store/REGEN-DEMO.pdf"
if [[ ! -s "$store/$tracking.pdf" ]]; then
    say "demo label $store/$tracking.pdf"
    (cd tests/django_project && "$python" -c \
        'import sys; from testproject.labels import label_pdf; sys.stdout.buffer.write(label_pdf(sys.argv[1]))' \
        "$tracking") >"$store/$tracking.pdf"
fi

say "gateway on $base with the shipped config.toml (log $demo_dir/gateway.log)"
"$gateway" --config config.toml 2>"$demo_dir/gateway.log" &
pids+=("$!")

wait_for() { # name, url, pid, log
    local deadline=$((SECONDS + 60))
    until curl -fsS -o /dev/null "$2" 2>/dev/null; do
        if ! kill -0 "$3" 2>/dev/null; then
            tail -n 20 "$4" >&2
            fail "$1 exited during start-up (log above)"
        fi
        ((SECONDS < deadline)) || fail "$1 did not answer $2 within 60 s (log: $4)"
        sleep 0.2
    done
}
wait_for "the Django test app" "$app/test/health/" "${pids[0]}" "$demo_dir/django.log"
wait_for "the gateway" "$base/healthz" "${pids[1]}" "$demo_dir/gateway.log"

# --- a real login, and the requests a newcomer will paste -----------------------------
session="$("$python" tests/django_project/manage.py make_session --username "$user")"
with_session="curl -o $tracking.pdf -H 'Cookie: sessionid=$session' $base/shipping-label/$tracking/"
without="curl -i $base/shipping-label/$tracking/"
regenerated="curl -o REGEN-DEMO.pdf -H 'Cookie: sessionid=$session' $base/shipping-label/REGEN-DEMO/"

check() { # what, expected status, url, [cookie]
    local got
    got="$(curl -sS -o "$demo_dir/answer" -w '%{http_code}' ${4:+-H "Cookie: sessionid=$4"} "$3")"
    [[ "$got" == "$2" ]] || fail "$1: expected HTTP $2, got $got (logs in $demo_dir)"
}
check "the label with the session" 200 "$base/shipping-label/$tracking/" "$session"
[[ "$(head -c 5 "$demo_dir/answer")" == "%PDF-" ]] || fail "the label is not a PDF"
check "the label without a session" 404 "$base/shipping-label/$tracking/"
check "a label the app regenerates" 200 "$base/shipping-label/REGEN-DEMO/" "$session"

cat <<EOF

label-gateway is running, and the three label requests below were just tried.
Ctrl-C stops everything the demo started.

  The label, with the session of a real login (user "$user"):
    $with_session
  Without the session cookie: refused, a 404 like the Django view's:
    $without
  A label the store lacks: the gateway asks the app, which regenerates it:
    $regenerated
  Metrics (Prometheus):
    curl -s http://127.0.0.1:$internal_port/metrics | grep '^label_gateway_request_duration_seconds_count'

  In a browser: log in at $app/accounts/login/ as $user / password, then open
  $base/shipping-label/$tracking/ (cookies do not depend on the port).

The gateway's log follows (user= names who printed which label):
EOF

# Shown until Ctrl-C; a gateway or app that stops on its own ends the demo too.
tail -n +1 -f "$demo_dir/gateway.log" &
pids+=("$!")
wait -n "${pids[0]}" "${pids[1]}" || true
fail "the gateway or the test app has stopped; stopping the rest (logs in $demo_dir)"
