#!/usr/bin/env bash
# Build the vaeserve image in a real Docker engine and prove it works, or fail loudly.
#
#   bash docker/smoke.sh          # what CI runs (as root); `make smoke` does the same
#
# 1. starts a Docker engine if none answers (installing docker.io from Debian if needed);
# 2. builds a local Debian bookworm base image with debootstrap (no Docker Hub here) and
#    passes it as BASE_IMAGE; the Dockerfile's default stays the official python:3.11-slim;
# 3. builds wheels on the host, then the image with no network inside the build;
# 4. runs it on 127.0.0.1, waits for /readyz, hits every v1 endpoint and a v2 inference
#    (docker/smoke_check.py);
# 5. checks it runs as non-root, its size (<= 450 MB), its HEALTHCHECK, and a clean
#    `docker stop` (exit code 0, well before the kill timeout).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-vaeserve:smoke}
BASE=${BASE:-vaeserve-base:bookworm}
MAX_MB=${MAX_MB:-450}
PY=${PY:-.venv/bin/python}
ROOTFS=${ROOTFS:-/tmp/vaeserve-rootfs}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

say() { printf '\n== %s\n' "$*"; }
die() { printf '\nSMOKE TEST FAILED: %s\n' "$*" >&2; exit 1; }

if [[ ! -x $PY ]]; then  # a fresh clone: the checks and the wheel build need the project's dev set-up
  say "Setting up .venv (make dev)"
  make dev
  PY=.venv/bin/python
fi

say "Docker engine"
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }
  nohup dockerd >/tmp/vaeserve-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/vaeserve-dockerd.log >&2; die "the Docker engine did not start"; }
fi
docker version --format 'client {{.Client.Version}}, engine {{.Server.Version}}'

say "Base image $BASE (debootstrap bookworm)"
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  if [[ ! -x $ROOTFS/usr/bin/python3 ]]; then
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$ROOTFS" "$MIRROR" >/tmp/vaeserve-debootstrap.log \
      || { tail -20 /tmp/vaeserve-debootstrap.log >&2; die "debootstrap failed"; }
  fi
  # Leave out apt's lists and caches and the docs: they only make the image bigger.
  tar -C "$ROOTFS" --exclude=./var/lib/apt/lists --exclude=./var/cache/apt --exclude=./usr/share/doc \
      --exclude=./usr/share/man --exclude=./usr/share/locale -c . | docker import - "$BASE" >/dev/null
fi

say "Wheels, built on the host"
rm -rf build/wheels
"$PY" -m pip wheel --quiet --wheel-dir build/wheels . || die "could not build the wheels"
ls build/wheels | sed 's/^/  /'

say "Image $IMAGE"
docker build --network none --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" . || die "docker build failed"
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
size_mb=$((size / 1024 / 1024))
echo "image size: ${size_mb} MB (limit ${MAX_MB} MB)"
((size_mb <= MAX_MB)) || die "the image is ${size_mb} MB, over ${MAX_MB} MB"
docker run --rm --entrypoint python3 "$IMAGE" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
  || die "torch is installed in the image"

say "Run it on 127.0.0.1"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cid=$(docker run -d -p "127.0.0.1:$port:8000" "$IMAGE")
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
"$PY" docker/smoke_check.py "http://127.0.0.1:$port" || { docker logs "$cid" 2>&1 | tail -30 >&2; die "the endpoints did not answer as expected"; }

uid=$(docker exec "$cid" id -u)
echo "runs as uid $uid"
[[ $uid != 0 ]] || die "the container runs as root"
for _ in $(seq 60); do
  health=$(docker inspect -f '{{.State.Health.Status}}' "$cid")
  [[ $health == healthy ]] && break
  sleep 1
done
echo "health: $health"
[[ $health == healthy ]] || die "the HEALTHCHECK never passed"

say "docker stop"
start=$(date +%s.%N)
docker stop -t 30 "$cid" >/dev/null
took=$("$PY" -c "print(round($(date +%s.%N) - $start, 2))")
code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
echo "stopped in ${took} s with exit code $code"
[[ $code == 0 ]] || die "the container exited with $code on docker stop"
"$PY" -c "import sys; sys.exit(not $took < 25)" || die "docker stop took ${took} s: SIGTERM was not handled"

say "smoke test passed: ${size_mb} MB, uid $uid, healthy, clean stop in ${took} s"
