# Face Lab: one image for the bot (`facelab serve`) and the engine workers (`facelab worker`).
# CPU engine by default; build with --build-arg EXTRAS=redis,diffusion for the diffusion engine
# (then mount the weights at /app/models, see models/README.md).
FROM python:3.11-slim-bookworm

# OpenCV (the contrib wheel mediapipe needs) loads libGL and glib at import time; mediapipe bundles its own GL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ARG EXTRAS=redis
COPY pyproject.toml README.md ./
COPY bot bot
COPY engine engine
COPY storage storage
COPY facelab facelab
RUN pip install --no-cache-dir ".[${EXTRAS}]"

# Images are kept in memory only; the process needs no writable directory besides its SQLite
# file when no PostgreSQL is configured (/app/data, a volume).
RUN useradd --system --uid 10001 --home-dir /app facelab && mkdir -p /app/data /app/models \
    && chown facelab /app/data
USER facelab
ENV FACELAB_DATABASE__URL=sqlite+aiosqlite:////app/data/facelab.db \
    FACELAB_METRICS__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1

EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"
ENTRYPOINT ["facelab"]
CMD ["serve"]
