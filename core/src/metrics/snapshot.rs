//! The `GET /_gateway/metrics` JSON: counters and health read back into a [`Snapshot`].

use super::*;

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

pub(crate) fn sat_add(to: &mut u64, v: u64) {
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
