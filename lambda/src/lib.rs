//! gateway-lambda: the gateway as an AWS Lambda behind a Function URL with
//! response streaming, keeping its state in one DynamoDB table.
//!
//! The handler parses the request, asks `gateway-core` what to do, and performs
//! the I/O the decision names: DynamoDB reads and writes through [`store::DynamoStore`],
//! and the upstream request through a kept-alive `reqwest` client, streaming the
//! answer back chunk by chunk ([`metered`] counts it and records each request's
//! metrics in the table and as an [`emf`] line). With `GATEWAY_MODE=probe` the same
//! binary is the scheduled health prober instead ([`probe`]).

pub mod emf;
pub mod handler;
pub mod logging;
pub mod metered;
pub mod probe;
pub mod secrets;
pub mod settings;
pub mod store;
pub mod table;
pub mod tls;
