//! Test support for the AI gateway: a stand-in vLLM server, a stand-in OIDC identity provider, and starting either deployment on loopback ports (contract tests, benchmarks, the local demo).

pub mod deploy;
pub mod oidc;
pub mod standin;
