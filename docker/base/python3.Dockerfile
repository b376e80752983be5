# Debian's Python 3, for BASE_IMAGE=localhost/farm-base/python3:bookworm (docker/Dockerfile).
ARG ROOT_IMAGE=localhost/farm-base/debian:bookworm
FROM ${ROOT_IMAGE}
# Versions come from the bookworm suite, which is pinned by its name.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
CMD ["python3"]
