# pyreg-registry: `docker build -t pyreg-registry .` then
#   docker run -d -p 5000:5000 -v registry-data:/var/lib/registry pyreg-registry
# The config is CNCF distribution's format; mount your own at /etc/pyreg/config.yml or override
# keys with REGISTRY_* environment variables.
FROM python:3.11-slim

# Build from a copy of the sources only; the installed package is all that stays.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY oci ./oci
COPY registry ./registry
COPY client ./client
COPY runtime ./runtime
RUN pip install --no-cache-dir ".[s3]" && rm -rf /src

COPY deploy/config/minimal.yml /etc/pyreg/config.yml
# registry:2 runs as root; pyreg does not need to. An old registry:2 volume needs
# `chown -R 1000:1000` once (see deploy/README.md).
RUN useradd --system --uid 1000 --home-dir /var/lib/registry pyreg \
    && mkdir -p /var/lib/registry && chown pyreg:pyreg /var/lib/registry
USER pyreg
WORKDIR /var/lib/registry

VOLUME /var/lib/registry
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import http.client as h; c = h.HTTPConnection('127.0.0.1', 5000, timeout=4); c.request('GET', '/v2/'); exit(c.getresponse().status >= 500)"]
ENTRYPOINT ["pyreg-registry"]
CMD ["serve", "/etc/pyreg/config.yml"]
