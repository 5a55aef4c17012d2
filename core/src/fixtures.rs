//! Builders of the values tests share (core's, the adapters', the fuzz
//! targets'): every field a test does not care about is set once, here, and a
//! test names only what it checks (`TokenRecord { revoked_at: Some(1),
//! ..token_record("tok_a", exp) }`). Compiled for tests and with the
//! `fixtures` feature; never in a deployment.

use crate::forward::ForwardPlan;
use crate::metrics::RequestSample;
use crate::store::TokenRecord;
use crate::token::TokenKind;

/// The trace id the fixtures carry (W3C's example).
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A plan for `route` with no upstream, 1 ms timeouts, a 1-byte body limit, request id
/// `req_1`, no caller, sandboxed under `/{route}/`.
pub fn plan(route: &str) -> ForwardPlan {
    ForwardPlan {
        route: route.into(),
        upstreams: Vec::new(),
        headers: http::HeaderMap::new(),
        connect_timeout_ms: 1,
        response_timeout_ms: 1,
        idle_timeout_ms: 1,
        rate_limit: None,
        max_body_bytes: 1,
        request_id: "req_1".into(),
        trace_id: TRACE_ID.into(),
        token_id: None,
        partner: None,
        public_prefix: format!("/{route}/"),
        sandbox: true,
        forward_set_cookie: false,
        body: None,
        strip_usage: false,
        budgets: Vec::new(),
    }
}

/// A user token of subject `s`, issued by `ops` at 0, expiring at `expires_at`, with no
/// groups, routes, limits or use.
pub fn token_record(id: &str, expires_at: u64) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        subject: "s".into(),
        kind: TokenKind::User,
        groups: Vec::new(),
        routes: None,
        description: String::new(),
        metadata: Default::default(),
        created_by: "ops".into(),
        created_at: 0,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        request_count: 0,
        rate_limit_rpm: None,
        owner: None,
        kid: None,
        registrar: None,
    }
}

/// A request on `route` answered `status` after `latency_ms`, at `at`; nothing else known.
pub fn sample(route: &str, status: u16, latency_ms: f64, at: u64) -> RequestSample {
    RequestSample { route: route.into(), status, latency_ms, at, ..RequestSample::default() }
}
