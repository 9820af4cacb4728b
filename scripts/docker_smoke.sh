#!/usr/bin/env bash
# usage: scripts/docker_smoke.sh [--base-image IMAGE] [--wheelhouse DIR] [--wheel-port PORT] [--tag TAG] [--uid UID]
#
# Builds the tfseg image and proves it works offline: `demo`, `export` and `predict` run
# in containers with --network none as a non-root user, outputs land on the host owned by
# that user, and `docker stop` interrupts training so that the same command resumes it.
#   --base-image IMAGE  build on IMAGE instead of the TensorFlow GPU image (e.g. a Debian
#                       base with python3 and python3-venv, for a CPU image)
#   --wheelhouse DIR    install Python packages only from DIR (`pip wheel -r requirements.txt
#                       -w DIR` on a connected machine); served to the build on 127.0.0.1
#   --wheel-port PORT   the port it is served on (default 38917); the same address every
#                       time, so a rebuild with unchanged requirements reuses the
#                       dependency layer
#   --tag TAG           image tag (default tfseg:smoke)
#   --uid UID           user id to run the containers as (default: yours, or 1000 when
#                       started by root, so that the non-root path is what is tested)

set -euo pipefail

base_image="" wheelhouse="" wheel_port=38917 tag="tfseg:smoke" uid=$(id -u) gid=$(id -g)
while [ $# -gt 0 ]; do
    case "$1" in
        --base-image) base_image=$2; shift 2 ;;
        --wheelhouse) wheelhouse=$(cd "$2" && pwd); shift 2 ;;
        --wheel-port) wheel_port=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --uid) uid=$2; gid=$2; shift 2 ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$uid" = 0 ]; then
    uid=1000 gid=1000
fi

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    docker rm -f -v tfseg-smoke-train >/dev/null 2>&1 || true
    rm -rf "$work"  # this script's own temporary directory
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

build_args=(--build-arg "REVISION=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)")
[ -n "$base_image" ] && build_args+=(--build-arg "BASE_IMAGE=$base_image")
if [ -n "$wheelhouse" ]; then
    # A fixed address: PIP_FIND_LINKS is a build argument, and a new value would rebuild
    # the dependency layer every time.
    python3 -c "import socket; socket.socket().bind(('127.0.0.1', $wheel_port))" 2>/dev/null \
        || fail "port $wheel_port is in use: pass --wheel-port (a new port rebuilds the dependency layer once)"
    python3 -m http.server "$wheel_port" --bind 127.0.0.1 --directory "$wheelhouse" >/dev/null 2>&1 &
    server_pid=$!
    sleep 1
    build_args+=(--network host --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$wheel_port/" --build-arg PIP_NO_INDEX=1)
fi

step "docker build ${build_args[*]} -t $tag"
docker build "${build_args[@]}" -t "$tag" "$root"

step "a rebuild reuses the dependency layer"
docker build "${build_args[@]}" -t "$tag" "$root" > "$work/rebuild.log" 2>&1 || { cat "$work/rebuild.log"; fail "rebuild failed"; }
grep -A2 "install-requirements.sh" "$work/rebuild.log" | grep -Eq "Using cache|CACHED" \
    || { cat "$work/rebuild.log"; fail "the rebuild reinstalled the dependencies"; }
echo "dependency layer reused"

mkdir -p "$work/runs"
chown "$uid:$gid" "$work/runs" 2>/dev/null || true
run=(docker run --rm --network none --user "$uid:$gid" -v "$work/runs:/runs")
small=(--set data.synthetic.num_train=64 --set data.synthetic.num_val=16 --set data.synthetic.num_test=16
       --set train.epochs=1)

step "demo"
"${run[@]}" "$tag" demo --output /runs/demo "${small[@]}"
for f in metrics.json gallery.png curves.png model.keras export/1/saved_model.pb; do
    [ -e "$work/runs/demo/$f" ] || fail "demo did not write $f"
done

step "export"
"${run[@]}" "$tag" export --run-dir /runs/demo --output /runs/exported
[ -f "$work/runs/exported/1/saved_model.pb" ] || fail "export wrote no exported/1/saved_model.pb"

step "predict (input mounted read-only)"
"${run[@]}" -v "$work/runs/demo/samples/images:/data/images:ro" "$tag" \
    predict --model /runs/exported --input /data/images --output /runs/predicted
masks=$(find "$work/runs/predicted/masks" -name '*.png' | wc -l)
[ "$masks" -eq "$(find "$work/runs/demo/samples/images" -name '*.png' | wc -l)" ] || fail "predict wrote $masks masks"

step "ownership on the host"
wrong=$(find "$work/runs" ! -user "$uid" | head -3)
[ -z "$wrong" ] || fail "files not owned by uid $uid: $wrong"
echo "every output is owned by uid $uid"

step "docker stop interrupts training; the same command resumes it"
train=(train --run-dir /runs/stopped "${small[@]}" --set train.epochs=6)
docker run -d --name tfseg-smoke-train --network none --user "$uid:$gid" -v "$work/runs:/runs" "$tag" "${train[@]}" >/dev/null
for _ in $(seq 120); do [ -s "$work/runs/stopped/history.csv" ] && break; sleep 0.5; done
[ -s "$work/runs/stopped/history.csv" ] || fail "training wrote no epoch"
docker stop -t 60 tfseg-smoke-train >/dev/null
status=$(docker inspect -f '{{.State.ExitCode}}' tfseg-smoke-train)
docker rm -v tfseg-smoke-train >/dev/null  # -v: its anonymous /data volume too
[ "$status" -eq 130 ] || fail "a stopped run exited with $status, not 130"
[ -f "$work/runs/stopped/checkpoints/checkpoint" ] || fail "a stopped run left no checkpoint to resume from"
done_before=$(($(wc -l < "$work/runs/stopped/history.csv") - 1))
echo "stopped cleanly (exit 130) after $done_before epoch(s), with a checkpoint"
"${run[@]}" "$tag" "${train[@]}"
epochs=$(tail -n +2 "$work/runs/stopped/history.csv" | cut -d, -f1 | tr '\n' ' ')
[ "$epochs" = "0 1 2 3 4 5 " ] || fail "resumed history has epochs: $epochs"
[ -f "$work/runs/stopped/model.keras" ] || fail "the resumed run did not finish"
echo "resumed and finished: epochs $epochs"

step "image"
docker image inspect -f '{{.Id}} {{.Size}} bytes' "$tag"
docker image inspect -f '{{json .Config.Labels}}' "$tag"
echo "docker smoke test passed"
