# Debian's Prometheus, laid out as the official prom/prometheus image: data in /prometheus,
# configuration at /etc/prometheus/prometheus.yml, run as nobody (65534).
ARG ROOT_IMAGE=localhost/farm-base/debian:bookworm
FROM ${ROOT_IMAGE}
# Versions come from the bookworm suite, which is pinned by its name.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
WORKDIR /prometheus
VOLUME ["/prometheus"]
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
