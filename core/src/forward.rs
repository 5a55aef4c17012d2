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
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "x-request-id",
    "cf-connecting-ip",
    "cf-ipcountry",
    "cf-ray",
    "cf-visitor",
    "cf-worker",
    "cdn-loop",
];

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

/// The request headers to send upstream.
pub fn request_headers(
    client: &HeaderMap,
    request_id: &str,
    client_ip: Option<&str>,
    proto: &str,
    upstream_key: Option<&str>,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + 4);
    for (name, value) in client {
        let n = name.as_str();
        if is_hop_by_hop(n) || GATEWAY_OWNED.contains(&n) || listed.iter().any(|l| l == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
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

/// Maps an absolute URL on the endpoint to the route's public path; drops other absolute URLs
/// to hosts that look private, keeps relative ones.
fn rewrite_location(value: &HeaderValue, endpoint_base: &str, public_prefix: &str) -> Option<HeaderValue> {
    let v = value.to_str().ok()?;
    let base = endpoint_base.trim_end_matches('/');
    if let Some(rest) = v.strip_prefix(base) {
        let rest = rest.trim_start_matches('/');
        return HeaderValue::from_str(&format!("{public_prefix}{rest}")).ok();
    }
    if v.starts_with("http://") || v.starts_with("https://") || v.starts_with("//") {
        // An absolute URL elsewhere may be another private host; do not pass it on.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> ForwardPlan {
        ForwardPlan {
            route: "llama".into(),
            upstreams: vec![],
            headers: HeaderMap::new(),
            connect_timeout_ms: 1,
            response_timeout_ms: 1,
            idle_timeout_ms: 1,
            rate_limit: None,
            max_body_bytes: 1,
            request_id: "rid-1".into(),
            token_id: None,
            partner: None,
            public_prefix: "/llama/".into(),
            sandbox: true,
            forward_set_cookie: false,
        }
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
        let out = request_headers(&h, "rid", Some("1.2.3.4"), "https", Some("vllm-key"));
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
        let out = request_headers(&h, "rid", None, "https", None);
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
