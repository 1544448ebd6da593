# syntax=docker/dockerfile:1.7
# One image, six static binaries: kaar (all-in-one and CLI) and the five
# services kaar-watcher, kaar-planner, kaar-executor, kaar-mcpgateway,
# kaar-notifier.
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
# changes: one module, one go.mod.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod GOWORK=off go mod download
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
EXPOSE 8000 9090
ENTRYPOINT []
CMD ["kaar", "--help"]
