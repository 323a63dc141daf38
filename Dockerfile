# vaeserve: the serving runtime only (no torch, no compilers), running as a non-root user.
#
#   pip wheel --wheel-dir build/wheels .        # on the host: the project and its dependencies
#   docker build -t vaeserve .                  # no network needed inside the build
#   docker run -p 8000:8000 vaeserve            # the shipped model on http://127.0.0.1:8000
#
# docker/smoke.sh does all of it and checks the result. BASE_IMAGE must provide python3
# with venv (the official image does; docker/smoke.sh builds a Debian bookworm one).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY build/wheels /wheels
RUN python3 -m venv /opt/vaeserve \
 && /opt/vaeserve/bin/pip install --no-index --find-links /wheels --no-cache-dir vaeserve \
 && /opt/vaeserve/bin/pip uninstall --yes pip \
 && find /opt/vaeserve -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 vaeserve \
 && useradd --system --uid 10001 --gid vaeserve --no-create-home --shell /usr/sbin/nologin vaeserve
COPY --from=build /opt/vaeserve /opt/vaeserve
ENV PATH=/opt/vaeserve/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VAESERVE_HOST=0.0.0.0 \
    VAESERVE_PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Exec form: python is PID 1 and gets SIGTERM itself, drains requests and exits 0.
ENTRYPOINT ["python3", "-m", "app"]
