# Ember's image: one `ember` binary (scheduler, executor, submit, produce, serve), with the jobs
# and the sample data. Multi-stage: a Rust build stage, then a slim Debian runtime.
#   docker build -t ember .
#   docker run --rm ember --help

# --- build ---------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
# librdkafka (bundled by rdkafka) builds with configure + make, and needs a C/C++ toolchain.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl python3 pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ember-cli \
 && cp target/release/ember /usr/local/bin/ember

# --- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 ember \
 && mkdir -p /run/ember && chown ember /run/ember
COPY --from=build /usr/local/bin/ember /usr/local/bin/ember
COPY jobs /opt/ember/jobs
COPY data /opt/ember/data
WORKDIR /opt/ember
USER ember
# Scheduler: gRPC + REST + web UI; Flight SQL; executor: Flight (shuffle), gRPC, metrics;
# ember serve: web UI.
EXPOSE 50050 32010 50051 50052 50053 4040
ENTRYPOINT ["ember"]
CMD ["--help"]
