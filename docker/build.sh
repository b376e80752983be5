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

# The dependencies are resolved and downloaded inside BASE_IMAGE, by its own Python and pip, so
# that wheel tags and environment markers (python_full_version < "3.11.3" …) are the target's.
# That container gets limits this shell can grant (as root, podman raises nofile and nproc to
# 1048576, which fails where root may not raise its hard limits, without CAP_SYS_RESOURCE), the
# host's network, and the host's pip settings: its index and proxy variables, and the CA bundle
# named by PIP_CERT (or SSL_CERT_FILE), mounted read-only.
if ! podman image exists "$BASE_IMAGE"; then podman pull "$BASE_IMAGE" >&2; fi
nproc="$(ulimit -Hu)"
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ]; then nproc=16384; fi
limits=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
py_version="$(podman run --rm --network none "${limits[@]}" --entrypoint python3 "$BASE_IMAGE" \
    -c 'import platform; print(*platform.python_version_tuple()[:2], sep=".")')"
log "BASE_IMAGE $BASE_IMAGE: Python $py_version"
pip_env=()
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT \
    HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    if [ -n "${!name:-}" ]; then pip_env+=(-e "$name"); fi
done
ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
if [ -n "$ca" ] && [ -f "$ca" ]; then
    pip_env+=(-v "$(realpath "$ca"):/run/farm-build-ca.pem:ro" -e PIP_CERT=/run/farm-build-ca.pem)
fi

download() {  # download WHEELHOUSE REQUIREMENT...: binary wheels only, into WHEELHOUSE
    local wheelhouse="$1"
    shift
    podman run --rm --network host "${limits[@]}" "${pip_env[@]}" \
        -v "$PWD/$wheelhouse:/wheelhouse" --entrypoint sh "$BASE_IMAGE" -c '
        python3 -m venv /tmp/pip && /tmp/pip/bin/pip download --quiet --disable-pip-version-check \
            --only-binary=:all: --dest /wheelhouse --find-links /wheelhouse "$@"' sh "$@" >&2
}

version="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])' 2>/dev/null \
    || sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# One build at a time on this checkout: they share the wheelhouse and the tags.
mkdir -p docker/wheelhouse
exec 9>docker/wheelhouse/.lock
flock 9

for target in "${targets[@]}"; do
    started=$SECONDS
    wheelhouse="docker/wheelhouse/$target-py$py_version"
    mkdir -p "$wheelhouse"
    log "$target: wheel of the project and its dependencies into $wheelhouse"
    # Into a folder of its own first: another build may be reading the wheelhouse.
    fresh="$(mktemp -d "$wheelhouse/.project.XXXXXX")"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very folder
    trap "rm -rf '$fresh'" EXIT
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$fresh" .
    project_wheel="$(basename "$(ls "$fresh"/inference_farm-*.whl)")"
    mv -f "$fresh/$project_wheel" "$wheelhouse/$project_wheel"
    rmdir "$fresh"
    trap - EXIT
    # shellcheck disable=SC2046  # the requirements are separate words
    download "$wheelhouse" $(requirements "$target" | sed "s#inference-farm\[#/wheelhouse/$project_wheel[#")
    log "$target: podman build"
    podman build --format docker --target "$target" -f docker/Dockerfile \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "WHEELHOUSE=$wheelhouse" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
        --build-arg "CREATED=$created" \
        -t "localhost/inference-farm-$target:$TAG" . >&2
    size="$(podman image inspect --format '{{.Size}}' "localhost/inference-farm-$target:$TAG")"
    log "$target: localhost/inference-farm-$target:$TAG, $((size / 1000000)) MB, built in $((SECONDS - started)) s"
done
