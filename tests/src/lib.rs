//! Test support for the AI gateway: a stand-in vLLM server, and starting either deployment on loopback ports (contract tests, benchmarks, the local demo).

pub mod deploy;
pub mod standin;
