# agentq: one image for every role (api, workers, beat, flower, fake-llm, migrate);
# the command picks the role. Build: docker build -t agentq .
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # not a terminal in a container anyway; say it so that logs are JSON lines
    AGENTQ_LOG_FORMAT=json

WORKDIR /app
# dependencies first, so that a code change does not reinstall them
COPY pyproject.toml README.md ./
COPY agentq ./agentq
# Not installed (the wheel holds only the agentq package): kept beside it so that
# `celery -A workers.app ...` run from /app finds it (celery puts the working directory on
# its path). `celery -A agentq.worker` works from anywhere.
COPY workers ./workers
RUN pip install . \
    && useradd --system --uid 10001 --home /app agentq \
    && chown -R agentq /app

USER 10001
# api, worker /metrics, flower, fake LLM
EXPOSE 8000 9808 5555 8099
ENTRYPOINT ["agentq"]
CMD ["--help"]
