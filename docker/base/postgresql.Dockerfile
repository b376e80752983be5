# Debian's PostgreSQL, started as the official postgres image starts it (docker-entrypoint.sh):
# the first start makes a cluster in $PGDATA from POSTGRES_PASSWORD, POSTGRES_USER and
# POSTGRES_DB; postgres then runs as the postgres user, listening on every address.
ARG ROOT_IMAGE=localhost/farm-base/debian:bookworm
FROM ${ROOT_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Versions come from the bookworm suite, which is pinned by its name. No cluster is made at
# install time: the entrypoint makes one in $PGDATA.
# hadolint ignore=DL3008
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/no-main.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
    && ln -s "$(ls -d /usr/lib/postgresql/*/bin)" /usr/lib/postgresql/bin \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql \
    && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgresql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
