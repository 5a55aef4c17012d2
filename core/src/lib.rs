//! gateway-core: every rule of the AI gateway that both deployments share.
//!
//! The crate decides and never does I/O: it receives the time (`now`), what
//! the store returned, and the request's parts, and returns a decision (route,
//! principal, endpoint order, headers to drop and add) or an [`Error`] that
//! maps to exactly one status and OpenAI-shaped body. The Cloudflare Worker
//! (`gateway-edge`) and the AWS Lambda (`gateway-lambda`) perform the I/O.

pub mod admin;
pub mod attempts;
pub mod balance;
pub mod batch;
pub mod budget;
pub mod cache;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod fetch;
pub mod forward;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
#[cfg(any(test, feature = "forge"))]
pub mod forge;
pub mod gateway;
pub mod health;
pub mod identity;
pub mod jwks;
pub mod load;
pub mod managed;
pub mod meter;
pub mod metrics;
pub mod models;
pub mod oidc;
pub mod probe;
pub mod ratelimit;
pub mod rbac;
pub mod registrar;
pub mod route;
pub mod schema;
pub mod stream;
pub mod store;
pub mod token;
pub mod trace;
pub mod usage;

pub use config::Config;
pub use error::{Error, Result};
