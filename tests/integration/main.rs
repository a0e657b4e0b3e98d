//! Integration tests against real PostgreSQL and NATS JetStream (`make test`).

mod api;
mod audit;
mod authorization;
mod billing;
mod commands;
mod contract;
mod erasure;
mod eventstore;
mod feed;
mod helpers;
mod isolation;
mod kept;
mod relay;
mod robustness;
mod tamper;
mod vault;
mod walkthrough;
