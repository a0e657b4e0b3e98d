# The two commands of the README: `make dev` runs the platform, `make test` runs every test.
# Both install PostgreSQL and nats-server from the distribution's packages when missing.
# `make bench` measures the platform against pgbench (the `tenantry-bench` tool, bench/):
# `make bench BENCH_ARGS="--seconds 5 --json"` passes its flags.

.PHONY: dev test bench deps lint

deps:
	@scripts/install-deps.sh

dev: deps
	cargo run --bin tenantry -- dev

test: deps
	@scripts/test.sh

bench: deps
	cargo run --release -p tenantry-bench -- $(BENCH_ARGS)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
