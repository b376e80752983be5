#!/usr/bin/env bash
# Build the farm's images from docker/Dockerfile:
#
#   docker/build.sh [api|worker-cpu|worker-gpu|all ...]          (default: api and worker-cpu)
#   BASE_IMAGE=localhost/farm-base/python3:bookworm docker/build.sh api
#
# Tags localhost/inference-farm-<target>:${TAG:-dev}. First, on the host, it builds a wheel of
# the project and downloads the wheels of its dependencies (binary wheels only: the runtime
# stages have no compilers) for the Python of BASE_IMAGE into docker/wheelhouse/<target>-
# <python>/, which the Dockerfile installs from with pip --no-index; so the build needs no
# network, and pip on the host uses the host's own index settings and certificates.
#
# Environment: BASE_IMAGE (python:3.12-slim-bookworm), TAG (dev), PYTHON (the host Python with
# pip: .venv/bin/python when there is one, else python3), PODMAN (podman), PODMAN_RUNTIME (the
# OCI runtime; runc when installed, else podman's default).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE="${BASE_IMAGE:-python:3.12-slim-bookworm}"
TAG="${TAG:-dev}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
podman_cmd=("${PODMAN:-podman}")
runtime="${PODMAN_RUNTIME:-$(command -v runc || true)}"
if [ -n "$runtime" ]; then podman_cmd+=(--runtime "$runtime"); fi
podman() { command "${podman_cmd[@]}" "$@"; }
log() { printf '== %s\n' "$*" >&2; }

targets=()
for arg in "$@"; do
    case "$arg" in
        api | worker-cpu | worker-gpu) targets+=("$arg") ;;
        all) targets+=(api worker-cpu worker-gpu) ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "docker/build.sh: unknown target '$arg' (api, worker-cpu, worker-gpu or all)" >&2; exit 2 ;;
    esac
done
if [ "${#targets[@]}" -eq 0 ]; then targets=(api worker-cpu); fi

requirements() {  # what each image installs, as pip requirements of the project's wheel
    case "$1" in
        api) echo "inference-farm[grpc]" ;;
        worker-cpu) echo "inference-farm[cpu]" ;;
        worker-gpu) echo "inference-farm[gpu] onnxruntime-gpu[cuda,cudnn]" ;;
    esac
}

# The base image's Python, machine and glibc: the wheels must be for them, not for the host.
if ! podman image exists "$BASE_IMAGE"; then podman pull "$BASE_IMAGE" >&2; fi
read -r py_version machine glibc < <(podman run --rm --network none --entrypoint python3 \
    "$BASE_IMAGE" -c 'import os, platform, sys
print(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine(),
      os.confstr("CS_GNU_LIBC_VERSION").split()[1])')
py_nodot="${py_version/./}"
glibc_minor="${glibc#*.}"
platforms=()
for minor in $(seq 17 "$glibc_minor"); do platforms+=(--platform "manylinux_2_${minor}_${machine}"); done
platforms+=(--platform "manylinux2014_${machine}")
log "BASE_IMAGE $BASE_IMAGE: Python $py_version, $machine, glibc $glibc"

version="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])' 2>/dev/null \
    || sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for target in "${targets[@]}"; do
    started=$SECONDS
    wheelhouse="docker/wheelhouse/$target-py$py_version"
    mkdir -p "$wheelhouse"
    rm -f "$wheelhouse"/inference_farm-*.whl
    log "$target: wheel of the project and its dependencies into $wheelhouse"
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$wheelhouse" .
    project_wheel="$(ls "$wheelhouse"/inference_farm-*.whl)"
    # shellcheck disable=SC2046  # the requirements are separate words
    "$PYTHON" -m pip download --quiet --dest "$wheelhouse" --find-links "$wheelhouse" \
        --only-binary=:all: --implementation cp --python-version "$py_version" \
        --abi "cp$py_nodot" --abi abi3 --abi none "${platforms[@]}" \
        $(requirements "$target" | sed "s#inference-farm\[#$project_wheel[#")
    log "$target: podman build"
    podman build --format docker --target "$target" -f docker/Dockerfile \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "WHEELHOUSE=$wheelhouse" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        -t "localhost/inference-farm-$target:$TAG" . >&2
    size="$(podman image inspect --format '{{.Size}}' "localhost/inference-farm-$target:$TAG")"
    log "$target: localhost/inference-farm-$target:$TAG, $((size / 1000000)) MB, built in $((SECONDS - started)) s"
done
