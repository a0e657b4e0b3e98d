//! The `tenantry` binary's library: configuration, the application that wires the API, the
//! relay and the projections together, and the throwaway local services of `tenantry dev`.
//!
//! `main` only parses the command line, starts tracing and calls in here, so everything the
//! binary does can be built and driven from tests.

pub mod app;
pub mod cli;
pub mod dev;
pub mod jobs;
pub mod transfer;

pub use app::{Application, Settings};
