# Debian's redis-server, run as the official redis image runs it: `redis-server [options]`,
# data in /data, protected mode off (the official image builds it off) unless the command sets it.
ARG ROOT_IMAGE=localhost/farm-base/debian:bookworm
FROM ${ROOT_IMAGE}
# Versions come from the bookworm suite, which is pinned by its name. The redis user is made
# first, with the official image's fixed UID and GID (999), which the package then keeps.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid 999 --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
    && mkdir /data \
    && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
VOLUME ["/data"]
USER 999:999
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
