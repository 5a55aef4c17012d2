//! Test support for the AI gateway: a stand-in vLLM server, a stand-in OIDC identity provider, and starting either deployment on loopback ports (contract tests, benchmarks, the local demo).

pub mod deploy;
pub mod oidc;
pub mod route;
pub mod tls;
/// The stand-in vLLM server lives in its own light crate, so the local demo builds it without the AWS SDK.
pub use gateway_standin as standin;
pub mod vllm;
