# kaar's images, FROM scratch: static binaries built by the Go toolchain
# (CGO_ENABLED=0), CA certificates, /etc/passwd with the nonroot user 65532,
# nothing else. No base image is pulled, so the build needs no registry.
#
# One recipe for the three images of the compose demo; the build context
# says which (deploy/hack/build-images.sh stages them under .cache/images
# and runs `docker compose build`):
#   .cache/images/kaar     kaar and kaar-watcher, -planner, -executor,
#                          -mcpgateway, -notifier (ghcr.io/kaar-dev/kaar)
#   .cache/images/nats     nats-server (ghcr.io/kaar-dev/nats-server)
#   .cache/images/cluster  kaar-demo-cluster and the sandbox's control plane
#                          (ghcr.io/kaar-dev/kaar-demo-cluster)
# Each context holds rootfs/ (copied as is: /etc/passwd, /etc/group, the CA
# bundle, /tmp; the cluster's control-plane binaries under /opt/kaar),
# owned/ (directories the nonroot user writes) and bin/ (the image's
# commands, on PATH). Binaries come last, so that a code change rebuilds one
# layer. Pick the command with the container's command, e.g.
#   docker run --rm ghcr.io/kaar-dev/kaar:dev kaar --help
# Without a syntax directive: the builder's own Dockerfile frontend is used
# (the classic builder, or BuildKit's built-in one), never one pulled.
FROM scratch
COPY rootfs/ /
COPY --chown=65532:65532 owned/ /
COPY bin/ /usr/local/bin/
ENV PATH=/usr/local/bin HOME=/home/nonroot
USER 65532:65532
# The gateway's HTTP port, the notifier's webhook, the metrics and health
# port of the services and of the demo cluster.
EXPOSE 8000 8081 9090
# Metadata last, so that a new version or inputs hash reuses every layer.
# INPUTS is the hash of the Dockerfile and the context that
# build-images.sh compares to skip an image that is up to date.
ARG VERSION=dev
ARG INPUTS=""
LABEL org.opencontainers.image.description="kaar: Kubernetes analysis and remediation for AI assistants" \
      org.opencontainers.image.source="https://github.com/kaar-dev/kaar" \
      org.opencontainers.image.version="$VERSION" \
      dev.kaar.inputs="$INPUTS"
