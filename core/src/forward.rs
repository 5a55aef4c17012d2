//! The forwarding plan: which upstream URLs to try in which order, which
//! headers go upstream and which come back. Adapters perform exactly this.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// How long an endpoint that failed to connect is tried last, in seconds.
pub const AVOID_SECONDS: u64 = 10;

/// Headers never forwarded in either direction (RFC 9110 §7.6.1), plus `proxy-*`.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-connection"];

/// Request headers the gateway owns: the client's values are dropped and the gateway sets its own.
const GATEWAY_OWNED: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "x-request-id",
    "cookie",
    "cdn-loop",
    "traceparent",
    "tracestate",
];

/// Headers a client could use to pose as a proxy or as Cloudflare: `cf-*`,
/// `x-forwarded-*`, `true-client-ip`, `x-real-ip`, `forwarded`; and the front door's
/// `x-origin-verify`, a secret that must never reach an upstream. The gateway
/// sets its own `x-forwarded-for` / `x-forwarded-proto` after dropping them.
fn is_client_forwarding(name: &str) -> bool {
    name.starts_with("cf-") || name.starts_with("x-forwarded-") || matches!(name, "true-client-ip" | "x-real-ip" | "forwarded" | "x-origin-verify")
}

/// One upstream to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Endpoint id (for logs and failure memory; never its address).
    pub endpoint_id: String,
    /// Full URL to request.
    pub url: String,
    /// The endpoint's base URL (private; used only to rewrite `Location`).
    pub base: String,
    /// Workers VPC service binding to fetch through, if any.
    pub via: Option<String>,
}

/// Everything an adapter needs to forward one request.
#[derive(Debug, Clone)]
pub struct ForwardPlan {
    /// Route name (or ephemeral id), for logs and metrics.
    pub route: String,
    /// Upstreams in the affinity key's order.
    pub upstreams: Vec<Upstream>,
    /// Headers to send upstream.
    pub headers: HeaderMap,
    /// Connect timeout, ms.
    pub connect_timeout_ms: u64,
    /// Time to response headers, ms.
    pub response_timeout_ms: u64,
    /// Longest silence between two chunks of the response body, ms.
    pub idle_timeout_ms: u64,
    /// The request-rate limit to check before forwarding, if one applies.
    pub rate_limit: Option<crate::ratelimit::RateLimit>,
    /// Body limit, bytes.
    pub max_body_bytes: u64,
    /// The request id sent upstream and returned.
    pub request_id: String,
    /// The request's W3C trace id, for the log lines.
    pub trace_id: String,
    /// Token id of the caller, for logs and usage (never the token).
    pub token_id: Option<String>,
    /// The partner, for partner tokens (metrics by partner).
    pub partner: Option<String>,
    /// Public path prefix of the route (`/llama/`, `/e/{id}/`, `/`), for rewriting `Location`.
    pub public_prefix: String,
    /// Append `Content-Security-Policy: sandbox` to the response (the route's `sandbox`).
    pub sandbox: bool,
    /// Pass the upstream's `Set-Cookie` on (the route's `forward_set_cookie`).
    pub forward_set_cookie: bool,
    /// The body to send instead of the client's: on a `usage: "always"` route, a stream whose
    /// client did not ask for usage asks for it ([`crate::usage::ask_for_usage`]).
    pub body: Option<bytes::Bytes>,
    /// Remove the usage-only event from the streamed answer ([`crate::usage::UsageStrip`]),
    /// because the gateway, not the client, asked for it.
    pub strip_usage: bool,
    /// The token budgets that apply to the caller ([`crate::budget`]), by key: each must have
    /// room before forwarding, and the answer's usage counts against each.
    pub budgets: Vec<(String, crate::budget::TokenBudget)>,
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-")
}

/// Header names the `Connection` header lists (also hop-by-hop).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// True for a client-sent request id worth keeping.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':'))
}

/// Joins an endpoint base URL, the normalised rest of the path and the query.
pub fn upstream_url(base: &str, rest: &str, query: Option<&str>) -> String {
    let mut url = String::with_capacity(base.len() + rest.len() + 2 + query.map_or(0, str::len));
    url.push_str(base.trim_end_matches('/'));
    url.push('/');
    url.push_str(rest);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// The value of cookie `name` in the `Cookie` headers (the first one, if sent twice).
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The request headers to send upstream.
///
/// Drops hop-by-hop headers, the client's `Authorization`, and every header a
/// client could forge a proxy's or Cloudflare's word with; sets
/// `x-request-id`, `x-forwarded-for`, `x-forwarded-proto` and the route's
/// upstream key. Of the client's cookies only the route's affinity cookie
/// (`affinity_cookie`) goes upstream, as `Cookie: name=value`.
pub fn request_headers(
    client: &HeaderMap,
    request_id: &str,
    client_ip: Option<&str>,
    proto: &str,
    upstream_key: Option<&str>,
    affinity_cookie: Option<&str>,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + 5);
    for (name, value) in client {
        let n = name.as_str();
        if is_hop_by_hop(n) || GATEWAY_OWNED.contains(&n) || is_client_forwarding(n) || listed.iter().any(|l| l == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(name) = affinity_cookie {
        let pair = cookie_value(client, name).and_then(|v| HeaderValue::from_str(&format!("{name}={}", v.trim())).ok());
        if let Some(pair) = pair {
            out.insert(http::header::COOKIE, pair);
        }
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Some(ip) = client_ip.and_then(|ip| HeaderValue::from_str(ip).ok()) {
        out.insert(HeaderName::from_static("x-forwarded-for"), ip);
    }
    if let Ok(v) = HeaderValue::from_str(proto) {
        out.insert(HeaderName::from_static("x-forwarded-proto"), v);
    }
    if let Some(key) = upstream_key {
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {key}")) {
            v.set_sensitive(true);
            out.insert(http::header::AUTHORIZATION, v);
        }
    }
    out
}

/// The response headers to return to the client, given the upstream's.
///
/// Drops hop-by-hop headers, `Service-Worker-Allowed` (always) and
/// `Set-Cookie` (unless the route forwards it), rewrites a `Location` that
/// points at the endpoint to the route's public prefix (so no private address
/// leaks), and adds `x-request-id`, `Server-Timing`, `Content-Security-Policy:
/// sandbox` (unless the route opts out; an upstream policy stays too), and
/// no-buffering headers on event streams.
pub fn response_headers(upstream: &HeaderMap, plan: &ForwardPlan, endpoint_base: &str, gateway_ms: f64) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len() + 5);
    for (name, value) in upstream {
        let n = name.as_str();
        if is_hop_by_hop(n) || listed.iter().any(|l| l == n) || n == "content-length" {
            continue;
        }
        // Proxied content must not widen a service worker's scope or set cookies on the gateway's origin.
        if n == "service-worker-allowed" || (n == "set-cookie" && !plan.forward_set_cookie) {
            continue;
        }
        if n == "location" || n == "content-location" {
            if let Some(v) = rewrite_location(value, endpoint_base, &plan.public_prefix) {
                out.append(name.clone(), v);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&plan.request_id) {
        out.insert(HeaderName::from_static("x-request-id"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("gateway;dur={gateway_ms:.2}")) {
        out.append(HeaderName::from_static("server-timing"), v);
    }
    if plan.sandbox {
        // Appended: every policy applies, so the upstream's own cannot loosen this one.
        out.append(http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    }
    if is_event_stream(upstream) {
        out.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        out.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    }
    out
}

/// True when the response is a server-sent event stream.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// A URL as a browser reads it: leading spaces and control characters trimmed,
/// tabs and line breaks removed anywhere (WHATWG URL parsing does both).
fn as_browser_reads(v: &str) -> String {
    v.trim_start_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect()
}

/// True for a `Location` a browser would follow off the gateway's origin:
/// `//host`, `/\host`, `\host` (browsers read `\` as `/`), or any `scheme:`.
fn leaves_origin(v: &str) -> bool {
    let v = as_browser_reads(v);
    let scheme = v.find(':').is_some_and(|i| {
        let s = &v[..i];
        s.starts_with(|c: char| c.is_ascii_alphabetic()) && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    scheme || v.starts_with("//") || v.starts_with("/\\") || v.starts_with('\\')
}

/// The `Location` (or `Content-Location`) to return for an upstream's value.
///
/// A URL under the endpoint's base (matched at a `/`, `?` or `#` boundary, so
/// `http://h:8000` never matches `http://h:80001/` or `http://h:8000evil.com`)
/// is mapped to the route's public prefix, so no private address leaks. Any
/// other absolute URL is dropped (it may name another private host), and so is
/// a relative value a browser would follow to another host (`//host`,
/// `/\host`, `\host`): no open redirect. Other relative values are kept.
pub fn rewrite_location(value: &HeaderValue, endpoint_base: &str, public_prefix: &str) -> Option<HeaderValue> {
    let v = value.to_str().ok()?;
    let base = endpoint_base.trim_end_matches('/');
    if let Some(rest) = v.strip_prefix(base).filter(|r| r.is_empty() || r.starts_with(['/', '?', '#'])) {
        let mapped = format!("{public_prefix}{}", rest.trim_start_matches('/'));
        return if leaves_origin(&mapped) { None } else { HeaderValue::from_str(&mapped).ok() };
    }
    if leaves_origin(v) {
        return None;
    }
    Some(value.clone())
}

/// Endpoints that failed to connect recently, per isolate or Lambda instance.
#[derive(Debug, Default)]
pub struct FailureMemory {
    until: std::collections::HashMap<String, u64>,
}

impl FailureMemory {
    fn key(route: &str, endpoint: &str) -> String {
        format!("{route}\u{0}{endpoint}")
    }
    /// Remembers that `endpoint` of `route` failed at `now`.
    pub fn mark_failed(&mut self, route: &str, endpoint: &str, now: u64) {
        if self.until.len() > 10_000 {
            self.until.retain(|_, &mut t| t > now);
        }
        self.until.insert(Self::key(route, endpoint), now + AVOID_SECONDS);
    }
    /// Forgets a failure once the endpoint answered.
    pub fn mark_ok(&mut self, route: &str, endpoint: &str) {
        if !self.until.is_empty() {
            self.until.remove(&Self::key(route, endpoint));
        }
    }
    /// True while the endpoint should be tried last.
    pub fn is_avoided(&self, route: &str, endpoint: &str, now: u64) -> bool {
        !self.until.is_empty() && self.until.get(&Self::key(route, endpoint)).is_some_and(|&t| now < t)
    }
}

/// Fixtures for core's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A plan on route `llama` with no upstream.
    pub(crate) fn plan() -> ForwardPlan {
        super::tests::plan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn plan() -> ForwardPlan {
        ForwardPlan { request_id: "rid-1".into(), ..crate::fixtures::plan("llama") }
    }

    #[test]
    fn urls_join_cleanly() {
        assert_eq!(upstream_url("http://h:8000", "v1/models", None), "http://h:8000/v1/models");
        assert_eq!(upstream_url("http://h:8000/base/", "v1/x", Some("a=1&b=2")), "http://h:8000/base/v1/x?a=1&b=2");
        assert_eq!(upstream_url("http://h", "", Some("")), "http://h/");
    }

    #[test]
    fn request_header_hygiene() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer client-secret".parse().unwrap());
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("trailer", "x".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-session-id", "s1".parse().unwrap());
        let out = request_headers(&h, "rid", Some("1.2.3.4"), "https", Some("vllm-key"), None);
        for gone in ["connection", "x-secret-hop", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization"] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out["authorization"], "Bearer vllm-key");
        assert!(out["authorization"].is_sensitive());
        assert_eq!(out["x-forwarded-for"], "1.2.3.4");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-request-id"], "rid");
        assert_eq!(out["content-type"], "application/json");
        assert_eq!(out["x-session-id"], "s1");
        let out = request_headers(&h, "rid", None, "https", None, None);
        assert!(!out.contains_key("authorization"), "the client's token never goes upstream");
    }

    #[test]
    fn response_headers_for_streams_and_locations() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/event-stream; charset=utf-8".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("location", "http://10.0.0.5:8000/v1/models".parse().unwrap());
        h.insert("content-location", "http://192.168.1.1/x".parse().unwrap());
        let out = response_headers(&h, &plan(), "http://10.0.0.5:8000", 0.42);
        assert_eq!(out["cache-control"], "no-cache");
        assert_eq!(out["x-accel-buffering"], "no");
        assert_eq!(out["server-timing"], "gateway;dur=0.42");
        assert_eq!(out["x-request-id"], "rid-1");
        assert_eq!(out["location"], "/llama/v1/models");
        assert!(!out.contains_key("content-location"));
        assert!(!out.contains_key("transfer-encoding"));
    }

    #[test]
    fn proxied_content_cannot_act_on_the_gateway_origin() {
        let mut h = HeaderMap::new();
        h.insert("service-worker-allowed", "/".parse().unwrap());
        h.append("set-cookie", "session=x; Path=/".parse().unwrap());
        h.append("set-cookie", "other=y".parse().unwrap());
        h.insert("content-security-policy", "default-src 'self'".parse().unwrap());
        let out = response_headers(&h, &plan(), "http://10.0.0.5:8000", 1.0);
        assert!(!out.contains_key("service-worker-allowed"));
        assert!(!out.contains_key("set-cookie"), "cookies are dropped by default");
        let csp: Vec<_> = out.get_all("content-security-policy").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(csp, ["default-src 'self'", "sandbox"], "the upstream's policy stays, sandbox is added");

        let mut open = plan();
        open.sandbox = false;
        open.forward_set_cookie = true;
        let out = response_headers(&h, &open, "http://10.0.0.5:8000", 1.0);
        assert!(!out.contains_key("service-worker-allowed"), "dropped whatever the route says");
        assert_eq!(out.get_all("set-cookie").iter().count(), 2);
        let csp: Vec<_> = out.get_all("content-security-policy").iter().collect();
        assert_eq!(csp, ["default-src 'self'"]);
    }

    #[test]
    fn clients_cannot_forge_forwarding_headers_or_send_other_cookies() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("cf-connecting-ip", "6.6.6.6"),
            ("cf-access-jwt-assertion", "forged"),
            ("cf-new-header", "x"),
            ("true-client-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-proto", "http"),
            ("x-real-ip", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-origin-verify", "front-door-secret"),
            ("content-type", "application/json"),
        ] {
            h.append(n, v.parse().unwrap());
        }
        h.append("cookie", "gw_session=secret; sid=zz".parse().unwrap());
        h.append("cookie", "other=1".parse().unwrap());
        let out = request_headers(&h, "rid", Some("1.2.3.4"), "https", None, Some("sid"));
        for gone in ["cf-connecting-ip", "cf-access-jwt-assertion", "cf-new-header", "true-client-ip", "x-forwarded-host", "x-forwarded-port", "x-real-ip", "forwarded", "x-origin-verify"] {
            assert!(!out.contains_key(gone), "{gone}");
        }
        assert_eq!(out.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["1.2.3.4"]);
        assert_eq!(out.get_all("x-forwarded-proto").iter().collect::<Vec<_>>(), ["https"]);
        assert_eq!(out.get_all("cookie").iter().collect::<Vec<_>>(), ["sid=zz"], "only the affinity cookie goes upstream");
        assert_eq!(out["content-type"], "application/json");
        assert!(!request_headers(&h, "rid", None, "https", None, None).contains_key("cookie"), "no affinity cookie: no Cookie");
        assert!(!request_headers(&h, "rid", None, "https", None, Some("absent")).contains_key("cookie"));
        assert!(!request_headers(&h, "rid", None, "https", None, None).contains_key("x-forwarded-for"), "no address: none forwarded");
    }

    #[test]
    fn locations_map_at_a_boundary_and_never_redirect_off_site() {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        let rw = |v: &str, prefix: &str| rewrite_location(&hv(v), "http://10.0.0.1:8000", prefix).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(rw("http://10.0.0.1:8000/v1/x", "/llama/").as_deref(), Some("/llama/v1/x"));
        assert_eq!(rw("http://10.0.0.1:8000", "/llama/").as_deref(), Some("/llama/"));
        assert_eq!(rw("http://10.0.0.1:8000?a=1", "/llama/").as_deref(), Some("/llama/?a=1"));
        assert_eq!(rw("http://10.0.0.1:80001/x", "/llama/"), None, "another port is another host");
        assert_eq!(rw("http://10.0.0.1:8000evil.com/x", "/llama/"), None);
        assert_eq!(rw("http://10.0.0.1:8000.evil.com/", "/llama/"), None);
        // Relative values a browser follows to another host.
        for v in ["//evil.com", "/\\evil.com", "\\evil.com", "\\\\evil.com", " //evil.com", "/\t/evil.com", "HTTP://evil.com", "https:\\\\evil.com", "javascript:alert(1)"] {
            assert_eq!(rw(v, "/llama/"), None, "{v:?}");
        }
        // Through a host route (prefix `/`) the endpoint's own path cannot make one either.
        assert_eq!(rw("http://10.0.0.1:8000/\\evil.com", "/"), None);
        assert_eq!(rw("http://10.0.0.1:8000//\\evil.com", "/"), None);
        assert_eq!(rw("http://10.0.0.1:8000/\t/evil.com", "/"), None);
        assert_eq!(rw("http://10.0.0.1:8000/ok", "/").as_deref(), Some("/ok"));
        for v in ["/v1/models", "models?x=1", "#top"] {
            assert_eq!(rw(v, "/llama/").as_deref(), Some(v), "relative values stay");
        }
    }

    #[test]
    fn failure_memory_expires() {
        let mut m = FailureMemory::default();
        m.mark_failed("r", "a", 100);
        assert!(m.is_avoided("r", "a", 100 + AVOID_SECONDS - 1));
        assert!(!m.is_avoided("r", "a", 100 + AVOID_SECONDS));
        assert!(!m.is_avoided("r", "b", 100));
        m.mark_ok("r", "a");
        assert!(!m.is_avoided("r", "a", 101));
    }
}
