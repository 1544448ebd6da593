# syntax=docker/dockerfile:1.7
# One image, five static binaries: kaar (all-in-one and CLI) and the four
# services kaar-watcher, kaar-planner, kaar-executor, kaar-mcpgateway.
# Pick the binary with the container's command, e.g.
#   docker run ghcr.io/kaar-dev/kaar kaar-watcher --nats-url nats://nats:4222
# deploy/hack/build-binaries.sh does the build; deploy/test runs the same
# script on the host (CGO_ENABLED=0) and checks every binary answers --help.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src
# Module files first so that the download layer is cached across source
# changes.
COPY pkg/events/go.mod pkg/events/go.sum pkg/events/
COPY pkg/config/go.mod pkg/config/go.sum pkg/config/
COPY pkg/bus/go.mod pkg/bus/go.sum pkg/bus/
COPY pkg/sandbox/go.mod pkg/sandbox/go.sum pkg/sandbox/
COPY services/watcher/go.mod services/watcher/go.sum services/watcher/
COPY services/planner/go.mod services/planner/go.sum services/planner/
COPY services/executor/go.mod services/executor/go.sum services/executor/
COPY services/mcpgateway/go.mod services/mcpgateway/go.sum services/mcpgateway/
COPY services/notifier/go.mod services/notifier/go.sum services/notifier/
COPY cmd/kaar/go.mod cmd/kaar/go.sum cmd/kaar/
RUN --mount=type=cache,target=/go/pkg/mod \
    for m in cmd/kaar services/watcher services/planner services/executor services/mcpgateway; do \
      (cd "$m" && GOWORK=off go mod download) || exit 1; \
    done
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH ./deploy/hack/build-binaries.sh /out "$VERSION"

# distroless static: no shell, no package manager, CA certificates and
# /etc/passwd with the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="kaar" \
      org.opencontainers.image.description="Kubernetes analysis and remediation for AI assistants" \
      org.opencontainers.image.source="https://github.com/kaar-dev/kaar" \
      org.opencontainers.image.version="$VERSION"
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# The gateway's HTTP port and the services' metrics/health port.
EXPOSE 8080 9090
ENTRYPOINT []
CMD ["kaar", "--help"]
