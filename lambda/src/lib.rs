//! gateway-lambda: the gateway as an AWS Lambda behind a Function URL with
//! response streaming, keeping its state in one DynamoDB table.
//!
//! The handler parses the request, asks `gateway-core` what to do, and performs
//! the I/O the decision names: DynamoDB reads and writes through [`store::DynamoStore`],
//! and the upstream request through a kept-alive `reqwest` client, streaming the
//! answer back chunk by chunk.

pub mod handler;
pub mod store;
pub mod table;
