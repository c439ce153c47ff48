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
 && printf 'http:\n  addr: 0.0.0.0:5000\nstorage:\n  filesystem:\n    root: /var/lib/trustreg\n' \
      > /etc/trustreg/config.yaml \
 && chown -R trustreg /var/lib/trustreg

USER trustreg
VOLUME ["/var/lib/trustreg"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/v2/').status == 200 else 1)"
ENTRYPOINT ["trustreg"]
CMD ["serve", "--config", "/etc/trustreg/config.yaml"]
