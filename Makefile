# The two commands of the README: `make dev` runs the platform, `make test` runs every test.
# Both install PostgreSQL and nats-server from the distribution's packages when missing.

.PHONY: dev test deps lint

deps:
	@scripts/install-deps.sh

dev: deps
	cargo run --bin tenantry -- dev

test: deps
	@scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
