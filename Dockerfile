# One image for all three services: `breakerchain order|payment|shipment` (see docker-compose.yaml).
# Go 1.26.11: in 1.26.8 govulncheck finds standard-library vulnerabilities this code can reach
# (net/http, crypto/tls, crypto/x509; fixed in 1.26.9 and 1.26.10). go.mod's toolchain line agrees.
FROM golang:1.26.11-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same build .ci/run checks: a static binary, no cgo, without the embedded servers the
# all-in-one needs (a service process then uses half the memory; see docs/BENCHMARKS.md).
RUN CGO_ENABLED=0 go build -tags noembed -trimpath -ldflags="-s -w" -o /out/breakerchain ./cmd/breakerchain

# distroless/static: no shell, no package manager, a non-root user; healthchecks use
# `breakerchain probe`.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/breakerchain /breakerchain
USER nonroot:nonroot
WORKDIR /home/nonroot
EXPOSE 3000
ENTRYPOINT ["/breakerchain"]
