# syntax=docker/dockerfile:1.7
# docfleet container images: one builder stage compiles every binary once; each runtime target
# copies one binary onto a small base.
#
#   docker build --target worker     -t docfleet/worker:0.1.0 .      # CPU, onnxruntime from its wheel
#   docker build --target worker-gpu -t docfleet/worker-gpu:0.1.0 .  # CUDA, onnxruntime-gpu's libraries
#   docker build --target downloader -t docfleet/downloader:0.1.0 .
#   docker build --target scaler     -t docfleet/scaler:0.1.0 .
#   docker build --target cli        -t docfleet/cli:0.1.0 .
#
# Every runtime image runs as UID/GID 10001 (no root), needs no writable path on its root
# filesystem (scratch space is /tmp: mount a tmpfs / emptyDir there with a read-only root), and
# carries no credentials: AWS and hub credentials come from the environment, a mounted Secret or
# the SDK chain (IRSA) at run time. Base images are pinned by tag; pin digests in your registry
# mirror if you need byte-for-byte reproducible bases. Only linux/amd64 is built (the onnxruntime
# wheels below are x86_64).

# ---------------------------------------------------------------------------------------------
# builder: the workspace's release binaries. Built on Debian 12 (glibc 2.36) so the same binaries
# run on the Debian 13 runtime and on the Ubuntu 24.04 CUDA base.
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace \
        --bin docfleet --bin docfleet-worker --bin docfleet-downloader --bin docfleet-scaler \
    && mkdir -p /out \
    && cp target/release/docfleet target/release/docfleet-worker \
          target/release/docfleet-downloader target/release/docfleet-scaler /out/

# ---------------------------------------------------------------------------------------------
# onnxruntime's shared library, taken from the PyPI wheels (sha256-pinned) instead of a download
# at run time. The worker finds it through ORT_DYLIB_PATH.
FROM python:3.13.7-slim-bookworm AS onnxruntime-cpu
ARG ORT_VERSION=1.32.0
ARG ORT_WHEEL_SHA256=02ea12a28c069ea8510093d95a7f6ff8126bfd9fc5c0d3381c03b80fb2b424ba
WORKDIR /wheel
RUN printf 'onnxruntime==%s --hash=sha256:%s\n' "$ORT_VERSION" "$ORT_WHEEL_SHA256" > requirements.txt \
    && pip download --no-cache-dir --no-deps --require-hashes --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.13 --implementation cp \
        --dest /wheel -r requirements.txt \
    && python -m zipfile -e /wheel/onnxruntime-*.whl /wheel/unpacked \
    && mkdir -p /opt/onnxruntime/lib \
    && cp /wheel/unpacked/onnxruntime/capi/libonnxruntime.so.${ORT_VERSION} /opt/onnxruntime/lib/

# onnxruntime-gpu (CUDA 13, cuDNN 9): the runtime plus the CUDA execution provider. The TensorRT
# provider is left out: the CUDA base image below has no TensorRT libraries.
FROM python:3.13.7-slim-bookworm AS onnxruntime-gpu
ARG ORT_GPU_VERSION=1.31.1
ARG ORT_GPU_WHEEL_SHA256=f659529e07c21ec6b6179fd1bfaf82ffb7c3dc9c0916e18f6f313f9a690891be
WORKDIR /wheel
RUN printf 'onnxruntime-gpu==%s --hash=sha256:%s\n' "$ORT_GPU_VERSION" "$ORT_GPU_WHEEL_SHA256" > requirements.txt \
    && pip download --no-cache-dir --no-deps --require-hashes --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --python-version 3.13 --implementation cp \
        --dest /wheel -r requirements.txt \
    && python -m zipfile -e /wheel/onnxruntime_gpu-*.whl /wheel/unpacked \
    && mkdir -p /opt/onnxruntime/lib \
    && cp /wheel/unpacked/onnxruntime/capi/libonnxruntime.so.${ORT_GPU_VERSION} \
          /wheel/unpacked/onnxruntime/capi/libonnxruntime_providers_shared.so \
          /wheel/unpacked/onnxruntime/capi/libonnxruntime_providers_cuda.so \
          /opt/onnxruntime/lib/

# ---------------------------------------------------------------------------------------------
# runtime: the common base of the CPU images. No package installs: CA roots come from the
# builder (the SDKs' rustls needs them for real AWS, the hub and PyPI); libstdc++ (onnxruntime)
# is part of debian-slim.
FROM debian:13.1-slim AS runtime
RUN groupadd --system --gid 10001 docfleet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin docfleet
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/tmp \
    TMPDIR=/tmp \
    DOCFLEET_PROFILE=k8s
WORKDIR /tmp
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# worker (CPU): reads models offline from the shared volume at /models (HF cache layout).
FROM runtime AS worker
COPY --from=onnxruntime-cpu /opt/onnxruntime /opt/onnxruntime
COPY --from=builder /out/docfleet-worker /usr/local/bin/docfleet-worker
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.1.32.0 \
    HF_HOME=/models \
    HF_HUB_CACHE=/models/hub \
    HF_HUB_OFFLINE=1
EXPOSE 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docfleet-worker"]

# worker (GPU): the same binary on NVIDIA's CUDA runtime + cuDNN base, CUDA execution provider
# selected by configuration (runtime.execution_provider).
FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04 AS worker-gpu
RUN groupadd --system --gid 10001 docfleet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin docfleet
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=onnxruntime-gpu /opt/onnxruntime /opt/onnxruntime
COPY --from=builder /out/docfleet-worker /usr/local/bin/docfleet-worker
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/tmp \
    TMPDIR=/tmp \
    DOCFLEET_PROFILE=k8s \
    ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.1.31.1 \
    DOCFLEET__RUNTIME__EXECUTION_PROVIDER=cuda \
    HF_HOME=/models \
    HF_HUB_CACHE=/models/hub \
    HF_HUB_OFFLINE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /tmp
USER 10001:10001
EXPOSE 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docfleet-worker"]

# ---------------------------------------------------------------------------------------------
# downloader: one-shot, fills /models (the only writable mount it needs besides /tmp).
FROM runtime AS downloader
COPY --from=builder /out/docfleet-downloader /usr/local/bin/docfleet-downloader
ENV HF_HOME=/models \
    HF_HUB_CACHE=/models/hub
ENTRYPOINT ["/usr/local/bin/docfleet-downloader"]

# scaler: external metrics API (HTTPS), KEDA external scaler (gRPC), Prometheus /metrics.
FROM runtime AS scaler
COPY --from=builder /out/docfleet-scaler /usr/local/bin/docfleet-scaler
EXPOSE 6443 9095 9100
ENTRYPOINT ["/usr/local/bin/docfleet-scaler"]

# cli: `docker compose run --rm cli enqueue /samples`.
FROM runtime AS cli
COPY --from=builder /out/docfleet /usr/local/bin/docfleet
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/docfleet"]
CMD ["--help"]
