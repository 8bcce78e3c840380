# One image for all three services: `breakerchain order|payment|shipment` (see docker-compose.yaml).
# 1.26.11: govulncheck finds standard-library vulnerabilities reachable from this code in
# 1.26.8 (net/http, crypto/tls, crypto/x509; fixed in 1.26.9 and 1.26.10). go.mod's toolchain line says the same.
FROM golang:1.26.11-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same build .ci/run checks: a static binary, no cgo.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/breakerchain ./cmd/breakerchain

# distroless/static: no shell, no package manager, a non-root user; healthchecks use
# `breakerchain probe`.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/breakerchain /breakerchain
USER nonroot:nonroot
WORKDIR /home/nonroot
EXPOSE 3000
ENTRYPOINT ["/breakerchain"]
