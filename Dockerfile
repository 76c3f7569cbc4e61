# The web demo and REST API of cv-generative, served by uvicorn. CPU image by default:
#   docker build -t cv-generative .
#   docker run --rm -p 127.0.0.1:7860:7860 -e CVG_API_TOKEN=change-me cv-generative
# CUDA variant (README, "Web demo and REST API"): a CUDA base image and the CUDA wheels of torch, e.g.
#   docker build -t cv-generative:cuda --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 .
#   docker run --gpus all -p 127.0.0.1:7860:7860 -e CVG_DEVICE=cuda cv-generative:cuda
# Settings are CVG_* variables (inference/web/app.py settings_from_env): CVG_MODELS, CVG_DEVICE,
# CVG_CONCURRENCY, CVG_QUEUE, CVG_TIMEOUT, CVG_MAX_IMAGES, CVG_MAX_SIZE, CVG_MAX_STEPS, CVG_API_TOKEN, ...
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False HF_HOME=/data/hf CVG_OUTPUT_DIR=/data/outputs \
    FORWARDED_ALLOW_IPS=127.0.0.1

# a CUDA base image brings no Python: install one there (the slim Python image skips this)
RUN if ! command -v python >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python-is-python3 \
      && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
# torch first, from the index that matches the image (CPU wheels by default), so `pip install .` keeps it
RUN pip install torch torchvision --index-url "${TORCH_INDEX_URL}"
COPY . .
RUN pip install . \
    && useradd --create-home --uid 1000 app && mkdir -p /data && chown app /data
USER app
VOLUME /data
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD python -c "import os, urllib.request as u; \
t = os.environ.get('CVG_API_TOKEN'); \
u.urlopen(u.Request('http://127.0.0.1:7860/health', headers={'Authorization': 'Bearer ' + t} if t else {}), timeout=4)"

# 0.0.0.0 inside the container; publish the port on 127.0.0.1 (as above) or put it behind a reverse proxy
# (then set FORWARDED_ALLOW_IPS to the proxy's address so X-Forwarded-* headers are trusted from it alone)
CMD ["uvicorn", "--factory", "inference.web.app:app_from_env", "--host", "0.0.0.0", "--port", "7860", \
     "--proxy-headers", "--timeout-graceful-shutdown", "10"]
