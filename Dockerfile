# livepulse worker image: `docker run livepulse:local` runs `livepulse worker`; any other
# sub-command replaces the default CMD (`docker run livepulse:local replay /app/fixtures/...`).
# Built by docker-compose.yml; tests/test_compose.py checks what it can without a Docker engine.

# Pinned by tag: Python 3.11 (the project's floor) on Debian bookworm.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root uid/gid, so volume ownership is the same on every build.
RUN groupadd --system --gid 10001 livepulse \
    && useradd --system --uid 10001 --gid livepulse --create-home \
        --home-dir /home/livepulse --shell /usr/sbin/nologin livepulse

# The dependencies first, from pyproject.toml alone: this layer is rebuilt only when
# pyproject.toml changes, not on every change of the code (minutes of downloads and installs
# saved on each rebuild, the compose test's included). Every dependency ships manylinux
# wheels, so no compiler.
COPY pyproject.toml /tmp/livepulse-deps/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/livepulse-deps/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/livepulse-deps/requirements.txt \
    && pip install -r /tmp/livepulse-deps/requirements.txt \
    && rm -rf /tmp/livepulse-deps

# Then the project from a throwaway source copy (its dependencies are in already): the
# runtime imports the installed package, never a source tree.
# README.md* : pyproject names README.md as the long description; the glob keeps the
# build working while it is absent.
COPY pyproject.toml README.md* /tmp/livepulse-src/
COPY schemas/ /tmp/livepulse-src/schemas/
COPY agents/ /tmp/livepulse-src/agents/
COPY streams/ /tmp/livepulse-src/streams/
RUN cd /tmp/livepulse-src \
    && pip install . --no-deps \
    && cd / \
    && rm -rf /tmp/livepulse-src

# The broker wait used by the compose worker service (standard library only), and the
# compose replayer's replay-once-per-fresh-stack wrapper.
COPY scripts/wait_for_kafka.py /usr/local/bin/wait-for-kafka
COPY scripts/replay_once.py /usr/local/bin/replay-once

WORKDIR /app
COPY fixtures/ /app/fixtures/

# Faust's table state and the worker's data live under /data (a volume in compose).
RUN chmod 0755 /usr/local/bin/wait-for-kafka /usr/local/bin/replay-once \
    && mkdir -p /data \
    && chown livepulse:livepulse /data
ENV LIVEPULSE_DATA_DIR=/data \
    LIVEPULSE_WEB_HOST=0.0.0.0 \
    LIVEPULSE_WEB_PORT=6066

USER livepulse

EXPOSE 6066

# slim has no curl; python's urllib raises (non-zero exit) on refusal, timeout or HTTP >= 400.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/status', timeout=3)"]

ENTRYPOINT ["livepulse"]
CMD ["worker"]
