# Build: the full toolchain, cached dependency layer first.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY src ./src
COPY migrations ./migrations
# The built playground, embedded in the binary (committed; no Node needed here).
COPY playground/dist ./playground/dist
RUN cargo build --release --locked --bin tollgate

# Run: a slim Debian with only CA certificates, as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tollgate --create-home tollgate
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
USER tollgate
WORKDIR /var/lib/tollgate
ENV HOST=0.0.0.0 PORT=8000 APP_ENV=production DATA_DIR=/var/lib/tollgate
EXPOSE 8000
ENTRYPOINT ["tollgate"]
CMD ["serve"]
