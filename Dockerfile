# llm-gateway as a container image: built from this tree, run as a non-root user on a
# distroless base (glibc + CA certificates, no shell). The systemd unit stays the primary way
# to run the gateway; this is for teams that run containers.
#   docker build -t llm-gateway .
#   docker run --rm -p 8080:8080 -e LLM_GATEWAY_ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64) llm-gateway
# Mount your config at /etc/llm-gateway/gateway.yaml (start from conf/examples/container.yaml)
# and a volume at /var/lib/llm-gateway to keep usage.jsonl and the audit log.

FROM rust:1-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --profile production --locked --bin llm-gateway \
    && mkdir -p /out/state \
    && cp target/production/llm-gateway /out/llm-gateway \
    && /out/llm-gateway check --no-secrets -c conf/examples/container.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/llm-gateway /usr/local/bin/llm-gateway
COPY --from=build --chown=nonroot:nonroot /out/state /var/lib/llm-gateway
COPY conf/examples/container.yaml /etc/llm-gateway/gateway.yaml
USER nonroot
EXPOSE 8080 8081
# SIGTERM drains: in-flight requests and streams finish (limits.shutdown_grace_s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/llm-gateway"]
CMD ["run", "-c", "/etc/llm-gateway/gateway.yaml"]
