# Second Look for a team: one image for the app replicas and the workers (see compose.yaml and
# the README's "Deploying for a team").
#
#   docker build -t second-look:cpu .                                   # CPU torch (default)
#   docker build --build-arg VARIANT=cuda -t second-look:cuda .         # CUDA torch, for workers
#
#   app replica (the default command):
#     streamlit run app.py --server.address 0.0.0.0 --server.port 8501
#   worker:
#     python cli.py worker [--gpus 0,1]
#
# Both need SECOND_LOOK_DATABASE_URL (team mode: the accounts live there) and the same
# SECOND_LOOK_HOME (the shared folder of workspaces and artifacts, /data/workspaces here).
# The model serving image is Dockerfile.serve (smaller: no Streamlit pages, port 8000).

# cpu or cuda: which torch build the image gets.
ARG VARIANT=cpu

FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    STREAMLIT_SERVER_HEADLESS=true

WORKDIR /app

# torch first, from the index that matches the variant; the pinned torch==2.13.0 in
# requirements.txt is then already satisfied (2.13.0+cpu matches ==2.13.0).
FROM base AS torch-cpu
# The CPU build (the PyPI wheel pulls several GB of CUDA packages).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

FROM base AS torch-cuda
# PyPI's Linux wheel carries its own CUDA runtime (the nvidia-* wheels); the host needs only the
# NVIDIA driver and the NVIDIA Container Toolkit (docker run --gpus all).
RUN pip install torch==2.13.0

FROM torch-${VARIANT} AS app

COPY requirements.txt .
RUN pip install -r requirements.txt

# The code (what .dockerignore leaves: no tests, benchmarks, workspaces or virtual environment).
COPY . .

# A non-root user owns only the workspaces folder; the code stays read-only to it. A named volume
# mounted on /data/workspaces starts with this owner.
RUN useradd --create-home --uid 10001 secondlook \
    && mkdir -p /data/workspaces \
    && chown secondlook:secondlook /data/workspaces
ENV SECOND_LOOK_HOME=/data/workspaces
USER secondlook

EXPOSE 8501
# The app replica's health; a worker container turns it off (compose.yaml: healthcheck: disable).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
