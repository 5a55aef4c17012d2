//! Request metrics: what is counted per request, how it is stored so that no
//! count is lost under concurrency, and how the stored numbers become the
//! `GET /_gateway/metrics` JSON and its Prometheus rendering.
//!
//! The adapters turn each finished request into a [`RequestSample`];
//! [`updates`] turns a sample into [`Updates`]: additions to named counters
//! and "raise to at least" updates, which a Durable Object (single-threaded,
//! one transaction per batch) and DynamoDB (`ADD`, and a conditional `SET`
//! for maxima) both apply atomically, so concurrent requests never overwrite
//! each other's counts. To answer a metrics call the adapter reads the
//! counters back and hands them, with each endpoint's [`Health`], to a
//! [`SnapshotBuilder`]; [`render_prometheus`] renders the [`Snapshot`].
//!
//! # Key scheme
//!
//! Every key is a colon-separated list; a key is an *item* and a *field*
//! (`{item}:{field}`, see [`split_key`]) so DynamoDB can keep one item per
//! subject with one number attribute per field. Route names, endpoint ids
//! and token ids are escaped by [`key_part`], so a part never holds a colon,
//! and one over [`MAX_KEY_PART`] bytes is keyed by a prefix and a hash of the
//! whole, so two long names never share a counter.
//!
//! | item | fields | kept |
//! | --- | --- | --- |
//! | `route:{route}` | `req`, `status:{class}`, `lat:{i}`, `lat:sum_us`, `gw:{i}`, `gw:sum_us`, `bytes_in`, `bytes_out`, `prompt`, `completion` | always (monotonic totals) |
//! | `m:{minute}:route:{route}` | `req`, `status:{class}`, `lat:{i}` | [`RETENTION_SECS`] after the minute ([`expires_at`]) |
//! | `ep:{route}:{endpoint}` | `req` (attempts), `fail` | always |
//! | `tok:{token}` | `req`, `route:{route}`, `prompt`, `completion`; `last_seen` is a *max* | always |
//!
//! `{minute}` is unix seconds / 60, zero-padded to ten digits so keys sort by
//! time ([`recent_range`], [`expired_range`]); `{class}` is one of
//! [`STATUS_CLASSES`]; `{i}` is a bucket index into [`BUCKET_BOUNDS_MS`]
//! (`lat` is the whole request, `gw` the gateway's own overhead); `sum_us` is
//! a sum in microseconds, so every stored number is an integer.
//!
//! # Retention
//!
//! Totals are separate monotonic counters rather than sums of time buckets,
//! so a Prometheus counter never goes down (a drop would read as a reset and
//! a spurious increase). Minute buckets serve the last hour (the request
//! series and recent latency) and are dropped by the adapters 7 days after
//! their minute (a DynamoDB TTL, a Durable Object alarm); a snapshot reads
//! only the last 60 of them.

/// On an admin's `GET /_gateway/metrics`: the state-store writes this instance (an edge isolate:
/// its Durable Object calls; a Lambda instance: its DynamoDB write requests, retries included)
/// has sent since it started. Per instance, not summed: a benchmark reads it before and after a
/// load to count writes per proxied request.
pub const INSTANCE_STORE_WRITES_HEADER: &str = "x-gateway-instance-store-writes";

mod histogram;
mod keys;
mod prometheus;
mod snapshot;
#[cfg(test)]
mod tests;

pub use histogram::*;
pub use keys::*;
pub use prometheus::*;
pub use snapshot::*;

use crate::health::*;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
