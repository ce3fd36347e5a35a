# Herald's two images, from one build, for docker users (`cargo xtask image` builds the same
# images without a container engine: same paths, entrypoints and users):
#   docker build --target speaker    -t herald-speaker:0.1.0 .
#   docker build --target controller -t herald-controller:0.1.0 .
# deploy/ refers to them by these names; push them to your registry and set the names with
# `kustomize edit set image` (see the README).

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The pinned toolchains and bpf-linker (cargo xtask setup), the XDP object, then the binaries.
RUN cargo xtask setup && cargo xtask build --release

# The controller needs nothing but libc, and runs as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot AS controller
COPY --from=build /src/target/release/herald-controller /usr/local/bin/herald-controller
ENTRYPOINT ["/usr/local/bin/herald-controller"]

# The speaker runs as root in the container for the host's bpffs, with the capabilities the
# DaemonSet grants (BPF, NET_ADMIN, NET_RAW) and no others.
FROM gcr.io/distroless/cc-debian12 AS speaker
COPY --from=build /src/target/release/herald-speaker /usr/local/bin/herald-speaker
ENTRYPOINT ["/usr/local/bin/herald-speaker"]
