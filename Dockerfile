# trustreg container image: slim Python base, non-root user, data volume, port 5000.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /opt/trustreg
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY trust ./trust
COPY storage ./storage
COPY config ./config
RUN pip install --no-cache-dir '.[fast]' \
 && useradd --system --uid 10001 --home-dir /var/lib/trustreg trustreg \
 && mkdir -p /var/lib/trustreg /etc/trustreg \
 && printf 'http:\n  addr: 0.0.0.0:5000\nstorage:\n  filesystem:\n    root: /var/lib/trustreg\ntrust:\n  keys:\n    passphrase_env: TRUSTREG_TRUST_PASSPHRASE\n' \
      > /etc/trustreg/config.yaml \
 && chown -R trustreg /var/lib/trustreg

USER trustreg
VOLUME ["/var/lib/trustreg"]
EXPOSE 5000
# /healthz on the port the configuration listens on (default 5000).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["python", "-c", "import sys, urllib.request, yaml; a = (yaml.safe_load(open('/etc/trustreg/config.yaml')) or {}).get('http', {}).get('addr', '0.0.0.0:5000'); p = a.rpartition(':')[2]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["trustreg"]
CMD ["serve", "--config", "/etc/trustreg/config.yaml"]
