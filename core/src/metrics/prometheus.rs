//! The Prometheus text rendering of a [`Snapshot`].

use super::*;

/// The `Content-Type` of [`render_prometheus`]'s output.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus text exposition being written.
pub(crate) struct Exposition(String);

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
pub(crate) fn escape_label_value(v: &str, out: &mut String) {
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
pub(crate) fn format_float(v: f64) -> String {
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
pub(crate) fn render_per_token(out: &mut Exposition, s: &Snapshot) {
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
