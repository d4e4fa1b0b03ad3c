# One image for the three services; the command picks the service:
#   docker run IMAGE serve ingest|dispatcher|inference
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY comfy_cloud ./comfy_cloud
COPY database ./database
COPY services ./services
# gcp: GCS storage and Firebase auth; frontend: the stock ComfyUI web UI served by ingest.
RUN pip install ".[gcp,supabase,frontend]" && useradd --system --uid 10001 comfy
USER comfy
ENTRYPOINT ["comfy-cloud"]
CMD ["serve", "ingest"]
