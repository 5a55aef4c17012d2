//! Test support for the AI gateway: a stand-in vLLM server used by contract tests and the local demo.

pub mod standin;
