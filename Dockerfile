# trustreg container image: slim Python base, non-root user (uid/gid 10001), data volume, port 5000.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /opt/trustreg
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY trust ./trust
COPY storage ./storage
COPY config ./config
RUN pip install --no-cache-dir '.[fast]' \
 && groupadd --system --gid 10001 trustreg \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/trustreg trustreg \
 && mkdir -p /var/lib/trustreg /etc/trustreg \
 && printf 'http:\n  addr: 0.0.0.0:5000\nstorage:\n  filesystem:\n    root: /var/lib/trustreg\ntrust:\n  keys:\n    passphrase_env: TRUSTREG_TRUST_PASSPHRASE\n' \
      > /etc/trustreg/config.yaml \
 && chown -R trustreg /var/lib/trustreg

USER trustreg
VOLUME ["/var/lib/trustreg"]
EXPOSE 5000
# /healthz on the configured port, over https when the configuration serves TLS (TRUSTREG__... overrides
# included): `trustreg healthcheck` reads the same configuration as `serve`.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s CMD ["trustreg", "healthcheck", "--config", "/etc/trustreg/config.yaml"]
ENTRYPOINT ["trustreg"]
CMD ["serve", "--config", "/etc/trustreg/config.yaml"]
