//! `gatewayctl`: the operator CLI of the AI gateway. Wraps the admin API
//! (`/_gateway/...`) with kubectl-shaped nouns and verbs, mints the first admin
//! token offline from the signing key, generates signing keys, and keeps a
//! model server's lease. See `gatewayctl --help`.

pub mod api;
pub mod apply;
pub mod cli;
pub mod config;
pub mod duration;
pub mod keep;
pub mod offline;
pub mod output;
pub mod run;

pub use cli::Cli;
