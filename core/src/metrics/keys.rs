//! What one request adds to the counters ([`RequestSample`] → [`Updates`]) and
//! the counter key scheme (see the table in [`crate::metrics`]).

use super::*;

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
pub(crate) const KEY_PART_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

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
pub(crate) fn decode_part(p: &str) -> Option<String> {
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

pub(crate) fn parse_minute(s: &str) -> Option<u64> {
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
pub(crate) enum RouteField {
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
    pub(crate) fn parse(f: &[&str]) -> Option<Self> {
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
pub(crate) enum Parsed {
    Total { route: String, field: RouteField },
    Minute { minute: u64, route: String, field: RouteField },
    Endpoint { route: String, endpoint: String, fail: bool },
    Token { token: String, field: TokenField },
    Partner { partner: String, field: TokenField },
}

/// A field of a token's item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenField {
    Req,
    Route(String),
    Prompt,
    Completion,
    LastSeen,
}

pub(crate) fn parse_key(key: &str) -> Option<Parsed> {
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
    pub(crate) fn parse(f: &[&str]) -> Option<Self> {
        Some(match f {
            ["req"] => TokenField::Req,
            ["route", r] => TokenField::Route(decode_part(r)?),
            ["prompt"] => TokenField::Prompt,
            ["completion"] => TokenField::Completion,
            ["last_seen"] => TokenField::LastSeen,
            _ => return None,
        })
    }

    pub(crate) fn apply(self, t: &mut TokenMetrics, value: u64) {
        match self {
            TokenField::Req => sat_add(&mut t.requests, value),
            TokenField::Route(r) => sat_add(t.routes.entry(r).or_default(), value),
            TokenField::Prompt => sat_add(&mut t.prompt_tokens, value),
            TokenField::Completion => sat_add(&mut t.completion_tokens, value),
            TokenField::LastSeen => t.last_seen = Some(t.last_seen.unwrap_or(0).max(value)),
        }
    }
}
