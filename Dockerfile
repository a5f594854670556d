# paraflow's two images, one build: `--target worker` (the built-in partitioner, the SDK and the
# demo processors, what Job pods run) and `--target operator`. No network is needed inside the
# build: wheels come from dist/wheels (hack/images.sh builds them on the host). BASE_IMAGE is any
# Debian-like image with python3 >= 3.11 and venv: paraflow's own debootstrap base in
# hack/images.sh, python:3.11-slim-bookworm for users.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Bytecode compiled once here, checked by hash never (the sources cannot change): every pod and
# every CLI run starts without compiling its imports, on a read-only root filesystem.
FROM ${BASE_IMAGE} AS worker-venv
COPY dist/wheels /wheels
RUN python3 -m venv /opt/paraflow \
 && /opt/paraflow/bin/pip install --no-cache-dir --no-compile --no-index --find-links /wheels paraflow \
 && /opt/paraflow/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/paraflow

FROM worker-venv AS operator-venv
RUN /opt/paraflow/bin/pip install --no-cache-dir --no-compile --no-index --find-links /wheels "paraflow[operator]" \
 && /opt/paraflow/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/paraflow

# Non-root, and nothing written to the root filesystem: it can be mounted read-only. A passwd
# entry and HOME for the user: Docker invents HOME=/ for an unknown uid, but containerd (a real
# kubelet) does not, and Python's expanduser() then fails in getpwuid().
FROM ${BASE_IMAGE} AS runtime
RUN echo 'paraflow:x:65532:65532:paraflow:/tmp:/usr/sbin/nologin' >>/etc/passwd \
 && echo 'paraflow:x:65532:' >>/etc/group
ENV PATH=/opt/paraflow/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
WORKDIR /tmp

FROM runtime AS operator
COPY --from=operator-venv /opt/paraflow /opt/paraflow
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["paraflow", "operator"]
CMD ["--liveness", "http://0.0.0.0:8080/healthz"]

FROM runtime AS worker
COPY --from=worker-venv /opt/paraflow /opt/paraflow
USER 65532:65532
ENTRYPOINT ["paraflow-worker"]
