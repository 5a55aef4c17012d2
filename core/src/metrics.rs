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

use crate::route::Endpoint;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------
// Histogram
// ---------------------------------------------------------------------------

/// Inclusive upper bounds, in milliseconds, of the finite histogram buckets;
/// one more bucket (`+Inf`) takes everything above the last. Shared by every
/// histogram, so histograms merge by adding counts.
pub const BUCKET_BOUNDS_MS: [f64; 19] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0, 60_000.0,
    120_000.0, 300_000.0,
];

/// Buckets in a histogram: the finite ones plus `+Inf`.
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

/// A latency histogram with fixed buckets ([`BUCKET_BOUNDS_MS`]): a count per
/// bucket and the sum of the recorded values.
///
/// Mergeable: two histograms combine by adding their counts, which is what
/// an adapter's atomic counters do. Serialised compactly as
/// `{"counts": [...], "sum_us": n}`, with trailing empty buckets left out.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "HistogramRepr", into = "HistogramRepr")]
pub struct Histogram {
    counts: [u64; BUCKETS],
    sum_us: u64,
}

/// The serialised form of a [`Histogram`].
#[derive(Serialize, Deserialize)]
struct HistogramRepr {
    counts: Vec<u64>,
    #[serde(default)]
    sum_us: u64,
}

impl From<Histogram> for HistogramRepr {
    fn from(h: Histogram) -> Self {
        let used = h.counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        HistogramRepr { counts: h.counts[..used].to_vec(), sum_us: h.sum_us }
    }
}

impl TryFrom<HistogramRepr> for Histogram {
    type Error = String;
    fn try_from(r: HistogramRepr) -> Result<Self, String> {
        if r.counts.len() > BUCKETS {
            return Err(format!("a histogram has at most {BUCKETS} buckets, got {}", r.counts.len()));
        }
        let mut h = Histogram { sum_us: r.sum_us, ..Histogram::default() };
        h.counts[..r.counts.len()].copy_from_slice(&r.counts);
        Ok(h)
    }
}

/// Milliseconds as whole microseconds; negative and NaN count as 0, huge values saturate.
fn to_us(ms: f64) -> u64 {
    if ms > 0.0 {
        // `as` saturates at u64::MAX (and +inf becomes u64::MAX).
        (ms * 1000.0).round() as u64
    } else {
        0
    }
}

impl Histogram {
    /// The bucket a value falls in: the first whose bound is `>= ms`
    /// (Prometheus' `le`), the last (`+Inf`) above 300 s. Negative and NaN
    /// values go to the first bucket.
    pub fn bucket_index(ms: f64) -> usize {
        if ms.is_nan() {
            return 0;
        }
        BUCKET_BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(BUCKETS - 1)
    }

    /// Records one value, in milliseconds.
    pub fn record(&mut self, ms: f64) {
        self.add(Self::bucket_index(ms), 1);
        self.add_sum_us(to_us(ms));
    }

    /// Adds `n` to bucket `index` (as read back from a counter); false, and
    /// nothing changes, when there is no such bucket.
    pub fn add(&mut self, index: usize, n: u64) -> bool {
        match self.counts.get_mut(index) {
            Some(c) => {
                *c = c.saturating_add(n);
                true
            }
            None => false,
        }
    }

    /// Adds to the sum of recorded values, in microseconds.
    pub fn add_sum_us(&mut self, us: u64) {
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Adds `other`'s counts and sum to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            *c = c.saturating_add(*o);
        }
        self.add_sum_us(other.sum_us);
    }

    /// The count in each bucket, in the order of [`BUCKET_BOUNDS_MS`], `+Inf` last.
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// The sum of the recorded values, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// The sum of the recorded values, in milliseconds.
    pub fn sum_ms(&self) -> f64 {
        self.sum_us as f64 / 1000.0
    }

    /// The estimated `q`-quantile (`0.0..=1.0`) in milliseconds; `None` when
    /// nothing was recorded or `q` is out of range.
    ///
    /// The bucket holding the value of rank `⌈q·count⌉` is found, and the
    /// estimate is interpolated linearly inside it (as Prometheus'
    /// `histogram_quantile` does), so the estimate and that true value lie in
    /// the same bucket: the error is less than the bucket's width, at most
    /// 0.25 ms below 0.5 ms and otherwise at most 2/3 of the bucket's upper
    /// bound (bounds grow by at most 3×; e.g. a true 120 ms may read as
    /// anything in 100–250 ms). Above 300 s the estimate is 300 000 ms, a
    /// lower bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let upto = below.saturating_add(c);
            if upto as f64 >= rank {
                let lower = i.checked_sub(1).and_then(|j| BUCKET_BOUNDS_MS.get(j)).copied().unwrap_or(0.0);
                let Some(&upper) = BUCKET_BOUNDS_MS.get(i) else { return Some(lower) };
                let frac = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lower + frac * (upper - lower));
            }
            below = upto;
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Samples and counter updates
// ---------------------------------------------------------------------------

/// Status classes, as counted and labelled; `other` takes anything outside 100–599.
pub const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The class of a status code: `1xx` … `5xx`, or `other`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Minute buckets are kept this long after their minute (7 days).
pub const RETENTION_SECS: u64 = 7 * 24 * 3600;

/// Minutes in the snapshot's recent window (the last hour).
pub const RECENT_MINUTES: u64 = 60;

/// Longest route name, endpoint id, token id or partner kept whole in a key, in
/// bytes; a longer one is keyed by its first [`HASHED_PREFIX`] bytes, `~` and
/// the first 16 hex digits of the SHA-256 of the whole value.
pub const MAX_KEY_PART: usize = 64;

/// Bytes of an over-long value kept readable in front of its hash (at least;
/// up to the next character boundary). With `~` and 16 hex digits the part is
/// always longer than [`MAX_KEY_PART`], so it never reads as a value kept whole.
pub const HASHED_PREFIX: usize = 48;

/// At most this many connection failures of one request are counted (a route's endpoint limit).
pub const MAX_FAILED_ENDPOINTS: usize = crate::route::MAX_ENDPOINTS;

/// Bytes kept as they are in a key part: `[A-Za-z0-9._-]`; everything else is percent-encoded.
const KEY_PART_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// What an adapter knows once a request is over (the response body ended or
/// the client went away). Only requests that resolved to a route are
/// sampled: a path that named no route must never become a key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RequestSample {
    /// The plan's route key (route name, or the ephemeral route's id).
    pub route: String,
    /// The endpoint that answered, if one did.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Endpoints that failed to connect before (or instead of) an answer, in order.
    #[serde(default)]
    pub failed_endpoints: Vec<String>,
    /// The status the client got (the upstream's, or the gateway's own 502/503/504…).
    pub status: u16,
    /// From the request's arrival to the end of the response body, ms.
    pub latency_ms: f64,
    /// The gateway's own time before the upstream request went out (`Server-Timing`), ms.
    #[serde(default)]
    pub gateway_ms: Option<f64>,
    /// From the upstream request going out to its response headers, ms (what a streamed
    /// answer's first token waits on).
    #[serde(default)]
    pub first_byte_ms: Option<f64>,
    /// Request body bytes sent upstream.
    #[serde(default)]
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    #[serde(default)]
    pub response_bytes: u64,
    /// The caller's token id, if it sent one.
    #[serde(default)]
    pub token_id: Option<String>,
    /// The partner, for partner tokens.
    #[serde(default)]
    pub partner: Option<String>,
    /// Prompt tokens from the response's `usage` ([`crate::usage::UsageTap`]).
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens from the response's `usage`.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    /// When the request arrived, unix seconds (it picks the minute bucket).
    pub at: u64,
    /// The token budgets the answer's usage counts against ([`crate::budget`]), by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_keys: Vec<String>,
}

impl RequestSample {
    /// The LLM tokens the answer used (prompt plus completion), what budgets count.
    pub fn llm_tokens(&self) -> u64 {
        self.prompt_tokens.unwrap_or(0).saturating_add(self.completion_tokens.unwrap_or(0))
    }
}

/// Changes to stored numbers, each atomic on its own: `adds` are added
/// (DynamoDB `ADD`, an increment in a Durable Object's transaction) and
/// `maxes` raise a number to at least the value (a conditional `SET`, or
/// `max` in a transaction). Both commute, so batches may be applied in any
/// order, merged, or split per item, and nothing is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Updates {
    /// Counter key → amount to add (never 0).
    pub adds: BTreeMap<String, u64>,
    /// Key → value the stored number must be raised to (if lower or absent).
    pub maxes: BTreeMap<String, u64>,
}

impl Updates {
    /// Adds `delta` to counter `key` (nothing for 0).
    pub fn add(&mut self, key: String, delta: u64) {
        if delta > 0 {
            let v = self.adds.entry(key).or_insert(0);
            *v = v.saturating_add(delta);
        }
    }

    /// Raises `key` to at least `value`.
    pub fn max(&mut self, key: String, value: u64) {
        let v = self.maxes.entry(key).or_insert(value);
        *v = (*v).max(value);
    }

    /// Folds `other` in: adds sum, maxes take the larger (to batch several requests' updates).
    pub fn merge(&mut self, other: Updates) {
        for (k, d) in other.adds {
            self.add(k, d);
        }
        for (k, v) in other.maxes {
            self.max(k, v);
        }
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.maxes.is_empty()
    }

    /// Number of keys touched.
    pub fn len(&self) -> usize {
        self.adds.len() + self.maxes.len()
    }

    /// Applies the updates to an in-memory map of counters: the reference
    /// semantics every adapter's store must match.
    pub fn apply_to(&self, store: &mut BTreeMap<String, u64>) {
        for (k, d) in &self.adds {
            let v = store.entry(k.clone()).or_insert(0);
            *v = v.saturating_add(*d);
        }
        for (k, m) in &self.maxes {
            let v = store.entry(k.clone()).or_insert(0);
            *v = (*v).max(*m);
        }
    }
}

/// Escapes one identifier for use inside a key: `[A-Za-z0-9._-]` stay as they
/// are, other bytes are percent-encoded (so a part never holds `:`, and never
/// `~` but as below), the empty string is `~`. A value over [`MAX_KEY_PART`]
/// bytes becomes its first [`HASHED_PREFIX`] bytes (escaped), `~` and 16 hex
/// digits of its SHA-256: distinct values never share a key, and values up to
/// the limit keep the key they always had.
pub fn key_part(s: &str) -> String {
    if s.is_empty() {
        return "~".to_string();
    }
    if s.len() <= MAX_KEY_PART {
        return utf8_percent_encode(s, KEY_PART_ESCAPED).to_string();
    }
    let mut cut = HASHED_PREFIX;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", utf8_percent_encode(&s[..cut], KEY_PART_ESCAPED))
}

/// Reverses [`key_part`]; `None` for a part that is not valid UTF-8 once decoded.
fn decode_part(p: &str) -> Option<String> {
    if p == "~" {
        return Some(String::new());
    }
    percent_decode_str(p).decode_utf8().ok().map(|s| s.into_owned())
}

/// The minute bucket of a unix time.
pub fn minute_of(at: u64) -> u64 {
    at / 60
}

/// The item of a route's totals: `route:{route}`.
pub fn route_item(route: &str) -> String {
    format!("route:{}", key_part(route))
}

/// The item of a route's minute bucket: `m:{minute:010}:route:{route}`.
pub fn minute_item(minute: u64, route: &str) -> String {
    format!("m:{minute:010}:route:{}", key_part(route))
}

/// The item of an endpoint's totals: `ep:{route}:{endpoint}`.
pub fn endpoint_item(route: &str, endpoint: &str) -> String {
    format!("ep:{}:{}", key_part(route), key_part(endpoint))
}

/// The item of a token's totals: `tok:{token}`.
pub fn token_item(token: &str) -> String {
    format!("tok:{}", key_part(token))
}

/// Splits a key into its item and field (`m:0029000000:route:llama:lat:3` →
/// `m:0029000000:route:llama`, `lat:3`); `None` for a key of no known kind.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let parts = match key.split(':').next()? {
        "route" | "tok" | "ptn" => 2,
        "ep" => 3,
        "m" => 4,
        _ => return None,
    };
    let (idx, _) = key.match_indices(':').nth(parts - 1)?;
    Some((&key[..idx], &key[idx + 1..]))
}

/// When a key may be dropped, unix seconds: minute buckets [`RETENTION_SECS`]
/// after their minute ends; `None` for totals, which are kept.
pub fn expires_at(key: &str) -> Option<u64> {
    let mut parts = key.split(':');
    if parts.next()? != "m" {
        return None;
    }
    let minute = parse_minute(parts.next()?)?;
    Some(minute.saturating_add(1).saturating_mul(60).saturating_add(RETENTION_SECS))
}

/// The key range `[start, end)` that holds the minute buckets a snapshot at
/// `now` reads (the last [`RECENT_MINUTES`] minutes), for an ordered listing
/// (`storage.list({start, end})`).
pub fn recent_range(now: u64) -> (String, String) {
    let m = minute_of(now);
    (format!("m:{:010}", m.saturating_sub(RECENT_MINUTES - 1)), format!("m:{:010}", m.saturating_add(1)))
}

/// The key range `[start, end)` of minute buckets past retention at `now`, to delete.
pub fn expired_range(now: u64) -> (String, String) {
    ("m:".to_string(), format!("m:{:010}", minute_of(now.saturating_sub(RETENTION_SECS))))
}

fn parse_minute(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The counter updates one request makes (see the module's key scheme).
pub fn updates(s: &RequestSample) -> Updates {
    let mut u = Updates::default();
    let total = route_item(&s.route);
    let minute = minute_item(minute_of(s.at), &s.route);
    let class = status_class(s.status);
    let lat = Histogram::bucket_index(s.latency_ms);
    for item in [&total, &minute] {
        u.add(format!("{item}:req"), 1);
        u.add(format!("{item}:status:{class}"), 1);
        u.add(format!("{item}:lat:{lat}"), 1);
    }
    u.add(format!("{total}:lat:sum_us"), to_us(s.latency_ms));
    if let Some(gw) = s.gateway_ms {
        u.add(format!("{total}:gw:{}", Histogram::bucket_index(gw)), 1);
        u.add(format!("{total}:gw:sum_us"), to_us(gw));
    }
    if let Some(fb) = s.first_byte_ms {
        u.add(format!("{total}:fb:{}", Histogram::bucket_index(fb)), 1);
        u.add(format!("{total}:fb:sum_us"), to_us(fb));
    }
    u.add(format!("{total}:bytes_in"), s.request_bytes);
    u.add(format!("{total}:bytes_out"), s.response_bytes);
    u.add(format!("{total}:prompt"), s.prompt_tokens.unwrap_or(0));
    u.add(format!("{total}:completion"), s.completion_tokens.unwrap_or(0));

    for failed in s.failed_endpoints.iter().take(MAX_FAILED_ENDPOINTS) {
        let ep = endpoint_item(&s.route, failed);
        u.add(format!("{ep}:req"), 1);
        u.add(format!("{ep}:fail"), 1);
    }
    if let Some(endpoint) = &s.endpoint {
        let ep = endpoint_item(&s.route, endpoint);
        u.add(format!("{ep}:req"), 1);
        u.add(format!("{ep}:fail"), u64::from(s.status >= 500));
    }

    let callers = s.token_id.as_deref().map(token_item).into_iter().chain(s.partner.as_deref().map(partner_item));
    for item in callers {
        u.add(format!("{item}:req"), 1);
        u.add(format!("{item}:route:{}", key_part(&s.route)), 1);
        u.add(format!("{item}:prompt"), s.prompt_tokens.unwrap_or(0));
        u.add(format!("{item}:completion"), s.completion_tokens.unwrap_or(0));
        u.max(format!("{item}:last_seen"), s.at);
    }
    u
}

/// The item of a partner's counters (same fields as a token's).
pub fn partner_item(partner: &str) -> String {
    format!("ptn:{}", key_part(partner))
}

/// A field of a route's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteField {
    Req,
    Status(usize),
    Lat(usize),
    LatSum,
    Gw(usize),
    GwSum,
    Fb(usize),
    FbSum,
    BytesIn,
    BytesOut,
    Prompt,
    Completion,
}

impl RouteField {
    fn parse(f: &[&str]) -> Option<Self> {
        let bucket = |s: &str| s.parse::<usize>().ok().filter(|&i| i < BUCKETS);
        Some(match f {
            ["req"] => RouteField::Req,
            ["status", c] => RouteField::Status(STATUS_CLASSES.iter().position(|k| k == c)?),
            ["lat", "sum_us"] => RouteField::LatSum,
            ["lat", i] => RouteField::Lat(bucket(i)?),
            ["gw", "sum_us"] => RouteField::GwSum,
            ["gw", i] => RouteField::Gw(bucket(i)?),
            ["fb", "sum_us"] => RouteField::FbSum,
            ["fb", i] => RouteField::Fb(bucket(i)?),
            ["bytes_in"] => RouteField::BytesIn,
            ["bytes_out"] => RouteField::BytesOut,
            ["prompt"] => RouteField::Prompt,
            ["completion"] => RouteField::Completion,
            _ => return None,
        })
    }
}

/// A key read back, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    Total { route: String, field: RouteField },
    Minute { minute: u64, route: String, field: RouteField },
    Endpoint { route: String, endpoint: String, fail: bool },
    Token { token: String, field: TokenField },
    Partner { partner: String, field: TokenField },
}

/// A field of a token's item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenField {
    Req,
    Route(String),
    Prompt,
    Completion,
    LastSeen,
}

fn parse_key(key: &str) -> Option<Parsed> {
    let parts: Vec<&str> = key.split(':').collect();
    Some(match parts.as_slice() {
        ["route", r, f @ ..] => Parsed::Total { route: decode_part(r)?, field: RouteField::parse(f)? },
        ["m", m, "route", r, f @ ..] => {
            Parsed::Minute { minute: parse_minute(m)?, route: decode_part(r)?, field: RouteField::parse(f)? }
        }
        ["ep", r, e, f] => Parsed::Endpoint {
            route: decode_part(r)?,
            endpoint: decode_part(e)?,
            fail: match *f {
                "req" => false,
                "fail" => true,
                _ => return None,
            },
        },
        ["tok", t, f @ ..] => Parsed::Token { token: decode_part(t)?, field: TokenField::parse(f)? },
        ["ptn", p, f @ ..] => Parsed::Partner { partner: decode_part(p)?, field: TokenField::parse(f)? },
        _ => return None,
    })
}

impl TokenField {
    fn parse(f: &[&str]) -> Option<Self> {
        Some(match f {
            ["req"] => TokenField::Req,
            ["route", r] => TokenField::Route(decode_part(r)?),
            ["prompt"] => TokenField::Prompt,
            ["completion"] => TokenField::Completion,
            ["last_seen"] => TokenField::LastSeen,
            _ => return None,
        })
    }

    fn apply(self, t: &mut TokenMetrics, value: u64) {
        match self {
            TokenField::Req => sat_add(&mut t.requests, value),
            TokenField::Route(r) => sat_add(t.routes.entry(r).or_default(), value),
            TokenField::Prompt => sat_add(&mut t.prompt_tokens, value),
            TokenField::Completion => sat_add(&mut t.completion_tokens, value),
            TokenField::LastSeen => t.last_seen = Some(t.last_seen.unwrap_or(0).max(value)),
        }
    }
}

// ---------------------------------------------------------------------------
// Health and uptime
// ---------------------------------------------------------------------------

/// Consecutive failed probes after which an endpoint is down. One successful
/// probe makes it up again: a single lost probe never takes an endpoint out,
/// and a recovered one is back at once.
pub const DOWN_AFTER_FAILURES: u32 = 2;

/// With no probe for this long, an endpoint's state is unknown again (the prober stopped).
pub const HEALTH_STALE_SECS: u64 = 600;

/// Most state changes kept per endpoint; the oldest go first.
pub const MAX_TRANSITIONS: usize = 4096;

/// On an admin's `GET /_gateway/metrics`: the state-store writes this instance (an edge isolate:
/// its Durable Object calls; a Lambda instance: its DynamoDB write requests, retries included)
/// has sent since it started. Per instance, not summed: a benchmark reads it before and after a
/// load to count writes per proxied request.
pub const INSTANCE_STORE_WRITES_HEADER: &str = "x-gateway-instance-store-writes";

/// The path an adapter probes on an endpoint (vLLM's liveness endpoint).
pub const PROBE_PATH: &str = "health";

/// True when a probe's outcome counts as healthy: a 2xx answer in time (`None`: no answer).
pub fn probe_ok(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// Where an endpoint's [`Health`] is kept: `health:{route}:{endpoint}`
/// (outside the counter keys; [`SnapshotBuilder::counter`] ignores it).
pub fn health_key(route: &str, endpoint: &str) -> String {
    format!("health:{}:{}", key_part(route), key_part(endpoint))
}

/// The route and endpoint of a [`health_key`]; `None` for any other key.
pub fn parse_health_key(key: &str) -> Option<(String, String)> {
    match key.split(':').collect::<Vec<_>>().as_slice() {
        ["health", r, e] => Some((decode_part(r)?, decode_part(e)?)),
        _ => None,
    }
}

/// One health probe of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Route key.
    pub route: String,
    /// Endpoint id.
    pub endpoint: String,
    /// When the probe was made, unix seconds.
    pub at: u64,
    /// Whether it succeeded ([`probe_ok`]).
    pub ok: bool,
}

/// An endpoint's state as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// The last decisive probe succeeded.
    Up,
    /// The last [`DOWN_AFTER_FAILURES`] probes failed.
    Down,
    /// Not probed yet, not decided yet, or not probed for [`HEALTH_STALE_SECS`].
    #[default]
    Unknown,
}

/// A change of an endpoint's state, at the probe that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Unix seconds.
    pub at: u64,
    /// The new state: up (`true`) or down.
    pub up: bool,
}

/// What is kept about one endpoint's health (the adapter stores it as JSON
/// under e.g. `health:{route}:{endpoint}` and updates it one probe at a time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Failed probes since the last success.
    #[serde(default)]
    failures: u32,
    /// Time of the latest probe applied.
    #[serde(default)]
    last_probe_at: Option<u64>,
    /// State changes, oldest first.
    #[serde(default)]
    transitions: Vec<Transition>,
}

impl Health {
    /// Applies a probe made at `at`; returns the state change it caused, if
    /// any. Probes older than the latest one applied are ignored, so the
    /// transitions stay in order. The downtime starts at the probe that
    /// decided it (the second failure): downtime is undercounted by at most
    /// one probe interval. Transitions older than [`RETENTION_SECS`] are
    /// dropped, except the last one before that, which gives the state at
    /// the start of the window.
    pub fn observe(&mut self, at: u64, ok: bool) -> Option<Transition> {
        if self.last_probe_at.is_some_and(|last| at < last) {
            return None;
        }
        self.last_probe_at = Some(at);
        let current = self.transitions.last().map(|t| t.up);
        let change = if ok {
            self.failures = 0;
            (current != Some(true)).then_some(Transition { at, up: true })
        } else {
            self.failures = self.failures.saturating_add(1);
            (self.failures >= DOWN_AFTER_FAILURES && current != Some(false)).then_some(Transition { at, up: false })
        };
        if let Some(t) = change {
            self.transitions.push(t);
        }
        self.prune(at.saturating_sub(RETENTION_SECS));
        change
    }

    /// Drops transitions before `cutoff` but the last of them, and the oldest past [`MAX_TRANSITIONS`].
    fn prune(&mut self, cutoff: u64) {
        let old = self.transitions.iter().take_while(|t| t.at < cutoff).count();
        if old > 1 {
            self.transitions.drain(..old - 1);
        }
        if self.transitions.len() > MAX_TRANSITIONS {
            let extra = self.transitions.len() - MAX_TRANSITIONS;
            self.transitions.drain(..extra);
        }
    }

    /// The state changes kept, oldest first.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// When the latest probe was made.
    pub fn last_probe_at(&self) -> Option<u64> {
        self.last_probe_at
    }

    /// The state at `now`: unknown before the first decision and once probes
    /// have stopped for [`HEALTH_STALE_SECS`].
    pub fn state(&self, now: u64) -> HealthState {
        match (self.last_probe_at, self.transitions.last()) {
            (Some(last), Some(t)) if now <= last.saturating_add(HEALTH_STALE_SECS) => {
                if t.up {
                    HealthState::Up
                } else {
                    HealthState::Down
                }
            }
            _ => HealthState::Unknown,
        }
    }

    /// True when the endpoint is down at `now` (unknown is not down).
    pub fn is_down(&self, now: u64) -> bool {
        self.state(now) == HealthState::Down
    }

    /// The fraction of `[from, to)` the endpoint was up, over the time its
    /// state was known ([`uptime`]); time after probes stopped for
    /// [`HEALTH_STALE_SECS`] is unknown. A gap in probing between two
    /// probes counts as the state before it.
    pub fn uptime(&self, from: u64, to: u64) -> Option<f64> {
        let known_until = self.last_probe_at?.saturating_add(HEALTH_STALE_SECS);
        uptime(&self.transitions, from, to.min(known_until))
    }
}

/// The fraction of `[from, to)` spent up, given state changes oldest first.
/// Time before the first transition is unknown and left out of the
/// denominator; each state lasts until the next transition (the last until
/// `to`). `None` when no part of the window has a known state.
pub fn uptime(transitions: &[Transition], from: u64, to: u64) -> Option<f64> {
    let (mut up, mut known) = (0u64, 0u64);
    for (i, t) in transitions.iter().enumerate() {
        let end = transitions.get(i + 1).map_or(to, |next| next.at);
        let (a, b) = (t.at.max(from), end.min(to));
        if b > a {
            known += b - a;
            if t.up {
                up += b - a;
            }
        }
    }
    (known > 0).then(|| up as f64 / known as f64)
}

/// The live endpoints minus those `is_down` says are down, for
/// [`crate::balance::Balancer::rank`]. When every live endpoint is down they
/// are all kept: probes can be wrong or late, and trying a "down" endpoint
/// (then answering 502 if it fails) beats a certain 503. Removing an endpoint
/// from the set moves only the sessions pinned to it.
pub fn exclude_down(endpoints: &[Endpoint], now: u64, is_down: impl Fn(&str) -> bool) -> Vec<Endpoint> {
    let live: Vec<&Endpoint> = endpoints.iter().filter(|e| e.is_live(now)).collect();
    let healthy: Vec<Endpoint> = live.iter().filter(|e| !is_down(&e.id)).map(|e| (*e).clone()).collect();
    if healthy.is_empty() {
        live.into_iter().cloned().collect()
    } else {
        healthy
    }
}

// ---------------------------------------------------------------------------
// Snapshot
// ---------------------------------------------------------------------------

/// Three percentiles of a histogram, and the histogram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Median, ms (`null` with no data).
    pub p50: Option<f64>,
    /// 95th percentile, ms.
    pub p95: Option<f64>,
    /// 99th percentile, ms.
    pub p99: Option<f64>,
    /// Counts per bucket of [`Snapshot::histogram_bounds_ms`], and the sum.
    pub histogram: Histogram,
}

impl Distribution {
    /// Fills the percentiles from the histogram (rounded to a microsecond).
    fn finish(&mut self) {
        let q = |q: f64| self.histogram.quantile(q).map(|v| (v * 1000.0).round() / 1000.0);
        (self.p50, self.p95, self.p99) = (q(0.50), q(0.95), q(0.99));
    }
}

/// Requests of one minute, for a chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinutePoint {
    /// Start of the minute, unix seconds.
    pub at: u64,
    /// Requests that arrived in it.
    pub requests: u64,
    /// Of those, answered with a 5xx.
    pub errors: u64,
}

/// One endpoint of a route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointMetrics {
    /// Requests sent to it (including attempts that failed to connect).
    pub requests: u64,
    /// Attempts that failed to connect or were answered with a 5xx.
    pub failures: u64,
    /// State from the health probes.
    pub health: HealthState,
    /// Fraction of the last 24 h it was up (`null`: never known).
    pub uptime_24h: Option<f64>,
    /// Fraction of the last 7 days it was up.
    pub uptime_7d: Option<f64>,
    /// When it was last probed.
    pub last_probe_at: Option<u64>,
    /// vLLM's latest load reading (`/metrics`): requests running and waiting, KV-cache
    /// usage, prefix-cache hit rate; `null` when none (not read yet, or not a vLLM).
    #[serde(default)]
    pub load: Option<crate::load::EndpointLoad>,
}

/// One route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteMetrics {
    /// All requests counted.
    pub requests_total: u64,
    /// Requests in the last hour.
    pub requests_last_hour: u64,
    /// All requests by status class ([`STATUS_CLASSES`]); absent classes had none.
    pub by_status_class: BTreeMap<String, u64>,
    /// Latency (arrival to end of the response body) of all requests.
    pub latency_ms: Distribution,
    /// Latency of the last hour's requests.
    pub latency_ms_last_hour: Distribution,
    /// The gateway's own time before the upstream request went out.
    pub gateway_overhead_ms: Distribution,
    /// From the upstream request going out to its response headers.
    #[serde(default)]
    pub upstream_first_byte_ms: Distribution,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// LLM prompt tokens reported by the upstream.
    pub prompt_tokens: u64,
    /// LLM completion tokens reported by the upstream.
    pub completion_tokens: u64,
    /// Requests per minute over the last hour, oldest first, one point per minute.
    pub series: Vec<MinutePoint>,
    /// Endpoints by id.
    pub endpoints: BTreeMap<String, EndpointMetrics>,
}

/// One token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMetrics {
    /// Requests made with it.
    pub requests: u64,
    /// Requests per route.
    pub routes: BTreeMap<String, u64>,
    /// Latest request, unix seconds.
    pub last_seen: Option<u64>,
    /// LLM prompt tokens.
    pub prompt_tokens: u64,
    /// LLM completion tokens.
    pub completion_tokens: u64,
}

/// The body of `GET /_gateway/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was made, unix seconds.
    pub generated_at: u64,
    /// Upper bounds of the histogram buckets, ms; counts past the last are above 300 s.
    pub histogram_bounds_ms: Vec<f64>,
    /// Routes by key.
    pub routes: BTreeMap<String, RouteMetrics>,
    /// Tokens by id.
    pub tokens: BTreeMap<String, TokenMetrics>,
    /// Partners by name (the usage of their partner tokens).
    #[serde(default)]
    pub partners: BTreeMap<String, TokenMetrics>,
    /// Unrevoked tokens that expire soon, by kind (`user`, `service`, `partner`, `registrar`); filled by
    /// [`SnapshotBuilder::tokens`] where the caller read the token records.
    #[serde(default)]
    pub tokens_expiring: BTreeMap<String, Expiring>,
}

/// How many tokens of one kind expire soon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// Expire within the next 24 hours.
    pub within_24h: u64,
    /// Expire within the next 7 days (those of the next 24 hours included).
    pub within_7d: u64,
}

/// Builds a [`Snapshot`] from counters read back and endpoints' health.
#[derive(Debug)]
pub struct SnapshotBuilder {
    now: u64,
    snap: Snapshot,
}

impl SnapshotBuilder {
    /// An empty snapshot at `now`.
    pub fn new(now: u64) -> Self {
        SnapshotBuilder { now, snap: Snapshot { generated_at: now, histogram_bounds_ms: BUCKET_BOUNDS_MS.to_vec(), ..Snapshot::default() } }
    }

    fn route(&mut self, route: String) -> &mut RouteMetrics {
        let first = minute_of(self.now).saturating_sub(RECENT_MINUTES - 1);
        self.snap.routes.entry(route).or_insert_with(|| RouteMetrics {
            series: (0..RECENT_MINUTES).map(|i| MinutePoint { at: (first + i) * 60, ..MinutePoint::default() }).collect(),
            ..RouteMetrics::default()
        })
    }

    /// Adds one stored number. Keys of no known kind, and minute buckets
    /// outside the last hour, are ignored (false). A key given twice counts
    /// twice, except a max, which keeps the larger.
    pub fn counter(&mut self, key: &str, value: u64) -> bool {
        let Some(parsed) = parse_key(key) else { return false };
        let now_minute = minute_of(self.now);
        match parsed {
            Parsed::Total { route, field } => {
                let r = self.route(route);
                match field {
                    RouteField::Req => sat_add(&mut r.requests_total, value),
                    RouteField::Status(c) => sat_add(r.by_status_class.entry(STATUS_CLASSES[c].to_string()).or_default(), value),
                    RouteField::Lat(i) => {
                        r.latency_ms.histogram.add(i, value);
                    }
                    RouteField::LatSum => r.latency_ms.histogram.add_sum_us(value),
                    RouteField::Gw(i) => {
                        r.gateway_overhead_ms.histogram.add(i, value);
                    }
                    RouteField::GwSum => r.gateway_overhead_ms.histogram.add_sum_us(value),
                    RouteField::Fb(i) => {
                        r.upstream_first_byte_ms.histogram.add(i, value);
                    }
                    RouteField::FbSum => r.upstream_first_byte_ms.histogram.add_sum_us(value),
                    RouteField::BytesIn => sat_add(&mut r.bytes_in, value),
                    RouteField::BytesOut => sat_add(&mut r.bytes_out, value),
                    RouteField::Prompt => sat_add(&mut r.prompt_tokens, value),
                    RouteField::Completion => sat_add(&mut r.completion_tokens, value),
                }
            }
            Parsed::Minute { minute, route, field } => {
                if minute > now_minute || now_minute - minute >= RECENT_MINUTES {
                    return false;
                }
                let idx = (RECENT_MINUTES - 1 - (now_minute - minute)) as usize;
                let r = self.route(route);
                match field {
                    RouteField::Req => {
                        sat_add(&mut r.requests_last_hour, value);
                        if let Some(p) = r.series.get_mut(idx) {
                            sat_add(&mut p.requests, value);
                        }
                    }
                    RouteField::Status(c) if STATUS_CLASSES[c] == "5xx" => {
                        if let Some(p) = r.series.get_mut(idx) {
                            sat_add(&mut p.errors, value);
                        }
                    }
                    RouteField::Lat(i) => {
                        r.latency_ms_last_hour.histogram.add(i, value);
                    }
                    _ => {}
                }
            }
            Parsed::Endpoint { route, endpoint, fail } => {
                let e = self.route(route).endpoints.entry(endpoint).or_default();
                sat_add(if fail { &mut e.failures } else { &mut e.requests }, value);
            }
            Parsed::Token { token, field } => field.apply(self.snap.tokens.entry(token).or_default(), value),
            Parsed::Partner { partner, field } => field.apply(self.snap.partners.entry(partner).or_default(), value),
        }
        true
    }

    /// Adds an endpoint's health: its state and its uptime over 24 h and 7 days.
    pub fn health(&mut self, route: &str, endpoint: &str, health: &Health) {
        let now = self.now;
        let e = self.route(route.to_string()).endpoints.entry(endpoint.to_string()).or_default();
        e.health = health.state(now);
        e.uptime_24h = health.uptime(now.saturating_sub(24 * 3600), now);
        e.uptime_7d = health.uptime(now.saturating_sub(7 * 24 * 3600), now);
        e.last_probe_at = health.last_probe_at();
    }

    /// Counts the unrevoked, unexpired tokens among `records` that expire within
    /// 24 hours and 7 days, by kind.
    pub fn tokens<'r>(&mut self, records: impl IntoIterator<Item = &'r crate::store::TokenRecord>) {
        let now = self.now;
        for r in records
            .into_iter()
            .filter(|r| r.revoked_at.is_none() && r.expires_at > now)
        {
            let kind = r.kind.as_str().to_string();
            let left = r.expires_at - now;
            let e = self.snap.tokens_expiring.entry(kind).or_default();
            e.within_24h += u64::from(left <= 24 * 3600);
            e.within_7d += u64::from(left <= 7 * 24 * 3600);
        }
    }

    /// Adds a route's latest load readings to its endpoints.
    pub fn loads(&mut self, route: &str, loads: &crate::load::Loads) {
        for (endpoint, l) in loads {
            self.route(route.to_string()).endpoints.entry(endpoint.clone()).or_default().load = Some(l.clone());
        }
    }

    /// The finished snapshot, with the percentiles computed.
    pub fn build(mut self) -> Snapshot {
        for r in self.snap.routes.values_mut() {
            r.latency_ms.finish();
            r.latency_ms_last_hour.finish();
            r.gateway_overhead_ms.finish();
            r.upstream_first_byte_ms.finish();
        }
        self.snap
    }
}

fn sat_add(to: &mut u64, v: u64) {
    *to = to.saturating_add(v);
}

/// A snapshot at `now` from every stored `(key, value)` the adapter read and
/// each endpoint's `(route, endpoint, health)`.
pub fn snapshot<'h, K: AsRef<str>>(
    now: u64,
    counters: impl IntoIterator<Item = (K, u64)>,
    health: impl IntoIterator<Item = (&'h str, &'h str, &'h Health)>,
) -> Snapshot {
    let mut b = SnapshotBuilder::new(now);
    for (k, v) in counters {
        b.counter(k.as_ref(), v);
    }
    for (route, endpoint, h) in health {
        b.health(route, endpoint, h);
    }
    b.build()
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

/// The `Content-Type` of [`render_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition being written.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.0.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                self.0.push_str(k);
                self.0.push_str("=\"");
                escape_label_value(v, &mut self.0);
                self.0.push('"');
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(value);
        self.0.push('\n');
    }

    /// A histogram's samples; `per_ms` is 1000 for a family in seconds, 1 for the
    /// deprecated one in milliseconds (the buckets are the same).
    fn histogram(&mut self, name: &str, route: &str, h: &Histogram, per_ms: f64) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, c) in h.counts().iter().enumerate() {
            cumulative = cumulative.saturating_add(*c);
            let le = BUCKET_BOUNDS_MS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format_float(*b / per_ms));
            self.sample(
                &bucket,
                &[("route", route), ("le", &le)],
                &cumulative.to_string(),
            );
        }
        self.sample(
            &format!("{name}_sum"),
            &[("route", route)],
            &format_float(h.sum_us() as f64 / (1000.0 * per_ms)),
        );
        self.sample(
            &format!("{name}_count"),
            &[("route", route)],
            &h.count().to_string(),
        );
    }
}

/// Escapes a label value as the exposition format requires: `\`, `"` and newline.
fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as Prometheus reads it (`+Inf`, `-Inf`, `NaN`, else plain decimal).
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// Picks one of a route's histograms.
type HistogramOf = fn(&RouteMetrics) -> &Histogram;
/// Picks one figure of an endpoint's load reading.
type ReadingOf = fn(&crate::load::EndpointLoad) -> Option<f64>;

/// Renders a snapshot in the Prometheus text exposition format (version
/// 0.0.4), as Prometheus' naming conventions ask: durations in seconds,
/// timestamps as `*_timestamp_seconds`, counters and histograms over all
/// counted requests (monotonic), endpoint state and uptime as gauges. Unknown
/// health states and uptimes are left out rather than guessed.
///
/// Series per token are unbounded (self-service tokens come and go), so they
/// are written only when `per_token` is asked for (`?per_token=1`); series
/// per route, endpoint and partner are always there.
///
/// `gateway_request_duration_ms` and `gateway_overhead_duration_ms` are kept
/// for one release next to their `_seconds` successors, marked deprecated in
/// their help text, and so is `gateway_token_last_seen_seconds`.
pub fn render_prometheus(s: &Snapshot, per_token: bool) -> String {
    let mut out = Exposition(String::new());
    let routes = &s.routes;

    out.family("gateway_requests_total", "counter", "Requests per route and status class.");
    for (route, r) in routes {
        for (class, n) in &r.by_status_class {
            out.sample("gateway_requests_total", &[("route", route), ("status_class", class)], &n.to_string());
        }
    }
    let durations: [(&str, &str, HistogramOf); 3] = [
        ("gateway_request_duration_seconds", "Request latency, arrival to end of the response body.", |r| &r.latency_ms.histogram),
        ("gateway_overhead_duration_seconds", "Time the gateway spent before the upstream request went out.", |r| &r.gateway_overhead_ms.histogram),
        (
            "gateway_upstream_first_byte_seconds",
            "From the answering upstream request going out to its response headers (what a streamed answer's first token waits on).",
            |r| &r.upstream_first_byte_ms.histogram,
        ),
    ];
    for (name, help, of) in durations {
        out.family(name, "histogram", &format!("{help} In seconds."));
        for (route, r) in routes {
            out.histogram(name, route, of(r), 1000.0);
        }
    }
    let deprecated: [(&str, &str, HistogramOf); 2] = [
        (
            "gateway_request_duration_ms",
            "gateway_request_duration_seconds",
            |r| &r.latency_ms.histogram,
        ),
        (
            "gateway_overhead_duration_ms",
            "gateway_overhead_duration_seconds",
            |r| &r.gateway_overhead_ms.histogram,
        ),
    ];
    for (name, successor, of) in deprecated {
        out.family(
            name,
            "histogram",
            &format!("Deprecated: use {successor}; removed in the next release. In milliseconds."),
        );
        for (route, r) in routes {
            out.histogram(name, route, of(r), 1.0);
        }
    }
    out.family(
        "gateway_request_bytes_total",
        "counter",
        "Request body bytes per route.",
    );
    for (route, r) in routes {
        out.sample("gateway_request_bytes_total", &[("route", route)], &r.bytes_in.to_string());
    }
    out.family("gateway_response_bytes_total", "counter", "Response body bytes per route.");
    for (route, r) in routes {
        out.sample("gateway_response_bytes_total", &[("route", route)], &r.bytes_out.to_string());
    }
    out.family("gateway_route_llm_tokens_total", "counter", "LLM tokens reported by the upstream per route, by kind.");
    for (route, r) in routes {
        out.sample("gateway_route_llm_tokens_total", &[("route", route), ("kind", "prompt")], &r.prompt_tokens.to_string());
        out.sample("gateway_route_llm_tokens_total", &[("route", route), ("kind", "completion")], &r.completion_tokens.to_string());
    }
    out.family("gateway_endpoint_requests_total", "counter", "Requests sent to an endpoint, including failed connection attempts.");
    for (route, r) in routes {
        for (ep, e) in &r.endpoints {
            out.sample("gateway_endpoint_requests_total", &[("route", route), ("endpoint", ep)], &e.requests.to_string());
        }
    }
    out.family("gateway_endpoint_failures_total", "counter", "Attempts on an endpoint that failed to connect or got a 5xx.");
    for (route, r) in routes {
        for (ep, e) in &r.endpoints {
            out.sample("gateway_endpoint_failures_total", &[("route", route), ("endpoint", ep)], &e.failures.to_string());
        }
    }
    out.family("gateway_endpoint_up", "gauge", "1 when the endpoint's health probes pass, 0 when it is down; absent when unknown.");
    for (route, r) in routes {
        for (ep, e) in &r.endpoints {
            let v = match e.health {
                HealthState::Up => "1",
                HealthState::Down => "0",
                HealthState::Unknown => continue,
            };
            out.sample("gateway_endpoint_up", &[("route", route), ("endpoint", ep)], v);
        }
    }
    out.family("gateway_endpoint_uptime_ratio", "gauge", "Fraction of the window the endpoint was up, over the time its state was known.");
    for (route, r) in routes {
        for (ep, e) in &r.endpoints {
            for (window, v) in [("24h", e.uptime_24h), ("7d", e.uptime_7d)] {
                if let Some(v) = v {
                    out.sample("gateway_endpoint_uptime_ratio", &[("route", route), ("endpoint", ep), ("window", window)], &format_float(v));
                }
            }
        }
    }
    out.family(
        "gateway_endpoint_last_probe_timestamp_seconds",
        "gauge",
        "Unix time of the endpoint's latest health probe.",
    );
    for (route, r) in routes {
        for (ep, e) in &r.endpoints {
            if let Some(at) = e.last_probe_at {
                out.sample(
                    "gateway_endpoint_last_probe_timestamp_seconds",
                    &[("route", route), ("endpoint", ep)],
                    &at.to_string(),
                );
            }
        }
    }
    let readings: [(&str, &str, ReadingOf); 4] = [
        ("gateway_endpoint_requests_running", "Requests in the endpoint's running batch, as vLLM last reported.", |l| l.running),
        ("gateway_endpoint_requests_waiting", "Requests queued at the endpoint, as vLLM last reported.", |l| l.waiting),
        ("gateway_endpoint_kv_cache_usage_ratio", "Fraction of the endpoint's KV cache in use, as vLLM last reported.", |l| l.kv_cache_usage),
        ("gateway_endpoint_prefix_cache_hit_ratio", "The endpoint's prefix-cache hit rate since it started, as vLLM last reported.", |l| l.prefix_cache_hit_rate),
    ];
    for (name, help, of) in readings {
        out.family(name, "gauge", help);
        for (route, r) in routes {
            for (ep, e) in &r.endpoints {
                if let Some(v) = e.load.as_ref().and_then(of) {
                    out.sample(name, &[("route", route), ("endpoint", ep)], &format_float(v));
                }
            }
        }
    }
    out.family(
        "gateway_probe_last_round_timestamp_seconds",
        "gauge",
        "Unix time of the latest health probe of any endpoint; absent before the first. Alert when it falls behind.",
    );
    if let Some(at) = routes
        .values()
        .flat_map(|r| r.endpoints.values())
        .filter_map(|e| e.last_probe_at)
        .max()
    {
        out.sample(
            "gateway_probe_last_round_timestamp_seconds",
            &[],
            &at.to_string(),
        );
    }
    out.family(
        "gateway_tokens_expiring",
        "gauge",
        "Unrevoked gateway tokens that expire within the window, by kind.",
    );
    for kind in crate::token::TokenKind::ALL.map(crate::token::TokenKind::as_str) {
        let counts = s.tokens_expiring.get(kind).copied().unwrap_or_default();
        out.sample(
            "gateway_tokens_expiring",
            &[("kind", kind), ("within", "24h")],
            &counts.within_24h.to_string(),
        );
        out.sample(
            "gateway_tokens_expiring",
            &[("kind", kind), ("within", "7d")],
            &counts.within_7d.to_string(),
        );
    }
    out.family("gateway_partner_requests_total", "counter", "Requests per partner (partner tokens).");
    for (partner, p) in &s.partners {
        out.sample("gateway_partner_requests_total", &[("partner", partner)], &p.requests.to_string());
    }
    out.family("gateway_partner_llm_tokens_total", "counter", "LLM tokens reported by the upstream per partner, by kind.");
    for (partner, p) in &s.partners {
        out.sample(
            "gateway_partner_llm_tokens_total",
            &[("partner", partner), ("kind", "prompt")],
            &p.prompt_tokens.to_string(),
        );
        out.sample(
            "gateway_partner_llm_tokens_total",
            &[("partner", partner), ("kind", "completion")],
            &p.completion_tokens.to_string(),
        );
    }
    if per_token {
        render_per_token(&mut out, s);
    }
    out.0
}

/// The series per token, asked for with `?per_token=1`.
fn render_per_token(out: &mut Exposition, s: &Snapshot) {
    out.family(
        "gateway_token_requests_total",
        "counter",
        "Requests per token.",
    );
    for (token, t) in &s.tokens {
        out.sample(
            "gateway_token_requests_total",
            &[("token", token)],
            &t.requests.to_string(),
        );
    }
    out.family(
        "gateway_token_route_requests_total",
        "counter",
        "Requests per token and route.",
    );
    for (token, t) in &s.tokens {
        for (route, n) in &t.routes {
            out.sample(
                "gateway_token_route_requests_total",
                &[("token", token), ("route", route)],
                &n.to_string(),
            );
        }
    }
    for (name, help) in [
        ("gateway_token_last_seen_timestamp_seconds", "Unix time of the token's latest request."),
        ("gateway_token_last_seen_seconds", "Deprecated: use gateway_token_last_seen_timestamp_seconds; removed in the next release."),
    ] {
        out.family(name, "gauge", help);
        for (token, t) in &s.tokens {
            if let Some(at) = t.last_seen {
                out.sample(name, &[("token", token)], &at.to_string());
            }
        }
    }
    out.family(
        "gateway_llm_tokens_total",
        "counter",
        "LLM tokens reported by the upstream per token, by kind.",
    );
    for (token, t) in &s.tokens {
        out.sample("gateway_llm_tokens_total", &[("token", token), ("kind", "prompt")], &t.prompt_tokens.to_string());
        out.sample("gateway_llm_tokens_total", &[("token", token), ("kind", "completion")], &t.completion_tokens.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minute boundary: 1_750_000_020 = 29_166_667 × 60.
    const NOW: u64 = 1_750_000_020;
    const MINUTE: &str = "0029166667";

    fn sample(route: &str, status: u16, latency_ms: f64, at: u64) -> RequestSample {
        RequestSample { route: route.into(), status, latency_ms, at, ..RequestSample::default() }
    }

    fn store_of(samples: &[RequestSample]) -> BTreeMap<String, u64> {
        let mut store = BTreeMap::new();
        for s in samples {
            updates(s).apply_to(&mut store);
        }
        store
    }

    fn snapshot_of(store: &BTreeMap<String, u64>, health: &[(&str, &str, Health)], now: u64) -> Snapshot {
        snapshot(now, store.iter().map(|(k, v)| (k.as_str(), *v)), health.iter().map(|(r, e, h)| (*r, *e, h)))
    }

    // --- histogram ---

    #[test]
    fn bucket_bounds_are_inclusive_and_cover_every_value() {
        assert_eq!(BUCKETS, 20);
        assert_eq!(Histogram::bucket_index(0.0), 0);
        assert_eq!(Histogram::bucket_index(0.25), 0);
        assert_eq!(Histogram::bucket_index(0.2501), 1);
        assert_eq!(Histogram::bucket_index(1.0), 2);
        assert_eq!(Histogram::bucket_index(120.0), 9);
        assert_eq!(Histogram::bucket_index(300_000.0), 18);
        assert_eq!(Histogram::bucket_index(300_000.1), 19);
        assert_eq!(Histogram::bucket_index(f64::INFINITY), 19);
        assert_eq!(Histogram::bucket_index(-5.0), 0);
        assert_eq!(Histogram::bucket_index(f64::NAN), 0);
        assert!(BUCKET_BOUNDS_MS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn recording_counts_and_sums() {
        let mut h = Histogram::default();
        h.record(1.5);
        h.record(3.0);
        assert_eq!((h.count(), h.sum_us(), h.sum_ms()), (2, 4_500, 4.5));
        assert_eq!((h.counts()[3], h.counts()[4]), (1, 1));
        h.record(f64::NAN);
        h.record(-1.0);
        assert_eq!((h.count(), h.sum_us()), (4, 4_500), "odd values are counted, and add nothing to the sum");
        h.record(f64::INFINITY);
        assert_eq!(h.counts()[BUCKETS - 1], 1);
        assert_eq!(h.sum_us(), u64::MAX, "the sum saturates");
        assert!(!h.add(BUCKETS, 1), "no such bucket");
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..100 {
            h.record(150.0);
        }
        // All in (100, 250]: the estimate moves linearly through the bucket.
        assert_eq!(h.quantile(0.5), Some(175.0));
        assert_eq!(h.quantile(0.99), Some(248.5));
        assert_eq!(h.quantile(0.0), Some(100.0));
        assert_eq!(h.quantile(1.0), Some(250.0));
        for bad in [-0.1, 1.1, f64::NAN] {
            assert_eq!(h.quantile(bad), None);
        }
        let mut h = Histogram::default();
        h.record(0.1);
        assert_eq!(h.quantile(1.0), Some(0.25), "the first bucket starts at 0");
        let mut slow = Histogram::default();
        slow.record(400_000.0);
        assert_eq!(slow.quantile(0.5), Some(300_000.0), "above the last bound: a lower bound");
    }

    #[test]
    fn quantiles_of_a_mixed_distribution() {
        let mut h = Histogram::default();
        for _ in 0..90 {
            h.record(20.0); // (10, 25]
        }
        for _ in 0..10 {
            h.record(2_000.0); // (1000, 2500]
        }
        assert_eq!(h.quantile(0.5), Some(10.0 + 15.0 * 50.0 / 90.0));
        assert_eq!(h.quantile(0.95), Some(1_000.0 + 1_500.0 * 0.5));
    }

    /// Values spread over many decades, as latencies are.
    fn latency() -> impl Strategy<Value = f64> {
        (-4.0f64..19.5).prop_map(f64::exp2)
    }

    proptest! {
        // The documented error bound: the estimate lies in the bucket of the true (nearest-rank) quantile.
        #[test]
        fn quantile_error_is_within_the_true_values_bucket(mut values in prop::collection::vec(latency(), 1..300), q in 0.0f64..=1.0) {
            let mut h = Histogram::default();
            for v in &values {
                h.record(*v);
            }
            values.sort_by(f64::total_cmp);
            let rank = ((q * values.len() as f64).ceil() as usize).max(1);
            let truth = values[rank - 1];
            let est = h.quantile(q).unwrap();
            let i = Histogram::bucket_index(truth);
            let lower = if i == 0 { 0.0 } else { BUCKET_BOUNDS_MS[i - 1] };
            match BUCKET_BOUNDS_MS.get(i) {
                Some(&upper) => {
                    prop_assert!(lower <= est && est <= upper, "q={} truth={} est={}", q, truth, est);
                    prop_assert!((est - truth).abs() <= upper - lower);
                    prop_assert!(upper - lower <= upper * 2.0 / 3.0 || upper <= 0.5);
                }
                None => prop_assert_eq!(est, 300_000.0),
            }
        }

        // Merging is adding: the same as recording everything in one histogram, in any order.
        #[test]
        fn merge_equals_recording_everything(a in prop::collection::vec(latency(), 0..50), b in prop::collection::vec(latency(), 0..50)) {
            let hist = |vs: &[f64]| {
                let mut h = Histogram::default();
                vs.iter().for_each(|v| h.record(*v));
                h
            };
            let (ha, hb) = (hist(&a), hist(&b));
            let mut ab = ha.clone();
            ab.merge(&hb);
            let mut ba = hb.clone();
            ba.merge(&ha);
            let all: Vec<f64> = a.iter().chain(b.iter()).copied().collect();
            prop_assert_eq!(&ab, &hist(&all));
            prop_assert_eq!(&ab, &ba);
            // And the serialised form round-trips.
            let back: Histogram = serde_json::from_str(&serde_json::to_string(&ab).unwrap()).unwrap();
            prop_assert_eq!(back, ab);
        }
    }

    #[test]
    fn histograms_serialise_compactly() {
        let mut h = Histogram::default();
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"counts":[],"sum_us":0}"#);
        h.record(1.0);
        assert_eq!(serde_json::to_string(&h).unwrap(), r#"{"counts":[0,0,1],"sum_us":1000}"#);
        let back: Histogram = serde_json::from_str(r#"{"counts":[0,0,1]}"#).unwrap();
        assert_eq!(back.count(), 1);
        assert_eq!(back.sum_us(), 0);
        let too_many = format!(r#"{{"counts":{:?},"sum_us":0}}"#, vec![1u64; BUCKETS + 1]);
        assert!(serde_json::from_str::<Histogram>(&too_many).is_err());
        assert!(serde_json::from_str::<Histogram>(r#"{"counts":[-1]}"#).is_err());
        assert!(serde_json::from_str::<Histogram>(r#"[1,2]"#).is_err());
    }

    // --- keys and updates ---

    #[test]
    fn status_classes() {
        for (status, class) in [(100, "1xx"), (199, "1xx"), (200, "2xx"), (302, "3xx"), (404, "4xx"), (503, "5xx"), (599, "5xx"), (0, "other"), (99, "other"), (600, "other")] {
            assert_eq!(status_class(status), class, "{status}");
            assert!(STATUS_CLASSES.contains(&class));
        }
    }

    #[test]
    fn key_parts_keep_identifiers_and_escape_the_rest() {
        for id in ["llama-prod", "A.b_c-9", "tok_abcdefghijklmnopqrstuvwxyz234567", "abcdefghijklmnop"] {
            assert_eq!(key_part(id), id);
        }
        assert_eq!(key_part("a:b"), "a%3Ab");
        assert_eq!(key_part("%"), "%25");
        assert_eq!(key_part(""), "~");
        assert_eq!(key_part("~"), "%7E");
        assert_eq!(key_part("é"), "%C3%A9");
        assert_eq!(key_part(&"a".repeat(MAX_KEY_PART)), "a".repeat(MAX_KEY_PART), "kept whole up to the limit");
        let long = key_part(&"a".repeat(100));
        assert!(long.starts_with(&format!("{}~", "a".repeat(HASHED_PREFIX))) && long.len() == HASHED_PREFIX + 17, "{long}");
        // Cut on a character boundary: 40 two-byte characters keep 24.
        assert!(decode_part(&key_part(&"é".repeat(40))).unwrap().starts_with(&format!("{}~", "é".repeat(24))));
        for s in ["a:b", "%", "", "~", "é", "x y\"z\n"] {
            assert_eq!(decode_part(&key_part(s)).as_deref(), Some(s));
        }
        assert_eq!(decode_part("%FF"), None, "not UTF-8");
    }

    #[test]
    fn long_names_sharing_a_prefix_never_share_a_counter() {
        let shared = format!("oidc:corp:{}", "x".repeat(70));
        let (a, b) = (format!("{shared}{}", "a".repeat(20)), format!("{shared}{}", "b".repeat(20)));
        assert_eq!((a.len(), b.len(), a[..80] == b[..80]), (100, 100, true));
        assert_ne!(token_item(&a), token_item(&b));
        assert_ne!(partner_item(&a), partner_item(&b));
        assert_ne!(endpoint_item(&a, "e"), endpoint_item(&b, "e"));
        assert_eq!(token_item(&a), token_item(&a.clone()), "stable");
        let mut samples = Vec::new();
        for t in [&a, &b, &b] {
            let mut s = sample("llama", 200, 1.0, NOW);
            s.token_id = Some(t.to_string());
            samples.push(s);
        }
        let snap = snapshot_of(&store_of(&samples), &[], NOW);
        let mut counts: Vec<u64> = snap.tokens.values().map(|t| t.requests).collect();
        counts.sort();
        assert_eq!(counts, [1, 2], "two principals, two counters");
        // A value kept whole never reads as a hashed one, whatever it holds.
        let shown = decode_part(&key_part(&a)).unwrap();
        assert!(shown.len() > MAX_KEY_PART);
        assert_ne!(key_part(&shown), key_part(&a));
        assert_ne!(decode_part(&key_part(&shown[..MAX_KEY_PART])).unwrap(), shown);
    }

    #[test]
    fn partner_usage_is_counted_under_the_partner_too() {
        let s = RequestSample {
            route: "llama".into(),
            status: 200,
            token_id: Some("tok_p".into()),
            partner: Some("acme".into()),
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            at: NOW,
            ..RequestSample::default()
        };
        let mut store = BTreeMap::new();
        updates(&s).apply_to(&mut store);
        updates(&s).apply_to(&mut store);
        let snap = snapshot(NOW, store.iter().map(|(k, v)| (k.as_str(), *v)), std::iter::empty());
        for key in store.keys() {
            assert!(split_key(key).is_some(), "every key has an item and a field: {key}");
        }
        let p = &snap.partners["acme"];
        assert_eq!((p.requests, p.routes["llama"], p.prompt_tokens, p.completion_tokens, p.last_seen), (2, 2, 6, 8, Some(NOW)));
        assert_eq!(snap.tokens["tok_p"].requests, 2);
        let text = render_prometheus(&snap, true);
        let scrape = parse_with_prometheus_parse(&text);
        assert!(matches!(find(&scrape, "gateway_partner_requests_total", &[("partner", "acme")]), prometheus_parse::Value::Counter(n) if *n == 2.0));
    }

    #[test]
    fn a_sample_makes_the_documented_updates() {
        let s = RequestSample {
            route: "llama".into(),
            endpoint: Some("a".into()),
            failed_endpoints: vec!["b".into()],
            status: 200,
            latency_ms: 120.0,
            gateway_ms: Some(0.8),
            first_byte_ms: Some(40.0),
            request_bytes: 300,
            response_bytes: 1_200,
            token_id: Some("tok_abc".into()),
            partner: None,
            prompt_tokens: Some(5),
            completion_tokens: Some(7),
            at: NOW,
            budget_keys: Vec::new(),
        };
        let u = updates(&s);
        let m = format!("m:{MINUTE}:route:llama");
        let mut want: Vec<(String, u64)> = vec![
            ("route:llama:req".into(), 1),
            ("route:llama:status:2xx".into(), 1),
            ("route:llama:lat:9".into(), 1),
            ("route:llama:lat:sum_us".into(), 120_000),
            ("route:llama:gw:2".into(), 1),
            ("route:llama:gw:sum_us".into(), 800),
            ("route:llama:fb:7".into(), 1),
            ("route:llama:fb:sum_us".into(), 40_000),
            ("route:llama:bytes_in".into(), 300),
            ("route:llama:bytes_out".into(), 1_200),
            ("route:llama:prompt".into(), 5),
            ("route:llama:completion".into(), 7),
            (format!("{m}:req"), 1),
            (format!("{m}:status:2xx"), 1),
            (format!("{m}:lat:9"), 1),
            ("ep:llama:a:req".into(), 1),
            ("ep:llama:b:req".into(), 1),
            ("ep:llama:b:fail".into(), 1),
            ("tok:tok_abc:req".into(), 1),
            ("tok:tok_abc:route:llama".into(), 1),
            ("tok:tok_abc:prompt".into(), 5),
            ("tok:tok_abc:completion".into(), 7),
        ];
        want.sort();
        assert_eq!(u.adds.into_iter().collect::<Vec<_>>(), want);
        assert_eq!(u.maxes.into_iter().collect::<Vec<_>>(), vec![("tok:tok_abc:last_seen".to_string(), NOW)]);
    }

    #[test]
    fn nothing_is_written_for_zero_or_absent_values() {
        let u = updates(&sample("llama", 503, 0.0, NOW));
        let keys: Vec<&str> = u.adds.keys().map(String::as_str).collect();
        let m = format!("m:{MINUTE}:route:llama");
        let mut want = vec![
            "route:llama:req".to_string(),
            "route:llama:status:5xx".into(),
            "route:llama:lat:0".into(),
            format!("{m}:req"),
            format!("{m}:status:5xx"),
            format!("{m}:lat:0"),
        ];
        want.sort();
        assert_eq!(keys, want);
        assert!(u.maxes.is_empty());
        assert!(u.adds.values().all(|&d| d > 0));
    }

    #[test]
    fn connection_failures_and_5xx_count_against_endpoints() {
        let mut s = sample("llama", 502, 10.0, NOW);
        s.failed_endpoints = vec!["a".into(), "b".into()];
        let store = store_of(&[s.clone()]);
        assert_eq!((store["ep:llama:a:req"], store["ep:llama:a:fail"]), (1, 1));
        assert_eq!((store["ep:llama:b:req"], store["ep:llama:b:fail"]), (1, 1));
        s.failed_endpoints.clear();
        s.endpoint = Some("c".into());
        let store = store_of(&[s.clone(), RequestSample { status: 200, ..s.clone() }, RequestSample { status: 504, ..s.clone() }]);
        assert_eq!((store["ep:llama:c:req"], store["ep:llama:c:fail"]), (3, 2));
        // A runaway list is bounded.
        s.failed_endpoints = (0..1000).map(|i| format!("e{i}")).collect();
        let u = updates(&s);
        assert_eq!(u.adds.keys().filter(|k| k.ends_with(":fail")).count(), MAX_FAILED_ENDPOINTS + 1);
    }

    #[test]
    fn updates_merge_and_commute() {
        let mut a = sample("llama", 200, 5.0, NOW);
        a.token_id = Some("tok_a".into());
        let b = RequestSample { at: NOW + 30, status: 500, ..a.clone() };
        let (ua, ub) = (updates(&a), updates(&b));
        let mut merged = ub.clone();
        merged.merge(ua.clone());
        let mut one_by_one = BTreeMap::new();
        ua.apply_to(&mut one_by_one);
        ub.apply_to(&mut one_by_one);
        let mut reversed = BTreeMap::new();
        ub.apply_to(&mut reversed);
        ua.apply_to(&mut reversed);
        let mut batched = BTreeMap::new();
        merged.apply_to(&mut batched);
        assert_eq!(one_by_one, reversed);
        assert_eq!(one_by_one, batched);
        assert_eq!(batched["tok:tok_a:last_seen"], NOW + 30, "last seen is a max, not a sum");
        assert_eq!(batched["tok:tok_a:req"], 2);
        assert!(!merged.is_empty());
        assert_eq!(merged.len(), merged.adds.len() + 1);
        assert!(Updates::default().is_empty());
    }

    #[test]
    fn keys_split_into_item_and_field() {
        let cases = [
            ("route:llama:req", "route:llama", "req"),
            ("route:llama:lat:sum_us", "route:llama", "lat:sum_us"),
            ("m:0029166667:route:llama:status:2xx", "m:0029166667:route:llama", "status:2xx"),
            ("ep:llama:a.b:fail", "ep:llama:a.b", "fail"),
            ("tok:tok_x:route:llama", "tok:tok_x", "route:llama"),
            ("tok:tok_x:last_seen", "tok:tok_x", "last_seen"),
        ];
        for (key, item, field) in cases {
            assert_eq!(split_key(key), Some((item, field)), "{key}");
        }
        for bad in ["", "route", "route:llama", "x:y:z", "m:1:route"] {
            assert_eq!(split_key(bad), None, "{bad}");
        }
        // Every key a sample makes splits, on its item builder's boundary.
        let mut s = sample("llama", 200, 5.0, NOW);
        s.endpoint = Some("a".into());
        s.token_id = Some("tok_a".into());
        let u = updates(&s);
        for key in u.adds.keys().chain(u.maxes.keys()) {
            let (item, _) = split_key(key).unwrap();
            assert!([route_item("llama"), minute_item(minute_of(NOW), "llama"), endpoint_item("llama", "a"), token_item("tok_a")].contains(&item.to_string()), "{key}");
        }
    }

    #[test]
    fn minute_buckets_expire_and_sort_by_time() {
        let key = |m: u64| format!("{}:req", minute_item(m, "llama"));
        let now_m = minute_of(NOW);
        assert_eq!(expires_at(&key(now_m)), Some((now_m + 1) * 60 + RETENTION_SECS));
        assert_eq!(expires_at("route:llama:req"), None);
        assert_eq!(expires_at("m:zz:route:llama:req"), None);
        let (start, end) = recent_range(NOW);
        let inside = |k: &str| start.as_str() <= k && k < end.as_str();
        assert!(inside(&key(now_m)) && inside(&key(now_m - 59)));
        assert!(!inside(&key(now_m - 60)) && !inside(&key(now_m + 1)));
        assert!(!inside("route:llama:req") && !inside("tok:t:req") && !inside("ep:r:e:req"));
        let later = NOW + RETENTION_SECS + 120;
        let (start, end) = expired_range(later);
        let gone = |k: &str| start.as_str() <= k && k < end.as_str();
        assert!(gone(&key(now_m)));
        assert!(expires_at(&key(now_m)).unwrap() <= later);
        assert!(!gone(&key(minute_of(later) - 10)));
        assert!(!gone("route:llama:req") && !gone("tok:t:req"));
    }

    proptest! {
        // Whatever the names, every key parses back to the (cut) names, and no part spills into another.
        #[test]
        fn keys_round_trip_any_name(route in "\\PC{0,80}", endpoint in "[:%~a-z\\PC]{0,70}", token in "\\PC{0,70}", status in 0u16..1000) {
            let cut = |s: &str| decode_part(&key_part(s)).unwrap();
            let mut s = sample(&route, status, 42.0, NOW);
            s.endpoint = Some(endpoint.clone());
            s.token_id = Some(token.clone());
            let u = updates(&s);
            for key in u.adds.keys().chain(u.maxes.keys()) {
                prop_assert!(split_key(key).is_some(), "{}", key);
                prop_assert!(parse_key(key).is_some(), "{}", key);
            }
            let store = store_of(&[s]);
            let snap = snapshot_of(&store, &[], NOW);
            prop_assert_eq!(snap.routes.keys().cloned().collect::<Vec<_>>(), vec![cut(&route)]);
            let r = &snap.routes[&cut(&route)];
            prop_assert_eq!(r.requests_total, 1);
            prop_assert_eq!(r.requests_last_hour, 1);
            prop_assert_eq!(r.endpoints.keys().cloned().collect::<Vec<_>>(), vec![cut(&endpoint)]);
            let t = &snap.tokens[&cut(&token)];
            prop_assert_eq!(t.routes.get(&cut(&route)).copied(), Some(1));
            prop_assert_eq!(t.last_seen, Some(NOW));
        }
    }

    // --- snapshot ---

    fn traffic() -> Vec<RequestSample> {
        let tok = |mut s: RequestSample, t: &str| {
            s.token_id = Some(t.into());
            s
        };
        let mut ok = sample("llama", 200, 80.0, NOW - 10);
        ok.endpoint = Some("a".into());
        ok.gateway_ms = Some(0.4);
        ok.request_bytes = 100;
        ok.response_bytes = 1_000;
        ok.prompt_tokens = Some(5);
        ok.completion_tokens = Some(7);
        let mut failed = sample("llama", 502, 3_000.0, NOW - 5);
        failed.failed_endpoints = vec!["b".into()];
        let mut err = sample("llama", 500, 40.0, NOW);
        err.endpoint = Some("b".into());
        vec![
            tok(ok.clone(), "tok_a"),
            tok(RequestSample { at: NOW - 70, latency_ms: 120.0, ..ok.clone() }, "tok_a"),
            tok(failed, "tok_b"),
            err,
            // Two hours ago: in the totals, not in the last hour.
            tok(RequestSample { at: NOW - 7_200, status: 404, ..ok.clone() }, "tok_a"),
            tok(sample("mistral", 200, 10.0, NOW - 300), "tok_a"),
        ]
    }

    #[test]
    fn snapshot_from_stored_counters() {
        let samples = traffic();
        let store = store_of(&samples);
        let mut a = Health::default();
        a.observe(NOW - 60, true);
        let snap = snapshot_of(&store, &[("llama", "a", a)], NOW);

        let llama = &snap.routes["llama"];
        assert_eq!(llama.requests_total, 5);
        assert_eq!(llama.requests_last_hour, 4);
        let classes: Vec<(&str, u64)> = llama.by_status_class.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(classes, vec![("2xx", 2), ("4xx", 1), ("5xx", 2)]);
        assert_eq!((llama.bytes_in, llama.bytes_out), (300, 3_000));
        assert_eq!((llama.prompt_tokens, llama.completion_tokens), (15, 21));

        // Percentiles come from the merged histogram of everything recorded.
        let mut h = Histogram::default();
        samples.iter().filter(|s| s.route == "llama").for_each(|s| h.record(s.latency_ms));
        assert_eq!(llama.latency_ms.histogram, h);
        assert_eq!(llama.latency_ms.p50, h.quantile(0.5).map(|v| (v * 1000.0).round() / 1000.0));
        assert!(llama.latency_ms.p99 >= llama.latency_ms.p95 && llama.latency_ms.p95 >= llama.latency_ms.p50);
        assert_eq!(llama.latency_ms_last_hour.histogram.count(), 4);
        assert_eq!(llama.gateway_overhead_ms.histogram.count(), 3);
        assert_eq!(llama.gateway_overhead_ms.p50, Some(0.375));

        // One point per minute of the last hour, oldest first, ending with the current minute.
        assert_eq!(llama.series.len(), 60);
        assert_eq!(llama.series[59].at, NOW);
        assert_eq!(llama.series[0].at, NOW - 59 * 60);
        assert!(llama.series.windows(2).all(|w| w[1].at == w[0].at + 60));
        assert_eq!(llama.series.iter().map(|p| p.requests).sum::<u64>(), llama.requests_last_hour);
        assert_eq!((llama.series[59].requests, llama.series[59].errors), (1, 1));
        assert_eq!((llama.series[58].requests, llama.series[58].errors), (2, 1), "NOW-10 and NOW-5 fall in the minute before");
        assert_eq!(llama.series[57].requests, 1);
        assert_eq!(snap.routes["mistral"].series[54].requests, 1);

        let ep_a = &llama.endpoints["a"];
        assert_eq!((ep_a.requests, ep_a.failures, ep_a.health), (3, 0, HealthState::Up));
        assert_eq!((ep_a.uptime_24h, ep_a.uptime_7d, ep_a.last_probe_at), (Some(1.0), Some(1.0), Some(NOW - 60)));
        let ep_b = &llama.endpoints["b"];
        assert_eq!((ep_b.requests, ep_b.failures, ep_b.health, ep_b.uptime_24h), (2, 2, HealthState::Unknown, None));

        let ta = &snap.tokens["tok_a"];
        assert_eq!(ta.requests, 4);
        assert_eq!(ta.routes.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(), vec![("llama", 3), ("mistral", 1)]);
        assert_eq!(ta.last_seen, Some(NOW - 10), "the latest, not the last applied");
        assert_eq!((ta.prompt_tokens, ta.completion_tokens), (15, 21));
        assert_eq!(snap.tokens["tok_b"].requests, 1);
        assert_eq!(snap.tokens.len(), 2);
    }

    #[test]
    fn foreign_malformed_and_out_of_window_keys_are_ignored() {
        let mut b = SnapshotBuilder::new(NOW);
        let old = format!("{}:req", minute_item(minute_of(NOW) - 60, "x"));
        let future = format!("{}:req", minute_item(minute_of(NOW) + 1, "x"));
        for key in [
            "", "foo", "route", "route:x", "route:x:unknown", "route:x:lat:20", "route:x:lat:-1", "route:x:status:6xx",
            "route:x:req:extra", "m:abc:route:x:req", "m:+29166667:route:x:req", &old, &future, "ep:x:y", "ep:x:y:z",
            "tok:t:route", "tok:t:bogus", "route:%FF:req", "health:x:y",
        ] {
            assert!(!b.counter(key, 7), "{key}");
        }
        let snap = b.build();
        assert!(snap.routes.is_empty() && snap.tokens.is_empty());
        // Saturation instead of overflow.
        let snap = snapshot(NOW, [("route:x:req", u64::MAX), ("route:x:req", 5)], []);
        assert_eq!(snap.routes["x"].requests_total, u64::MAX);
    }

    #[test]
    fn snapshot_json_shape() {
        let store = store_of(&traffic());
        let mut a = Health::default();
        a.observe(NOW - 60, true);
        let snap = snapshot_of(&store, &[("llama", "a", a), ("idle", "z", Health::default())], NOW);
        let v = serde_json::to_value(&snap).unwrap();
        assert_eq!(v["generated_at"], NOW);
        assert_eq!(v["histogram_bounds_ms"].as_array().unwrap().len(), BUCKETS - 1);
        let llama = &v["routes"]["llama"];
        assert_eq!(llama["requests_total"], 5);
        assert_eq!(llama["by_status_class"]["5xx"], 2);
        assert!(llama["latency_ms"]["p50"].is_f64());
        assert!(llama["latency_ms"]["histogram"]["counts"].is_array());
        assert!(llama["gateway_overhead_ms"]["p99"].is_f64());
        assert_eq!(llama["series"].as_array().unwrap().len(), 60);
        assert_eq!(llama["series"][59], serde_json::json!({"at": NOW, "requests": 1, "errors": 1}));
        assert_eq!(llama["endpoints"]["a"]["health"], "up");
        assert_eq!(llama["endpoints"]["a"]["uptime_24h"], 1.0);
        // A route known only from health has endpoints and empty numbers; nulls where nothing is known.
        let idle = &v["routes"]["idle"];
        assert_eq!(idle["endpoints"]["z"]["health"], "unknown");
        assert!(idle["endpoints"]["z"]["uptime_7d"].is_null());
        assert!(idle["latency_ms"]["p50"].is_null());
        assert_eq!(v["tokens"]["tok_a"]["last_seen"], NOW - 10);
        assert_eq!(v["tokens"]["tok_a"]["routes"]["mistral"], 1);
        let back: Snapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back, snap);
    }

    // --- health ---

    #[test]
    fn down_after_two_failures_up_after_one_success() {
        let mut h = Health::default();
        assert_eq!(h.state(0), HealthState::Unknown);
        assert_eq!(h.observe(100, false), None);
        assert_eq!(h.state(100), HealthState::Unknown, "one failure decides nothing");
        assert_eq!(h.observe(130, false), Some(Transition { at: 130, up: false }));
        assert!(h.is_down(130));
        assert_eq!(h.observe(160, false), None);
        assert_eq!(h.observe(190, true), Some(Transition { at: 190, up: true }));
        assert_eq!(h.observe(220, false), None);
        assert_eq!(h.state(220), HealthState::Up, "a single lost probe keeps it up");
        assert_eq!(h.observe(250, true), None);
        assert_eq!(h.observe(280, false), None, "the success reset the count");
        assert_eq!(h.observe(310, false), Some(Transition { at: 310, up: false }));
        assert_eq!(h.transitions().len(), 3);
        let mut fresh = Health::default();
        assert_eq!(fresh.observe(5, true), Some(Transition { at: 5, up: true }));
    }

    #[test]
    fn stale_and_out_of_order_probes() {
        let mut h = Health::default();
        h.observe(200, true);
        assert_eq!(h.observe(100, false), None);
        assert_eq!(h.observe(150, false), None, "older than the latest: ignored, not counted");
        assert_eq!(h.last_probe_at(), Some(200));
        assert_eq!(h.observe(210, false), None, "only one failure since the success at 200");
        assert_eq!(h.state(200 + HEALTH_STALE_SECS), HealthState::Up);
        let mut down = Health::default();
        down.observe(100, false);
        down.observe(110, false);
        assert!(down.is_down(110 + HEALTH_STALE_SECS));
        assert!(!down.is_down(111 + HEALTH_STALE_SECS), "no probe for too long: unknown, not down");
        assert_eq!(down.state(111 + HEALTH_STALE_SECS), HealthState::Unknown);
        let json = serde_json::to_string(&down).unwrap();
        assert_eq!(serde_json::from_str::<Health>(&json).unwrap(), down);
        assert_eq!(serde_json::from_str::<Health>("{}").unwrap(), Health::default());
    }

    #[test]
    fn old_transitions_are_pruned_but_the_state_at_the_window_start_is_kept() {
        let day = 24 * 3600;
        let mut h = Health::default();
        h.observe(0, true);
        h.observe(10, false);
        h.observe(20, false); // down at 20
        h.observe(30, true); // up at 30
        let probe = 8 * day;
        h.observe(probe, true);
        assert_eq!(h.transitions(), &[Transition { at: 30, up: true }]);
        assert_eq!(h.uptime(probe - 7 * day, probe), Some(1.0));
        // Flapping is bounded.
        let mut f = Health::default();
        for i in 0..(3 * MAX_TRANSITIONS as u64 + 30) {
            f.observe(i, i % 3 == 0);
        }
        assert_eq!(f.transitions().len(), MAX_TRANSITIONS);
        assert!(f.transitions().windows(2).all(|w| w[0].at < w[1].at && w[0].up != w[1].up));
    }

    #[test]
    fn uptime_is_the_up_share_of_known_time() {
        let t = [Transition { at: 100, up: true }, Transition { at: 200, up: false }, Transition { at: 300, up: true }];
        assert_eq!(uptime(&t, 0, 400), Some(200.0 / 300.0), "0..100 is unknown and left out");
        assert_eq!(uptime(&t, 150, 250), Some(0.5));
        assert_eq!(uptime(&t, 200, 300), Some(0.0));
        assert_eq!(uptime(&t, 0, 100), None);
        assert_eq!(uptime(&t, 300, 300), None);
        assert_eq!(uptime(&t, 400, 300), None);
        assert_eq!(uptime(&[], 0, 1_000), None);
        // Out of order input gives some answer in range, never a panic.
        let shuffled = [t[2], t[0], t[1]];
        assert!(uptime(&shuffled, 0, 400).is_none_or(|u| (0.0..=1.0).contains(&u)));

        let mut h = Health::default();
        h.observe(100, true);
        h.observe(200, false);
        h.observe(300, false);
        // Known from 100 until the state goes stale 600 s after the last probe.
        assert_eq!(h.uptime(0, 10_000), Some(200.0 / 800.0));
        assert_eq!(Health::default().uptime(0, 10_000), None);
    }

    proptest! {
        // Uptime is a fraction, and known time splits: the parts' up time adds up to the whole's.
        #[test]
        fn uptime_is_additive(probes in prop::collection::vec(any::<bool>(), 1..60), split in 0u64..2_000) {
            let mut h = Health::default();
            for (i, ok) in probes.iter().enumerate() {
                h.observe(i as u64 * 30, *ok);
            }
            let t = h.transitions();
            let (from, to) = (0u64, 2_000u64);
            let known = |a: u64, b: u64| -> f64 {
                let first = t.first().map_or(b, |f| f.at.max(a));
                b.saturating_sub(first).min(b.saturating_sub(a)) as f64
            };
            if let Some(u) = uptime(t, from, to) {
                prop_assert!((0.0..=1.0).contains(&u));
                let parts = uptime(t, from, split).unwrap_or(0.0) * known(from, split) + uptime(t, split, to).unwrap_or(0.0) * known(split, to);
                prop_assert!((parts - u * known(from, to)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn down_endpoints_are_left_out_unless_all_are_down() {
        let ep = |id: &str, lease: Option<u64>| Endpoint { id: id.into(), url: "http://10.0.0.1:8000".into(), weight: 1, via: None, lease_expires_at: lease, registered_by: None };
        let all = vec![ep("a", None), ep("b", None), ep("c", Some(NOW + 60)), ep("gone", Some(NOW - 1))];
        let ids = |v: Vec<Endpoint>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(exclude_down(&all, NOW, |id| id == "b")), vec!["a", "c"]);
        assert_eq!(ids(exclude_down(&all, NOW, |_| false)), vec!["a", "b", "c"]);
        assert_eq!(ids(exclude_down(&all, NOW, |_| true)), vec!["a", "b", "c"], "all down: all tried");
        assert_eq!(ids(exclude_down(&all, NOW, |id| id != "gone")), vec!["a", "b", "c"], "an expired lease is no way out");
        assert!(exclude_down(&[], NOW, |_| false).is_empty());
        assert_eq!(health_key("llama", "a.b"), "health:llama:a.b");
        assert_eq!(parse_health_key(&health_key("we:ird", "")), Some(("we:ird".into(), "".into())));
        assert_eq!(parse_health_key("route:llama:req"), None);
        assert_eq!(parse_health_key("health:a:b:c"), None);
        assert!(!SnapshotBuilder::new(NOW).counter(&health_key("llama", "a"), 1));
        assert!(probe_ok(Some(200)) && probe_ok(Some(204)));
        assert!(!probe_ok(Some(503)) && !probe_ok(Some(302)) && !probe_ok(None));
    }

    // --- Prometheus ---

    /// A strict reading of the text format: HELP and TYPE before a family's
    /// samples, families contiguous, label values unescaped, no duplicate series.
    fn strict_parse(text: &str) -> Vec<(String, Vec<(String, String)>, String)> {
        assert!(text.ends_with('\n'));
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut helped = std::collections::BTreeSet::new();
        let mut done = std::collections::BTreeSet::new();
        let mut current: Option<String> = None;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = vec![];
        let valid_name = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') && !n.starts_with(|c: char| c.is_ascii_digit());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(valid_name(name) && helped.insert(name.to_string()), "{line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "HELP before TYPE: {line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "{line}");
                if let Some(prev) = current.replace(name.to_string()) {
                    done.insert(prev);
                }
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let family = match types.get(name) {
                Some(_) => name.to_string(),
                None => {
                    let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or_else(|| panic!("untyped {line}"));
                    assert_eq!(types[base], "histogram", "{line}");
                    base.to_string()
                }
            };
            assert_eq!(current.as_deref(), Some(family.as_str()), "families are contiguous: {line}");
            assert!(!done.contains(&family));
            let mut rest = &line[name_end..];
            let mut labels = vec![];
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices();
                loop {
                    let (start, c) = chars.next().unwrap();
                    if c == '}' {
                        rest = &r[start + 1..];
                        break;
                    }
                    let eq = r[start..].find('=').unwrap() + start;
                    let key = r[start..eq].to_string();
                    assert!(valid_name(&key), "{line}");
                    while chars.next().unwrap().0 < eq {}
                    assert_eq!(chars.next().unwrap().1, '"', "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().unwrap().1 {
                            '\\' => match chars.next().unwrap().1 {
                                '\\' => value.push('\\'),
                                '"' => value.push('"'),
                                'n' => value.push('\n'),
                                other => panic!("bad escape \\{other} in {line}"),
                            },
                            '"' => break,
                            '\n' => panic!("raw newline"),
                            c => value.push(c),
                        }
                    }
                    labels.push((key, value));
                    match chars.clone().next().unwrap().1 {
                        ',' => {
                            chars.next();
                        }
                        '}' => {}
                        other => panic!("unexpected {other} in {line}"),
                    }
                }
            }
            let value = rest.strip_prefix(' ').unwrap();
            assert!(value == "+Inf" || value == "-Inf" || value == "NaN" || value.parse::<f64>().is_ok(), "{line}");
            assert!(seen.insert(format!("{name}{labels:?}")), "duplicate series {line}");
            out.push((name.to_string(), labels, value.to_string()));
        }
        out
    }

    fn parse_with_prometheus_parse(text: &str) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
    }

    fn find<'a>(scrape: &'a prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> &'a prometheus_parse::Value {
        let hits: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert_eq!(hits.len(), 1, "{metric} {labels:?}");
        &hits[0].value
    }

    #[test]
    fn prometheus_exposition_parses_with_the_values() {
        use prometheus_parse::Value;
        let store = store_of(&traffic());
        let mut a = Health::default();
        a.observe(NOW - 600, true);
        let mut b = Health::default();
        b.observe(NOW - 60, false);
        b.observe(NOW - 30, false);
        let snap = snapshot_of(&store, &[("llama", "a", a), ("llama", "b", b)], NOW);
        let text = render_prometheus(&snap, true);
        strict_parse(&text);
        let scrape = parse_with_prometheus_parse(&text);

        assert_eq!(find(&scrape, "gateway_requests_total", &[("route", "llama"), ("status_class", "2xx")]), &Value::Counter(2.0));
        assert_eq!(find(&scrape, "gateway_requests_total", &[("route", "llama"), ("status_class", "5xx")]), &Value::Counter(2.0));
        assert_eq!(find(&scrape, "gateway_requests_total", &[("route", "mistral"), ("status_class", "2xx")]), &Value::Counter(1.0));

        let Value::Histogram(buckets) = find(&scrape, "gateway_request_duration_ms", &[("route", "llama")]) else { panic!("not a histogram") };
        assert_eq!(buckets.len(), BUCKETS);
        assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than && w[0].count <= w[1].count), "cumulative");
        assert_eq!(buckets[BUCKETS - 1].less_than, f64::INFINITY);
        assert_eq!(buckets[BUCKETS - 1].count, 5.0);
        let le_100 = buckets.iter().find(|b| b.less_than == 100.0).unwrap();
        assert_eq!(le_100.count, 3.0, "40 ms and 80 ms twice");
        assert_eq!(find(&scrape, "gateway_request_duration_ms_count", &[("route", "llama")]), &Value::Untyped(5.0));
        assert_eq!(find(&scrape, "gateway_request_duration_ms_sum", &[("route", "llama")]), &Value::Untyped(80.0 * 2.0 + 120.0 + 3_000.0 + 40.0));
        let Value::Histogram(gw) = find(&scrape, "gateway_overhead_duration_ms", &[("route", "llama")]) else { panic!() };
        assert_eq!(gw.last().unwrap().count, 3.0);
        assert_eq!(find(&scrape, "gateway_overhead_duration_ms_sum", &[("route", "llama")]), &Value::Untyped(1.2));

        assert_eq!(find(&scrape, "gateway_request_bytes_total", &[("route", "llama")]), &Value::Counter(300.0));
        assert_eq!(find(&scrape, "gateway_response_bytes_total", &[("route", "llama")]), &Value::Counter(3_000.0));
        assert_eq!(find(&scrape, "gateway_route_llm_tokens_total", &[("route", "llama"), ("kind", "completion")]), &Value::Counter(21.0));
        assert_eq!(find(&scrape, "gateway_endpoint_requests_total", &[("route", "llama"), ("endpoint", "b")]), &Value::Counter(2.0));
        assert_eq!(find(&scrape, "gateway_endpoint_failures_total", &[("route", "llama"), ("endpoint", "b")]), &Value::Counter(2.0));
        assert_eq!(find(&scrape, "gateway_endpoint_up", &[("route", "llama"), ("endpoint", "a")]), &Value::Gauge(1.0));
        assert_eq!(find(&scrape, "gateway_endpoint_up", &[("route", "llama"), ("endpoint", "b")]), &Value::Gauge(0.0));
        assert_eq!(find(&scrape, "gateway_endpoint_uptime_ratio", &[("route", "llama"), ("endpoint", "a"), ("window", "24h")]), &Value::Gauge(1.0));
        assert_eq!(find(&scrape, "gateway_endpoint_uptime_ratio", &[("route", "llama"), ("endpoint", "b"), ("window", "7d")]), &Value::Gauge(0.0));
        assert_eq!(find(&scrape, "gateway_token_requests_total", &[("token", "tok_a")]), &Value::Counter(4.0));
        assert_eq!(find(&scrape, "gateway_token_route_requests_total", &[("token", "tok_a"), ("route", "mistral")]), &Value::Counter(1.0));
        assert_eq!(find(&scrape, "gateway_token_last_seen_seconds", &[("token", "tok_a")]), &Value::Gauge((NOW - 10) as f64));
        assert_eq!(find(&scrape, "gateway_llm_tokens_total", &[("token", "tok_a"), ("kind", "prompt")]), &Value::Counter(15.0));
        assert_eq!(find(&scrape, "gateway_llm_tokens_total", &[("token", "tok_b"), ("kind", "completion")]), &Value::Counter(0.0));
        for family in ["gateway_requests_total", "gateway_request_duration_ms", "gateway_endpoint_up", "gateway_llm_tokens_total"] {
            assert!(scrape.docs.contains_key(family), "{family}");
        }
        assert!(text.contains("gateway_request_duration_ms_bucket{route=\"llama\",le=\"0.25\"} 0\n"));
        assert!(text.contains("gateway_request_duration_ms_bucket{route=\"llama\",le=\"300000\"} 5\n"));
        assert!(text.contains("gateway_request_duration_ms_bucket{route=\"llama\",le=\"+Inf\"} 5\n"));
    }

    #[test]
    fn unknown_health_is_left_out_of_the_exposition() {
        let snap = snapshot_of(
            &store_of(&traffic()),
            &[("llama", "a", Health::default())],
            NOW,
        );
        let text = render_prometheus(&snap, true);
        assert!(!text.contains("gateway_endpoint_up{"));
        assert!(!text.contains("gateway_endpoint_uptime_ratio{"));
        // An empty snapshot is still a valid exposition: families with no samples, but for
        // the expiring tokens' zeros (an alert on them needs the series to exist).
        let empty = render_prometheus(&SnapshotBuilder::new(NOW).build(), true);
        let samples = strict_parse(&empty);
        assert_eq!(samples.len(), 8);
        assert!(samples
            .iter()
            .all(|(name, _, v)| name == "gateway_tokens_expiring" && v == "0"));
        assert_eq!(parse_with_prometheus_parse(&empty).samples.len(), 8);
    }

    #[test]
    fn prometheus_names_follow_the_conventions() {
        use prometheus_parse::Value;
        let mut traffic = traffic();
        for (s, fb) in traffic.iter_mut().zip([30.0, 30.0, 700.0, 0.4, 12.0]) {
            s.first_byte_ms = Some(fb);
        }
        let store = store_of(&traffic);
        let mut a = Health::default();
        a.observe(NOW - 600, true);
        a.observe(NOW - 45, true);
        let mut b = Health::default();
        b.observe(NOW - 90, true);
        let snap = snapshot_of(&store, &[("llama", "a", a), ("mistral", "b", b)], NOW);
        let text = render_prometheus(&snap, false);
        let scrape = parse_with_prometheus_parse(&text);

        // Durations in seconds, with the same buckets as the deprecated milliseconds.
        let Value::Histogram(secs) = find(
            &scrape,
            "gateway_request_duration_seconds",
            &[("route", "llama")],
        ) else {
            panic!("not a histogram")
        };
        let Value::Histogram(ms) = find(
            &scrape,
            "gateway_request_duration_ms",
            &[("route", "llama")],
        ) else {
            panic!("not a histogram")
        };
        assert_eq!(secs.len(), ms.len());
        for (s, m) in secs.iter().zip(ms) {
            assert_eq!(s.count, m.count);
            assert!(
                s.less_than == m.less_than / 1000.0 || s.less_than.is_infinite(),
                "{} vs {}",
                s.less_than,
                m.less_than
            );
        }
        assert!(
            text.contains(
                "gateway_request_duration_seconds_bucket{route=\"llama\",le=\"0.00025\"} 0\n"
            ),
            "{text}"
        );
        assert!(text
            .contains("gateway_request_duration_seconds_bucket{route=\"llama\",le=\"300\"} 5\n"));
        assert_eq!(
            find(
                &scrape,
                "gateway_request_duration_seconds_sum",
                &[("route", "llama")]
            ),
            &Value::Untyped(3.32)
        );
        assert_eq!(
            find(
                &scrape,
                "gateway_overhead_duration_seconds_sum",
                &[("route", "llama")]
            ),
            &Value::Untyped(0.0012)
        );
        assert!(scrape.docs["gateway_request_duration_ms"]
            .starts_with("Deprecated: use gateway_request_duration_seconds"));
        assert!(scrape.docs["gateway_overhead_duration_ms"]
            .starts_with("Deprecated: use gateway_overhead_duration_seconds"));

        // Time to first byte, per route.
        let Value::Histogram(fb) = find(
            &scrape,
            "gateway_upstream_first_byte_seconds",
            &[("route", "llama")],
        ) else {
            panic!("not a histogram")
        };
        assert_eq!(
            fb.iter().find(|b| b.less_than == 0.05).unwrap().count,
            4.0,
            "30 ms twice, 0.4 ms and 12 ms"
        );
        assert_eq!(fb.last().unwrap().count, 5.0);
        assert_eq!(
            find(
                &scrape,
                "gateway_upstream_first_byte_seconds_sum",
                &[("route", "llama")]
            ),
            &Value::Untyped(0.7724)
        );

        // Timestamps are `_timestamp_seconds`; the latest probe stands for the probe rounds.
        assert_eq!(
            find(
                &scrape,
                "gateway_endpoint_last_probe_timestamp_seconds",
                &[("route", "llama"), ("endpoint", "a")]
            ),
            &Value::Gauge((NOW - 45) as f64)
        );
        assert_eq!(
            find(&scrape, "gateway_probe_last_round_timestamp_seconds", &[]),
            &Value::Gauge((NOW - 45) as f64)
        );

        // No label per token unless asked for; per partner and per route are always there.
        assert!(!text.contains("token=\""), "{text}");
        assert!(!text.contains("gateway_token_"));
        assert!(text.contains("gateway_partner_requests_total"));
        let per_token = render_prometheus(&snap, true);
        let scrape_all = parse_with_prometheus_parse(&per_token);
        assert_eq!(
            find(
                &scrape_all,
                "gateway_token_last_seen_timestamp_seconds",
                &[("token", "tok_a")]
            ),
            &Value::Gauge((NOW - 10) as f64)
        );
        assert!(scrape_all.docs["gateway_token_last_seen_seconds"].starts_with("Deprecated"));

        // Every family: counters end in `_total`; a unit suffix is a base unit, but for the deprecated.
        for line in per_token.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}"
            );
            let deprecated = scrape_all.docs[name].starts_with("Deprecated");
            assert_eq!(
                name.contains("_ms") || name.ends_with("last_seen_seconds"),
                deprecated,
                "{name}"
            );
        }
    }

    #[test]
    fn tokens_about_to_expire_are_counted_by_kind() {
        use crate::store::TokenRecord;
        use crate::token::TokenKind;
        let record = |id: &str, kind: TokenKind, left: i64, revoked: bool| TokenRecord {
            id: id.into(),
            subject: "s".into(),
            kind,
            groups: vec![],
            routes: None,
            description: String::new(),
            metadata: BTreeMap::new(),
            created_by: "ops".into(),
            created_at: NOW - 10,
            expires_at: (NOW as i64 + left) as u64,
            revoked_at: revoked.then_some(NOW - 5),
            last_used_at: None,
            request_count: 0,
            rate_limit_rpm: None,
            owner: None,
            kid: None,
            registrar: None,
        };
        let records = [
            record("a", TokenKind::Service, 3_600, false),
            record("b", TokenKind::Service, 3 * 86_400, false),
            record("c", TokenKind::Service, 30 * 86_400, false),
            record("d", TokenKind::Service, 3_600, true),
            record("e", TokenKind::Partner, 86_400, false),
            record("f", TokenKind::User, -60, false),
        ];
        let mut b = SnapshotBuilder::new(NOW);
        b.tokens(&records);
        let snap = b.build();
        assert_eq!(
            snap.tokens_expiring["service"],
            Expiring {
                within_24h: 1,
                within_7d: 2
            }
        );
        assert_eq!(
            snap.tokens_expiring["partner"],
            Expiring {
                within_24h: 1,
                within_7d: 1
            }
        );
        assert!(
            !snap.tokens_expiring.contains_key("user"),
            "expired tokens no longer expire"
        );
        let scrape = parse_with_prometheus_parse(&render_prometheus(&snap, false));
        assert_eq!(
            find(
                &scrape,
                "gateway_tokens_expiring",
                &[("kind", "service"), ("within", "7d")]
            ),
            &prometheus_parse::Value::Gauge(2.0)
        );
        assert_eq!(
            find(
                &scrape,
                "gateway_tokens_expiring",
                &[("kind", "user"), ("within", "24h")]
            ),
            &prometheus_parse::Value::Gauge(0.0)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let odd = "we\"ird\\route\nx,y=z}";
        let mut snap = SnapshotBuilder::new(NOW).build();
        let mut r = RouteMetrics::default();
        r.by_status_class.insert("2xx".into(), 3);
        r.latency_ms.histogram.record(1.0);
        snap.routes.insert(odd.into(), r);
        snap.tokens.insert(
            "tok_\"\n".into(),
            TokenMetrics {
                requests: 2,
                ..TokenMetrics::default()
            },
        );
        let text = render_prometheus(&snap, true);
        assert!(
            text.contains(
                r#"gateway_requests_total{route="we\"ird\\route\nx,y=z}",status_class="2xx"} 3"#
            ),
            "{text}"
        );
        let samples = strict_parse(&text);
        let hit = samples.iter().find(|(n, _, _)| n == "gateway_requests_total").unwrap();
        assert_eq!(hit.1, vec![("route".to_string(), odd.to_string()), ("status_class".to_string(), "2xx".to_string())]);
        let tok = samples.iter().find(|(n, _, _)| n == "gateway_token_requests_total").unwrap();
        assert_eq!((tok.1[0].1.as_str(), tok.2.as_str()), ("tok_\"\n", "2"));
    }

    #[test]
    fn floats_are_written_as_prometheus_reads_them() {
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(300_000.0), "300000");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(PROMETHEUS_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }
}
