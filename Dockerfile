# pullguard: slim Python, dependencies in their own layer, non-root, no build tools at run time.
#   docker build -t pullguard:0.1.0 .

# --- build: wheels for the project and its dependencies --------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first, so editing the code does not rebuild this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p webhook && touch webhook/__init__.py \
 && pip wheel --wheel-dir /wheels . \
 && rm /wheels/pullguard-*.whl
COPY webhook ./webhook
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- run -------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 65532 pullguard \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin pullguard
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels pullguard \
 && rm -rf /wheels \
 && pip uninstall -y pip setuptools wheel 2>/dev/null || true
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["pullguard"]
CMD ["serve"]
