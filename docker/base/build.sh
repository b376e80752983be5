#!/usr/bin/env bash
# Build the local base images from Debian bookworm's packages, for machines that cannot reach
# an image registry: debootstrap a minimal bookworm, `podman import` it, then add each image's
# packages with apt-get (docker/base/<name>.Dockerfile).
#
#   docker/base/build.sh [--force] [python3|redis|postgresql|prometheus ...]   (default: all)
#
# Images (the names docker/build.sh, compose and the tests pass in):
#   localhost/farm-base/debian:bookworm       the imported minimal root (minbase)
#   localhost/farm-base/python3:bookworm      python3, python3-venv, ca-certificates: BASE_IMAGE
#   localhost/farm-base/redis:bookworm        redis-server
#   localhost/farm-base/postgresql:bookworm   postgresql, started as the official image does
#   localhost/farm-base/prometheus:bookworm   Debian's prometheus
#
# An image that exists already is kept (`podman image exists`), so a machine that keeps its
# images builds them once; --force rebuilds (the root too). Needs root (debootstrap), podman
# and debootstrap. Environment: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (Debian's by default),
# PODMAN (podman), PODMAN_RUNTIME (the OCI runtime; runc when installed, else podman's default).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

SUITE=bookworm
PREFIX=localhost/farm-base
ROOT_IMAGE="$PREFIX/debian:$SUITE"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
ALL=(python3 redis postgresql prometheus)

podman_cmd=("${PODMAN:-podman}")
runtime="${PODMAN_RUNTIME:-$(command -v runc || true)}"
if [ -n "$runtime" ]; then podman_cmd+=(--runtime "$runtime"); fi
podman() { command "${podman_cmd[@]}" "$@"; }

force=""
names=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        python3 | redis | postgresql | prometheus) names+=("$arg") ;;
        *) echo "docker/base/build.sh: unknown image '$arg' (one of: ${ALL[*]})" >&2; exit 2 ;;
    esac
done
if [ "${#names[@]}" -eq 0 ]; then names=("${ALL[@]}"); fi

log() { printf '== %s\n' "$*" >&2; }

build_root() {
    if [ -z "$force" ] && podman image exists "$ROOT_IMAGE"; then
        log "$ROOT_IMAGE: exists"; return
    fi
    command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
    local rootfs started
    started=$SECONDS
    rootfs="$(mktemp -d /var/tmp/farm-base-rootfs.XXXXXX)"
    # shellcheck disable=SC2064  # expand now: the trap must remove this very folder
    trap "rm -rf '$rootfs'" EXIT
    log "$ROOT_IMAGE: debootstrap --variant=minbase $SUITE from $MIRROR"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >&2
    cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
    # As Debian's official image: no recommends, no docs, man pages or translations, and no
    # services started by a package's install script.
    cat >"$rootfs/etc/apt/apt.conf.d/90farm-base" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90farm-base" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/*/changelog* \
        "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
    log "$ROOT_IMAGE: podman import"
    tar --numeric-owner -C "$rootfs" -c . | podman import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$ROOT_IMAGE" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    log "$ROOT_IMAGE: built in $((SECONDS - started)) s"
}

build_one() {
    local name="$1" image="$PREFIX/$1:$SUITE" started=$SECONDS
    if [ -z "$force" ] && podman image exists "$image"; then
        log "$image: exists"; return
    fi
    log "$image: building"
    # Docker format keeps HEALTHCHECK, ENTRYPOINT and the rest as Docker reads them.
    podman build --format docker --network host --build-arg "ROOT_IMAGE=$ROOT_IMAGE" \
        -t "$image" -f "$here/$name.Dockerfile" "$here" >&2
    log "$image: built in $((SECONDS - started)) s"
}

build_root
for name in "${names[@]}"; do build_one "$name"; done
