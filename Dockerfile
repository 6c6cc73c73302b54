# syntax=docker/dockerfile:1
# Crystal Eyes Discord bot: slim glibc image (onnxruntime and OpenCV wheels need glibc), non-root, with the model
# bundle from models/ baked in. Build: `docker compose build` (or `docker build -t crystal-eyes .`).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    ORT_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libglib2.0-0 and libgomp1: runtime libraries of the OpenCV / onnxruntime wheels; tini reaps and forwards signals;
# fonts-wqy-microhei (1.6 MB: Latin, Japanese, Korean, Chinese) and DejaVu: the label fonts (inference/fonts.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libglib2.0-0 libgomp1 tini \
       fonts-wqy-microhei fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first (a cached layer that only changes with pyproject.toml): install the project's dependencies
# from stub packages, then drop the stub.
# EXTRAS: the optional dependencies to install; the recognition service's image (compose `inference`) adds serve
# (Ray Serve, ~300 MB) to the bot's scale (PostgreSQL).
ARG EXTRAS=scale
COPY pyproject.toml README.md ./
RUN mkdir -p inference/adapters cogs service \
    && touch inference/__init__.py inference/adapters/__init__.py cogs/__init__.py service/__init__.py bot.py \
    && pip install ".[${EXTRAS}]" \
    && pip uninstall -y crystal-eyes \
    && rm -rf inference cogs service bot.py

# The code and the model bundle.
COPY bot.py ./
COPY inference/ inference/
COPY service/ service/
COPY cogs/ cogs/
COPY models/ models/
# The bundle's label list (models/manifest.json points to ../chara.json).
COPY chara.json ./

# Fail the build, not the container, when the baked-in bundle is missing or corrupt (sha256 checked).
# `--build-arg CHECK_BUNDLE=0` skips this (e.g. when BUNDLE_DIR will point at a mounted bundle).
ARG CHECK_BUNDLE=1
RUN if [ "$CHECK_BUNDLE" = "1" ]; then \
      python -c "from inference.pipeline import Pipeline; p = Pipeline.from_bundle('/app/models'); print('bundle OK:', p.info['name'], p.info['version'], len(p.labels), 'labels')"; \
    fi

RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin crystal \
    && mkdir -p /data && chown crystal:crystal /data

ENV BUNDLE_DIR=/app/models \
    DATA_DIR=/data \
    HEALTH_FILE=/tmp/crystal-eyes.health

USER crystal
VOLUME ["/data"]

# Healthy while the bot is connected to Discord: it touches HEALTH_FILE every 30 s.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, sys, time; f = os.environ.get('HEALTH_FILE') or '/tmp/crystal-eyes.health'; sys.exit(0 if os.path.exists(f) and time.time() - os.path.getmtime(f) < 120 else 1)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "bot.py"]
