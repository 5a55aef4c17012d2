//! The whole per-request decision of the data plane, in the order the gateway
//! applies it: limits, routing, authentication, RBAC, balancing, forwarding plan.
//!
//! One road, one answer ([`Decision`]). [`decide`] takes it whole, for callers that
//! hold the body (tests, benchmarks, fuzz targets). The adapters, which stream the
//! body, take the same road in its two steps, reading the body's start between them
//! when asked: [`resolve`] reads the store (route, caller, leases, health, budgets;
//! [`resolve_model`] under `/v1/`), then [`Resolution::decide`] balances and plans
//! without I/O.

use crate::balance::Balancer;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::forward::{is_valid_request_id, request_headers, upstream_url, ForwardPlan, Upstream};
use crate::rbac::authorize;
use crate::route::{parse_target, AffinityFallback, Endpoint, Route, Target};
use crate::store::RouteSource;
use crate::token::Principal;
use http::request::Parts;

/// What the adapter does with a request.
#[derive(Debug)]
pub enum Decision {
    /// An admin API call: hand it to [`crate::admin::handle`] with these segments.
    Admin(Vec<String>),
    /// Forward it as planned.
    Forward(Box<ForwardPlan>),
    /// Send the gateway's own answer (`/v1/models`).
    Answer(http::Response<Vec<u8>>),
}

/// Facts about the request that only the platform knows.
pub struct RequestContext<'a> {
    /// Unix seconds.
    pub now: u64,
    /// The client's address, as the platform reports it.
    pub client_ip: Option<&'a str>,
    /// `https` or `http`, as the client reached the platform.
    pub proto: &'a str,
    /// A fresh request id, used unless the client sent a valid one.
    pub new_request_id: &'a str,
    /// The request's W3C trace, passed on upstream.
    pub trace: &'a crate::trace::Trace,
    /// Endpoints that failed recently on this isolate or instance: tried last.
    pub failures: &'a crate::forward::FailureMemory,
    /// Requests this isolate or instance has in flight, by endpoint. With the endpoint's latest
    /// vLLM reading it makes the load ([`crate::load::estimate`]).
    pub in_flight: &'a crate::load::InFlight,
    /// The start of the request body (at most [`crate::load::BODY_PEEK_BYTES`]) and
    /// whether that is all of it, for routes keyed by prompt prefix
    /// ([`Resolution::needs_body`]); `None` when not read.
    pub body_peek: Option<(&'a [u8], bool)>,
}

/// Checks header count and size and URL length, before anything else.
pub fn check_limits(cfg: &Config, parts: &Parts) -> Result<()> {
    let url_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if url_len > cfg.limits.max_url_bytes {
        return Err(Error::UriTooLong { limit: cfg.limits.max_url_bytes });
    }
    if parts.headers.len() > cfg.limits.max_headers {
        return Err(Error::HeadersTooLarge(format!("more than {} header fields", cfg.limits.max_headers)));
    }
    let bytes: usize = parts.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    if bytes > cfg.limits.max_header_bytes {
        return Err(Error::HeadersTooLarge(format!("request headers over {} bytes", cfg.limits.max_header_bytes)));
    }
    Ok(())
}

/// What to do with a request given the scheme the client used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Carry on.
    Proceed,
    /// Answer 308 with this `Location` (plain-HTTP `GET`/`HEAD` under `GATEWAY_PLAIN_HTTP=redirect`).
    Redirect(String),
}

/// HTTPS only, outside local development: plain HTTP is refused, or for
/// `GET`/`HEAD` redirected when so configured. A request with a body is never
/// redirected: it has already crossed the network in clear, and a redirect would
/// teach the client to send it twice.
pub fn check_transport(cfg: &Config, proto: &str, parts: &Parts) -> Result<Transport> {
    check_origin(cfg, parts)?;
    if proto.eq_ignore_ascii_case("https") || cfg.allow_http {
        return Ok(Transport::Proceed);
    }
    let safe = parts.method == http::Method::GET || parts.method == http::Method::HEAD;
    match (cfg.redirect_http, safe, request_host(cfg, parts)) {
        (true, true, Some(host)) => {
            let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            Ok(Transport::Redirect(format!("https://{host}{pq}")))
        }
        _ => Err(Error::HttpsRequired),
    }
}

/// The log record every request leaves, one per request, on both deployments (the edge writes
/// it as a JSON line; the Lambda as the fields of its `request` event, inside a span that
/// carries the trace id). Never the token, only its id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccessRecord<'a> {
    /// The request's id (`x-request-id`).
    pub request_id: &'a str,
    /// Its W3C trace id, when the log line carries it itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
    /// The route it reached, once known.
    pub route: Option<&'a str>,
    /// The endpoint that answered, once one did.
    pub endpoint: Option<&'a str>,
    /// The status sent to the client.
    pub status: u16,
    /// From arrival to the response's head, in milliseconds.
    pub latency_ms: f64,
    /// The caller's token id, when it had one.
    pub token_id: Option<&'a str>,
}

/// Headers every response of the gateway carries: HSTS (outside local
/// development), and no content sniffing.
pub fn security_headers(cfg: &Config) -> &'static [(&'static str, &'static str)] {
    const HTTPS: &[(&str, &str)] =
        &[("strict-transport-security", "max-age=31536000; includeSubDomains"), ("x-content-type-options", "nosniff")];
    const LOCAL: &[(&str, &str)] = &[("x-content-type-options", "nosniff")];
    if cfg.allow_http {
        LOCAL
    } else {
        HTTPS
    }
}

/// The header a front door sends with [`Config::origin_secret`].
pub const ORIGIN_HEADER: &str = "x-origin-verify";

/// True when both byte strings are equal, in time that depends on neither (their SHA-256
/// digests are compared with every byte looked at).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0
}

/// True when the request came through the front door: it carries the origin secret.
fn through_front_door(cfg: &Config, parts: &Parts) -> bool {
    let Some(secret) = &cfg.origin_secret else { return false };
    let mut sent = parts.headers.get_all(ORIGIN_HEADER).iter();
    match (sent.next(), sent.next()) {
        (Some(v), None) => constant_time_eq(v.as_bytes(), secret.as_bytes()),
        _ => false,
    }
}

/// With `GATEWAY_ORIGIN_SECRET` set, only the front door may call: a request without the
/// secret (someone calling the Function URL directly) is refused before anything else.
pub fn check_origin(cfg: &Config, parts: &Parts) -> Result<()> {
    if cfg.origin_secret.is_none() || through_front_door(cfg, parts) {
        Ok(())
    } else {
        Err(Error::Forbidden("requests must come through the gateway's own domain".into()))
    }
}

/// The host the client addressed, lowercased and without port: the front door's
/// `x-forwarded-host` when the request proved it came through the front door, else `Host`.
fn request_host(cfg: &Config, parts: &Parts) -> Option<String> {
    let forwarded = through_front_door(cfg, parts).then(|| parts.headers.get("x-forwarded-host").and_then(|h| h.to_str().ok())).flatten();
    let raw = forwarded.or_else(|| parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok())).or_else(|| parts.uri.host())?;
    let host = raw.rsplit_once(':').map_or(raw, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { raw });
    Some(host.to_ascii_lowercase())
}

/// True when a browser is fetching the request as a service worker's script
/// (`Service-Worker: script`): a proxied script must never control the gateway's origin.
fn is_service_worker_script(parts: &Parts) -> bool {
    parts.headers.get_all("service-worker").iter().any(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"script"))
}

/// Finds the cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    crate::forward::cookie_value(&parts.headers, name)
}

/// The key a request is balanced by, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceKey {
    /// The rendezvous key.
    pub key: String,
    /// True when the key is the request's own (no affinity): the request is
    /// spread by load ([`crate::balance::Balancer::spread`]) rather than kept in place.
    pub spread: bool,
}

/// The session id the route's header, else its cookie, carries.
fn session_id<'a>(route: &Route, parts: &'a Parts) -> Option<&'a str> {
    let from_header = route
        .affinity
        .header
        .as_deref()
        .and_then(|h| parts.headers.get(h))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    let from_cookie = || {
        route
            .affinity
            .cookie
            .as_deref()
            .and_then(|c| cookie(parts, c))
            .filter(|v| !v.is_empty())
    };
    from_header.or_else(from_cookie)
}

/// The balancing key: the route's session header, then its cookie, each scoped
/// to the caller's subject; else the route's fallback for the caller's token
/// kind ([`crate::route::Affinity::fallback_for`]): the token id, the prompt
/// prefix of `body_peek` (not scoped: callers sharing a system prompt share
/// the cache), or the request id (spread by load). `prefix` without a key from
/// the body, and `token` without a token, fall back to the request id.
pub fn balance_key(
    route: &Route,
    parts: &Parts,
    principal: Option<&Principal>,
    request_id: &str,
    body_peek: Option<(&[u8], bool)>,
) -> BalanceKey {
    if let Some(session) = session_id(route, parts) {
        let scope = principal.map_or("anonymous", |p| p.subject.as_str());
        return BalanceKey {
            key: format!("s\u{0}{scope}\u{0}{session}"),
            spread: false,
        };
    }
    let fallback = route.affinity.fallback_for(principal.map(|p| p.kind));
    let key = match (fallback, principal) {
        (AffinityFallback::Token, Some(p)) => Some(format!("t\u{0}{}", p.token_id)),
        (AffinityFallback::Prefix, _) => body_peek
            .and_then(|(body, complete)| crate::load::prompt_prefix_key(body, complete))
            .map(|prefix| format!("p\u{0}{prefix}")),
        _ => None,
    };
    match key {
        Some(key) => BalanceKey { key, spread: false },
        None => BalanceKey {
            key: format!("r\u{0}{request_id}"),
            spread: true,
        },
    }
}

/// [`balance_key`]'s key without a body peek.
pub fn affinity_key(
    route: &Route,
    parts: &Parts,
    principal: Option<&Principal>,
    request_id: &str,
) -> String {
    balance_key(route, parts, principal, request_id, None).key
}

/// Verifies the bearer token if one is sent; `Ok(None)` when none is.
async fn principal_of<S: RouteSource>(cfg: &Config, store: &S, parts: &Parts, now: u64) -> Result<Option<Principal>> {
    match crate::identity::authenticate(cfg, store, parts.headers.get(http::header::AUTHORIZATION), now).await {
        Err(Error::MissingToken) => Ok(None),
        Err(e) => Err(e),
        Ok(p) => Ok(Some(p)),
    }
}

/// What the store said about a request's route and caller: everything [`Resolution::decide`] needs.
#[derive(Debug)]
pub struct Resolved {
    route: Route,
    key: String,
    rest: String,
    prefix: String,
    principal: Option<Principal>,
    leases: Vec<Endpoint>,
    /// Endpoints health probes found down.
    down: Vec<String>,
    /// The endpoints' latest load readings.
    loads: crate::load::Loads,
    /// The token budgets that apply to the caller, by key.
    budgets: Vec<(String, crate::budget::TokenBudget)>,
    /// The value of the secret the route names (`upstream_api_key_secret`), from
    /// [`Config::upstream_secrets`]; `None` when it names none or the platform lacks it.
    upstream_key: Option<crate::config::SecretValue>,
}

impl Resolved {
    /// True when planning needs the body's start ([`RequestContext::body_peek`]): to key the
    /// request by its prompt prefix (the route's fallback is `prefix` and the request carries
    /// no session id), or to ask for a stream's usage (a `usage: "always"` route's `POST`).
    fn needs_body_peek(&self, parts: &Parts) -> bool {
        let kind = self.principal.as_ref().map(|p| p.kind);
        let prefix = self.route.affinity.fallback_for(kind) == AffinityFallback::Prefix && session_id(&self.route, parts).is_none();
        // A `usage: "always"` route may have to ask for a stream's usage in the body.
        prefix || (self.route.usage == crate::usage::UsageMode::Always && parts.method == http::Method::POST)
    }
}

/// What the store said ([`resolve`]); [`Resolution::decide`] makes it a [`Decision`].
#[derive(Debug)]
pub enum Resolution {
    /// An admin API call: hand it to [`crate::admin::handle`] with these segments.
    Admin(Vec<String>),
    /// A data-plane request the caller may make.
    Route(Box<Resolved>),
    /// Under `/v1/`: the gateway's own answer (the caller's model list, one model).
    Answer(http::Response<Vec<u8>>),
    /// Under `/v1/`: routed by the body's `model`. The adapter reads the body's first
    /// [`crate::models::PEEK_BYTES`] (forwarding them with the rest afterwards) and calls
    /// [`resolve_model`].
    NeedsModel,
}

impl Resolution {
    /// True when deciding needs the body's start ([`RequestContext::body_peek`]): under
    /// `/v1/` to read `model` ([`resolve_model`]), or for a route keyed by prompt prefix.
    pub fn needs_body(&self, parts: &Parts) -> bool {
        match self {
            Resolution::NeedsModel => true,
            Resolution::Route(r) => r.needs_body_peek(parts),
            Resolution::Admin(_) | Resolution::Answer(_) => false,
        }
    }

    /// The decision, with no I/O: an admin call, the gateway's own answer, or a forwarding
    /// plan (balanced with what `ctx` says of this instance). Model routing must have been
    /// resolved first ([`resolve_model`]).
    pub fn decide(self, parts: &Parts, ctx: &RequestContext<'_>) -> Result<Decision> {
        match self {
            Resolution::Admin(segs) => Ok(Decision::Admin(segs)),
            Resolution::Answer(res) => Ok(Decision::Answer(res)),
            Resolution::Route(r) => plan(parts, *r, ctx).map(|p| Decision::Forward(Box::new(p))),
            Resolution::NeedsModel => Err(Error::Internal("model routing resolved twice".into())),
        }
    }
}

/// The part of the decision that reads the store: limits, routing, authentication, RBAC.
pub async fn resolve<S: RouteSource>(cfg: &Config, store: &S, parts: &Parts, now: u64) -> Result<Resolution> {
    check_limits(cfg, parts)?;
    let path = parts.uri.path();
    let host = request_host(cfg, parts);
    // With GATEWAY_ADMIN_HOST, the admin API and proxied content never share an origin.
    let on_admin_host = cfg.admin_host.as_deref().map(|admin| host.as_deref() == Some(admin));
    // The admin API answers before any store read (healthz needs none): on every host,
    // or only on the admin host (healthz still on every host).
    let target = parse_target(path, false)?;
    if let Target::Admin(segs) = target {
        if on_admin_host == Some(false) && !crate::admin::is_healthz(&segs) {
            return Err(Error::NotFound("no such route".into()));
        }
        return Ok(Resolution::Admin(segs));
    }
    if on_admin_host == Some(true) {
        return Err(Error::NotFound("no such route".into()));
    }
    if is_service_worker_script(parts) {
        return Err(Error::ServiceWorkerRefused);
    }
    // Host routes take every other path on their host.
    let host_route = match host {
        Some(h) => store.route_for_host(&h).await?.filter(|r| r.is_active(now)),
        None => None,
    };
    let target = if host_route.is_some() { parse_target(path, true)? } else { target };
    // The route and the caller are read at once; a missing route is 404 whatever the token.
    let (route, key, rest, prefix, principal) = match target {
        Target::Admin(segs) => return Ok(Resolution::Admin(segs)),
        Target::Model { rest } => {
            return match crate::models::classify(&parts.method, &rest) {
                crate::models::ModelRequest::List => list_models(cfg, store, parts, now).await.map(Resolution::Answer),
                crate::models::ModelRequest::Get(id) => {
                    model_route(cfg, store, parts, &id, now).await?;
                    Ok(Resolution::Answer(json_answer(serde_json::to_vec(&crate::models::model_object(&id)).unwrap_or_default())))
                }
                crate::models::ModelRequest::ByBody => Ok(Resolution::NeedsModel),
            };
        }
        Target::Host { rest } => {
            let r = host_route.ok_or_else(|| Error::NotFound("no such route".into()))?;
            let key = r.name.clone();
            (r, key, rest, "/".to_string(), principal_of(cfg, store, parts, now).await)
        }
        Target::Static { name, rest } => {
            let (r, principal) = futures_util::future::join(store.route(&name), principal_of(cfg, store, parts, now)).await;
            let r = r?.filter(|r| r.is_active(now) && r.expires_at.is_none());
            let prefix = format!("/{name}/");
            (r.ok_or_else(|| Error::NotFound("no such route".into()))?, name, rest, prefix, principal)
        }
        Target::Ephemeral { id, rest } => {
            let (r, principal) = futures_util::future::join(store.ephemeral(&id), principal_of(cfg, store, parts, now)).await;
            let r = r?.filter(|r| r.is_active(now));
            let prefix = format!("/e/{id}/");
            (r.ok_or_else(|| Error::NotFound("no such route".into()))?, id, rest, prefix, principal)
        }
    };

    // Authentication, then RBAC.
    let principal = principal?;
    authorize(&route, &key, principal.as_ref())?;
    finish(cfg, store, parts, route, key, rest, prefix, principal).await
}

/// The second step under `/v1/` ([`Resolution::NeedsModel`]): `peek` is the body's start (all
/// of it when `complete`); the route serving its `model` is resolved as a path route is.
pub async fn resolve_model<S: RouteSource>(cfg: &Config, store: &S, parts: &Parts, now: u64, peek: &[u8], complete: bool) -> Result<Resolution> {
    let Target::Model { rest } = parse_target(parts.uri.path(), false)? else {
        return Err(Error::NotFound("no such route".into()));
    };
    // At most the peek counts, whatever the adapter happened to read.
    let (peek, complete) = if peek.len() > crate::models::PEEK_BYTES { (&peek[..crate::models::PEEK_BYTES], false) } else { (peek, complete) };
    let model = crate::models::model_of(peek, complete)?;
    let (route, principal) = model_route(cfg, store, parts, &model, now).await?;
    let key = route.name.clone();
    finish(cfg, store, parts, route, key, rest, "/".to_string(), principal).await
}

/// The caller, and the route serving `model` that it may use; an unknown model and a forbidden
/// one are the same 404, so a caller never learns which models it may not use exist. The
/// caller and the route are read at once; a bad token answers first.
async fn model_route<S: RouteSource>(cfg: &Config, store: &S, parts: &Parts, model: &str, now: u64) -> Result<(Route, Option<Principal>)> {
    let not_found = || Error::ModelNotFound(model.to_string());
    let found = async {
        match store.model_route(model).await? {
            Some(name) => store.route(&name).await,
            None => Ok(None),
        }
    };
    let (principal, route) = futures_util::future::join(principal_of(cfg, store, parts, now), found).await;
    let principal = principal?;
    let route = route?
        .filter(|r| r.is_active(now) && r.expires_at.is_none() && r.models.iter().any(|m| m == model))
        .ok_or_else(not_found)?;
    match authorize(&route, &route.name, principal.as_ref()) {
        Ok(()) => Ok((route, principal)),
        Err(Error::Forbidden(_) | Error::MissingToken) => Err(not_found()),
        Err(e) => Err(e),
    }
}

/// `GET /v1/models`: the models of every route the caller may use, merged, from the routes'
/// declarations (no upstream call).
async fn list_models<S: RouteSource>(cfg: &Config, store: &S, parts: &Parts, now: u64) -> Result<http::Response<Vec<u8>>> {
    let (principal, index) = futures_util::future::join(principal_of(cfg, store, parts, now), store.model_index()).await;
    let (principal, index) = (principal?, index?);
    let mut by_route: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for (model, route) in &index {
        by_route.entry(route.as_str()).or_default().push(model.as_str());
    }
    let routes = futures_util::future::try_join_all(by_route.keys().map(|name| store.route(name))).await?;
    let mut ids = Vec::new();
    for (r, (_, models)) in routes.into_iter().zip(by_route) {
        let Some(r) = r.filter(|r| r.is_active(now) && r.expires_at.is_none()) else { continue };
        if authorize(&r, &r.name, principal.as_ref()).is_ok() {
            ids.extend(models.into_iter().filter(|m| r.models.iter().any(|x| x == m)).map(str::to_string));
        }
    }
    Ok(json_answer(crate::models::list_body(ids)))
}

fn json_answer(body: Vec<u8>) -> http::Response<Vec<u8>> {
    let mut res = http::Response::new(body);
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    res.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    res
}

/// What every resolved request checks after RBAC: the body size, then the reads planning needs.
#[allow(clippy::too_many_arguments)]
async fn finish<S: RouteSource>(
    cfg: &Config,
    store: &S,
    parts: &Parts,
    mut route: Route,
    key: String,
    rest: String,
    prefix: String,
    principal: Option<Principal>,
) -> Result<Resolution> {
    if let Some(len) = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
        let len: u64 = len.trim().parse().map_err(|_| Error::InvalidRequest("malformed Content-Length".into()))?;
        if len > route.max_body_bytes {
            return Err(Error::PayloadTooLarge { limit: route.max_body_bytes });
        }
    }
    // Routes written to storage directly (Terraform) bypass the admin API's checks: an endpoint
    // the upstream policy refuses is never used. With none left, it is the usual 503.
    route.endpoints.retain(|e| cfg.upstreams.allows(e));
    // The leases, then (avoiding a down endpoint, or balancing by load, only matters when there
    // is another to go to) both health reads together.
    let endpoints = async {
        let mut leases = if route.expires_at.is_none() { store.leases(&route.name).await? } else { Vec::new() };
        leases.retain(|e| cfg.upstreams.allows(e));
        let (down, loads) = if route.endpoints.len() + leases.len() > 1 {
            futures_util::future::try_join(store.down_endpoints(&key), store.loads(&key)).await?
        } else {
            (Vec::new(), crate::load::Loads::new())
        };
        Ok((leases, down, loads))
    };
    // The caller's token budgets (its token's, its service's, its contract's), read alongside.
    let budget_keys = crate::budget::keys_for(principal.as_ref());
    let budgets = futures_util::future::try_join_all(budget_keys.iter().map(|k| store.budget(k)));
    let ((leases, down, loads), found) = futures_util::future::try_join(endpoints, budgets).await?;
    let budgets = budget_keys.into_iter().zip(found).filter_map(|(k, b)| b.map(|b| (k, b))).collect();
    let upstream_key = route.upstream_api_key_secret.as_deref().and_then(|name| cfg.upstream_secrets.get(name));
    Ok(Resolution::Route(Box::new(Resolved { route, key, rest, prefix, principal, leases, down, loads, budgets, upstream_key })))
}

/// The part of the decision that needs no store: balancing and the forwarding plan.
fn plan(parts: &Parts, r: Resolved, ctx: &RequestContext<'_>) -> Result<ForwardPlan> {
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .unwrap_or(ctx.new_request_id)
        .to_string();

    // A `usage: "always"` route asks for a stream's usage when the client did not; only a body
    // seen whole (at most the peek) can be rewritten.
    let usage_body = match ctx.body_peek {
        Some((body, true)) if r.route.usage == crate::usage::UsageMode::Always => crate::usage::ask_for_usage(body),
        _ => None,
    };

    // Endpoints: the route's own plus live leases (a lease never shadows a defined endpoint).
    let mut endpoints: Vec<Endpoint> = r.route.endpoints.clone();
    for lease in r.leases {
        if !endpoints.iter().any(|e| e.id == lease.id) {
            endpoints.push(lease);
        }
    }
    let endpoints =
        crate::health::exclude_down(&endpoints, ctx.now, |id| r.down.iter().any(|d| d == id));
    let key = balance_key(
        &r.route,
        parts,
        r.principal.as_ref(),
        &request_id,
        ctx.body_peek,
    );
    let avoid = |id: &str| ctx.failures.is_avoided(&r.key, id, ctx.now);
    let load = |id: &str| crate::load::estimate(r.loads.get(id), ctx.in_flight.get(&r.key, id), ctx.now);
    let order = if key.spread {
        Balancer::spread
    } else {
        Balancer::rank_bounded
    };
    let ranked = order(
        &key.key,
        &endpoints,
        ctx.now,
        &avoid,
        &load,
        r.route.affinity.factor(),
    );
    if ranked.is_empty() {
        return Err(Error::NoLiveEndpoint);
    }
    let upstream_key = match (&r.route.upstream_api_key_secret, r.upstream_key) {
        (Some(name), None) => return Err(Error::Internal(format!("secret `{name}` is not configured"))),
        (_, key) => key,
    };
    let query = parts.uri.query();
    let upstreams = ranked
        .into_iter()
        .map(|e| Upstream { endpoint_id: e.id.clone(), url: upstream_url(&e.url, &r.rest, query), base: e.url.clone(), via: e.via.clone() })
        .collect();
    let mut headers = request_headers(
        &parts.headers,
        &request_id,
        ctx.client_ip,
        ctx.proto,
        upstream_key.as_ref().map(crate::config::SecretValue::expose),
        r.route.affinity.cookie.as_deref(),
    );
    ctx.trace.inject(&mut headers);
    Ok(ForwardPlan {
        route: r.key,
        upstreams,
        headers,
        connect_timeout_ms: r.route.timeouts.connect_ms,
        response_timeout_ms: r.route.timeouts.response_ms,
        idle_timeout_ms: r.route.timeouts.idle_ms,
        rate_limit: crate::ratelimit::limit_for(&r.route, r.principal.as_ref()),
        max_body_bytes: r.route.max_body_bytes,
        request_id,
        trace_id: ctx.trace.trace_id.clone(),
        partner: r.principal.as_ref().and_then(|p| p.partner.clone()),
        token_id: r.principal.map(|p| p.token_id),
        public_prefix: r.prefix,
        sandbox: r.route.sandbox,
        forward_set_cookie: r.route.forward_set_cookie,
        strip_usage: usage_body.is_some(),
        body: usage_body.map(bytes::Bytes::from),
        budgets: r.budgets,
    })
}

/// Decides what to do with a request whose body's start (if read) is `ctx.body_peek`:
/// [`resolve`], [`resolve_model`] under `/v1/`, then [`Resolution::decide`].
pub async fn decide<S: RouteSource>(cfg: &Config, store: &S, parts: &Parts, ctx: &RequestContext<'_>) -> Result<Decision> {
    let resolution = match resolve(cfg, store, parts, ctx.now).await? {
        Resolution::NeedsModel => {
            let (peek, complete) = ctx.body_peek.unwrap_or((&[], true));
            resolve_model(cfg, store, parts, ctx.now, peek, complete).await?
        }
        other => other,
    };
    resolution.decide(parts, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crate's test configuration, with the secret the test route names (`VLLM_KEY`).
    fn test_config() -> Config {
        let secrets = crate::config::UpstreamSecrets::from_settings([("VLLM_KEY".to_string(), "upstream-secret".to_string())]);
        crate::config::tests::test_config().with_upstream_secrets(secrets)
    }
    use crate::store::{AdminStore, MemoryStore, MetricsSink};
    use crate::token::{TokenIssuer, TokenKind, TokenRequest};
    use futures_executor::block_on;

    const NOW: u64 = 1_800_000_000;

    fn token(cfg: &Config, sub: &str, groups: &[&str]) -> String {
        let req = TokenRequest {
            rate_limit_rpm: None,
            subject: sub.into(),
            kind: TokenKind::User,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            routes: None,
            ttl_seconds: Some(600),
            description: String::new(),
            metadata: Default::default(),
            registrar: None,
        };
        TokenIssuer::new(cfg).issue(&req, NOW, format!("tok_{sub}")).unwrap().0
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri).header("host", "gw.example.com");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn store_with_route() -> MemoryStore {
        let s = MemoryStore::default();
        let mut r = Route::new("llama", vec![Endpoint::new("a", "http://10.0.0.1:8000"), Endpoint::new("b", "http://10.0.0.2:8000")]);
        r.auth.groups = vec!["ml-team".into()];
        r.upstream_api_key_secret = Some("VLLM_KEY".into());
        block_on(s.put_route(&r, None)).unwrap();
        s
    }

    /// Decides `p` as an adapter would, with this request's in-flight counts and body peek.
    fn decide_in(cfg: &Config, s: &MemoryStore, p: &Parts, in_flight: &crate::load::InFlight, body_peek: Option<(&[u8], bool)>) -> Result<Decision> {
        let trace = crate::trace::Trace::from_headers(&p.headers, &[7; 24]);
        let ctx = RequestContext {
            now: NOW,
            client_ip: Some("203.0.113.9"),
            proto: "https",
            new_request_id: "rid-new",
            trace: &trace,
            failures: &Default::default(),
            in_flight,
            body_peek,
        };
        block_on(super::decide(cfg, s, p, &ctx))
    }

    fn decide(cfg: &Config, s: &MemoryStore, p: &Parts) -> Result<Decision> {
        decide_in(cfg, s, p, &Default::default(), None)
    }

    /// [`decide`] with requests in flight (by endpoint id of route `llama`) and a body peek.
    fn decide_with(cfg: &Config, s: &MemoryStore, p: &Parts, load: &dyn Fn(&str) -> u64, body_peek: Option<(&[u8], bool)>) -> Result<Decision> {
        let mut in_flight = crate::load::InFlight::default();
        for id in ["a", "b", "c"] {
            for _ in 0..load(id) {
                in_flight.start("llama", id);
            }
        }
        decide_in(cfg, s, p, &in_flight, body_peek)
    }

    fn token_of(cfg: &Config, sub: &str, kind: TokenKind) -> String {
        let req = TokenRequest {
            subject: sub.into(),
            kind,
            groups: vec!["ml-team".into()],
            ..registrar_base()
        };
        let t = TokenIssuer::new(cfg)
            .issue(&req, NOW, format!("tok_{sub}"))
            .unwrap()
            .0;
        format!("Bearer {t}")
    }

    fn order(p: &ForwardPlan) -> Vec<String> {
        p.upstreams.iter().map(|u| u.endpoint_id.clone()).collect()
    }

    fn principal(sub: &str, kind: TokenKind) -> Principal {
        Principal {
            rate_limit_rpm: None,
            token_id: format!("tok_{sub}"),
            subject: sub.into(),
            kind,
            groups: vec![],
            routes: None,
            expires_at: 0,
            issued_at: 0,
            provider: None,
            partner: None,
            contract: None,
            registrar: None,
        }
    }

    #[test]
    fn the_fallback_key_depends_on_the_token_kind() {
        let mut route = Route::new("r", vec![]);
        let p = parts("/r/x", &[]);
        let user = principal("alice", TokenKind::User);
        let service = principal("batch", TokenKind::Service);
        let partner = principal("acme", TokenKind::Partner);
        let spread = BalanceKey {
            key: "r\u{0}rid".into(),
            spread: true,
        };
        assert_eq!(
            balance_key(&route, &p, Some(&user), "rid", None),
            BalanceKey {
                key: "t\u{0}tok_alice".into(),
                spread: false
            }
        );
        assert_eq!(balance_key(&route, &p, Some(&service), "rid", None), spread);
        assert_eq!(balance_key(&route, &p, Some(&partner), "rid", None), spread);
        assert_eq!(balance_key(&route, &p, None, "rid", None), spread);
        // A session id wins over every fallback.
        let with_session = parts("/r/x", &[("x-session-id", "s1")]);
        assert!(!balance_key(&route, &with_session, Some(&service), "rid", None).spread);
        route.affinity.fallback = Some(AffinityFallback::Token);
        assert_eq!(
            balance_key(&route, &p, Some(&service), "rid", None).key,
            "t\u{0}tok_batch"
        );
        assert_eq!(
            balance_key(&route, &p, None, "rid", None),
            spread,
            "no token to key on"
        );
        route.affinity.fallback = Some(AffinityFallback::Spread);
        assert_eq!(balance_key(&route, &p, Some(&user), "rid", None), spread);
    }

    #[test]
    fn the_prefix_fallback_keys_by_the_prompt_across_callers() {
        let mut route = Route::new("r", vec![]);
        route.affinity.fallback = Some(AffinityFallback::Prefix);
        let p = parts("/r/v1/chat/completions", &[]);
        let first: &[u8] = br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"U"}]}"#;
        let later: &[u8] = br#"{"stream":true,"messages":[{"content":"S","role":"system"},{"content":"U","role":"user"},
            {"role":"assistant","content":"A"},{"role":"user","content":"more"}]}"#;
        let (alice, bob) = (
            principal("alice", TokenKind::User),
            principal("bob", TokenKind::Service),
        );
        let a = balance_key(&route, &p, Some(&alice), "r1", Some((first, true)));
        let b = balance_key(&route, &p, Some(&bob), "r2", Some((later, true)));
        assert_eq!(a, b);
        assert!(!a.spread && a.key.starts_with("p\u{0}"));
        for body in [None, Some((&b"{not json"[..], true))] {
            assert_eq!(
                balance_key(&route, &p, Some(&alice), "r1", body),
                BalanceKey {
                    key: "r\u{0}r1".into(),
                    spread: true
                }
            );
        }
    }

    #[test]
    fn an_endpoint_that_failed_here_recently_is_tried_last_until_its_time_is_up() {
        let cfg = test_config();
        let s = store_with_route();
        let p = parts("/llama/v1/models", &[("authorization", &token_of(&cfg, "alice", TokenKind::User)), ("x-session-id", "s1")]);
        let with = |failures: &crate::forward::FailureMemory, now: u64| {
            let ctx = RequestContext {
                now,
                client_ip: None,
                proto: "https",
                new_request_id: "rid-new",
                trace: &crate::trace::Trace::from_headers(&p.headers, &[7; 24]),
                failures,
                in_flight: &Default::default(),
                body_peek: None,
            };
            order(&plan(block_on(super::decide(&cfg, &s, &p, &ctx))))
        };
        let home = with(&Default::default(), NOW);
        let mut failures = crate::forward::FailureMemory::default();
        failures.mark_failed("llama", &home[0], NOW);
        let avoiding = with(&failures, NOW);
        assert_eq!(avoiding.last(), Some(&home[0]), "{home:?} → {avoiding:?}");
        assert_eq!(avoiding.len(), home.len(), "still tried, last");
        // A failure on another route's endpoint of the same id changes nothing here.
        let mut elsewhere = crate::forward::FailureMemory::default();
        elsewhere.mark_failed("other", &home[0], NOW);
        assert_eq!(with(&elsewhere, NOW), home);
        assert_eq!(with(&failures, NOW + crate::forward::AVOID_SECONDS), home, "remembered only for a while");
    }

    #[test]
    fn loads_move_sessions_off_a_saturated_endpoint_and_spread_keyless_requests() {
        let cfg = test_config();
        let s = store_with_route();
        let user = token_of(&cfg, "alice", TokenKind::User);
        let zero = |_: &str| 0;
        let session = |sid: &str| {
            parts(
                "/llama/v1/models",
                &[("authorization", &user), ("x-session-id", sid)],
            )
        };
        let on_a = (0..40)
            .map(|i| format!("s{i}"))
            .find(|sid| order(&plan(decide_with(&cfg, &s, &session(sid), &zero, None)))[0] == "a")
            .unwrap();
        let busy_a = |id: &str| if id == "a" { 10 } else { 0 };
        assert_eq!(
            order(&plan(decide_with(&cfg, &s, &session(&on_a), &busy_a, None))),
            ["b", "a"],
            "a saturated: the session spills, a still tried on failover"
        );
        let slightly = |id: &str| if id == "a" { 1 } else { 0 };
        assert_eq!(
            order(&plan(decide_with(
                &cfg,
                &s,
                &session(&on_a),
                &slightly,
                None
            )))[0],
            "a",
            "under its bound, a keeps its sessions"
        );
        // Keyless service traffic: the less loaded of the two.
        let service = token_of(&cfg, "batch", TokenKind::Service);
        let keyless = parts("/llama/v1/models", &[("authorization", &service)]);
        let first = order(&plan(decide_with(&cfg, &s, &keyless, &zero, None)))[0].clone();
        let other = if first == "a" { "b" } else { "a" };
        let first_busier = |id: &str| if id == first { 1 } else { 0 };
        assert_eq!(
            order(&plan(decide_with(&cfg, &s, &keyless, &first_busier, None)))[0],
            other
        );
    }

    #[test]
    fn the_adapter_peeks_at_the_body_only_for_prefix_routes_without_a_session() {
        let cfg = test_config();
        let s = store_with_route();
        let user = token_of(&cfg, "alice", TokenKind::User);
        let needs = |s: &MemoryStore, headers: &[(&str, &str)]| {
            let p = parts("/llama/v1/chat/completions", headers);
            match block_on(resolve(&cfg, s, &p, NOW)).unwrap() {
                Resolution::Route(r) => r.needs_body_peek(&p),
                other => unreachable!("{other:?}"),
            }
        };
        assert!(!needs(&s, &[("authorization", &user)]));
        let mut r = block_on(s.route("llama")).unwrap().unwrap();
        r.affinity.fallback = Some(AffinityFallback::Prefix);
        block_on(s.put_route(&r, None)).unwrap();
        assert!(needs(&s, &[("authorization", &user)]));
        assert!(!needs(
            &s,
            &[("authorization", &user), ("x-session-id", "s1")]
        ));
        // The body's prefix decides where the request goes: the same one for two callers.
        let body: &[u8] =
            br#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"U"}]}"#;
        let service = token_of(&cfg, "batch", TokenKind::Service);
        let zero = |_: &str| 0;
        let mut firsts = std::collections::HashSet::new();
        for (i, tok) in [&user, &service].into_iter().cycle().take(16).enumerate() {
            let rid = format!("rid-{i}");
            let p = parts(
                "/llama/v1/chat/completions",
                &[("authorization", tok), ("x-request-id", &rid)],
            );
            firsts.insert(
                order(&plan(decide_with(&cfg, &s, &p, &zero, Some((body, true)))))[0].clone(),
            );
        }
        assert_eq!(firsts.len(), 1);
    }

    fn plan(r: Result<Decision>) -> ForwardPlan {
        match r {
            Ok(Decision::Forward(p)) => *p,
            other => panic!("not a plan: {other:?}"),
        }
    }

    #[test]
    fn registrar_tokens_reach_no_route() {
        let cfg = test_config();
        let s = store_with_route();
        let mut public = Route::new("pub", vec![Endpoint::new("a", "http://10.0.0.1:8000")]);
        public.auth.required = false;
        block_on(s.put_route(&public, None)).unwrap();
        let req = TokenRequest {
            subject: "gpu-1".into(),
            kind: TokenKind::Registrar,
            routes: Some(vec!["llama".into(), "pub".into()]),
            registrar: Some(serde_json::from_str(r#"{"hosts": ["10.0.0.0/8"]}"#).unwrap()),
            ..registrar_base()
        };
        let t = format!("Bearer {}", TokenIssuer::new(&cfg).issue(&req, NOW, "tok_reg".into()).unwrap().0);
        for path in ["/llama/v1/models", "/pub/v1/models"] {
            assert!(matches!(decide(&cfg, &s, &parts(path, &[("authorization", &t)])), Err(Error::Forbidden(_))), "{path}");
        }
    }

    fn registrar_base() -> TokenRequest {
        TokenRequest {
            rate_limit_rpm: None,
            subject: String::new(),
            kind: TokenKind::User,
            groups: vec![],
            routes: None,
            ttl_seconds: Some(600),
            description: String::new(),
            metadata: Default::default(),
            registrar: None,
        }
    }

    #[test]
    fn order_is_route_then_auth_then_rbac() {
        let cfg = test_config();
        let s = store_with_route();
        // Unknown route: 404 even without a token.
        assert!(matches!(decide(&cfg, &s, &parts("/nope/v1/models", &[])), Err(Error::NotFound(_))));
        assert_eq!(decide(&cfg, &s, &parts("/llama/v1/models", &[])).unwrap_err(), Error::MissingToken);
        let other = format!("Bearer {}", token(&cfg, "eve", &["other"]));
        assert!(matches!(decide(&cfg, &s, &parts("/llama/v1/models", &[("authorization", &other)])), Err(Error::Forbidden(_))));
        let ok = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let p = plan(decide(&cfg, &s, &parts("/llama/v1/models?x=1", &[("authorization", &ok)])));
        assert!(p.upstreams[0].url.ends_with("/v1/models?x=1"));
        assert_eq!(p.headers["authorization"], "Bearer upstream-secret");
        assert_eq!(p.request_id, "rid-new");
        assert_eq!(p.token_id.as_deref(), Some("tok_alice"));
    }

    #[test]
    fn the_access_record_is_one_json_object_with_no_secret_and_ids_replay() {
        let r = AccessRecord { request_id: "req_a", trace_id: Some("t1"), route: Some("llama"), endpoint: None, status: 200, latency_ms: 1.5, token_id: Some("tok_x") };
        let v: serde_json::Value = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"request_id": "req_a", "trace_id": "t1", "route": "llama", "endpoint": null, "status": 200, "latency_ms": 1.5, "token_id": "tok_x"}));
        // Without a trace id of its own (the Lambda's span carries it), the field is left out.
        let bare = serde_json::to_value(AccessRecord { trace_id: None, ..r }).unwrap();
        assert!(bare.get("trace_id").is_none());
        // Request ids: `req_` and 16 base32 characters, the same from the same source.
        use crate::token::IdSource;
        let id = crate::token::SeededIds::new(1).request_id();
        assert!(id.len() == 20 && id.starts_with("req_") && id[4..].bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{id}");
        assert_eq!(id, crate::token::SeededIds::new(1).request_id());
        assert!(is_valid_request_id(&id));
    }

    #[test]
    fn a_route_naming_a_secret_the_platform_lacks_is_an_internal_error() {
        let bare = crate::config::tests::test_config();
        let s = store_with_route();
        let ok = format!("Bearer {}", token(&bare, "alice", &["ml-team"]));
        let e = decide(&bare, &s, &parts("/llama/v1/models", &[("authorization", &ok)])).unwrap_err();
        assert_eq!(e, Error::Internal("secret `VLLM_KEY` is not configured".into()));
        assert_eq!(e.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        // The same route on a platform holding the secret sends it.
        let p = plan(decide(&test_config(), &s, &parts("/llama/v1/models", &[("authorization", &ok)])));
        assert_eq!(p.headers["authorization"], "Bearer upstream-secret");
    }

    #[test]
    fn the_trace_goes_upstream_with_the_gateway_as_parent() {
        let cfg = test_config();
        let s = store_with_route();
        let ok = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = plan(decide(
            &cfg,
            &s,
            &parts(
                "/llama/v1/models",
                &[
                    ("authorization", &ok),
                    ("traceparent", parent),
                    ("tracestate", "congo=t61"),
                ],
            ),
        ));
        assert_eq!(
            p.headers["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01"
        );
        assert_eq!(p.headers["tracestate"], "congo=t61");
        let p = plan(decide(
            &cfg,
            &s,
            &parts(
                "/llama/v1/models",
                &[
                    ("authorization", &ok),
                    ("traceparent", "junk"),
                    ("tracestate", "congo=t61"),
                ],
            ),
        ));
        assert_eq!(
            p.headers["traceparent"],
            format!("00-{}-{}-01", "07".repeat(16), "07".repeat(8))
        );
        assert!(
            !p.headers.contains_key("tracestate"),
            "no tracestate without a valid traceparent"
        );
    }

    #[test]
    fn endpoints_found_down_are_avoided_unless_all_are() {
        let cfg = test_config();
        let s = store_with_route();
        let auth = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let first = |s: &MemoryStore, session: &str| {
            let p = plan(decide(&cfg, s, &parts("/llama/v1/models", &[("authorization", &auth), ("x-session-id", session)])));
            p.upstreams.iter().map(|u| u.endpoint_id.clone()).collect::<Vec<_>>()
        };
        let sessions: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        assert!(sessions.iter().any(|x| first(&s, x)[0] == "a") && sessions.iter().any(|x| first(&s, x)[0] == "b"));
        block_on(s.put_down("llama", &["a".to_string()])).unwrap();
        for x in &sessions {
            assert_eq!(first(&s, x), vec!["b".to_string()], "a down endpoint is not tried");
        }
        block_on(s.put_down("llama", &["a".to_string(), "b".to_string()])).unwrap();
        assert_eq!(first(&s, "s1").len(), 2, "when every endpoint is down, all are tried rather than none");
    }

    #[test]
    fn revoked_tokens_are_refused() {
        let cfg = test_config();
        let s = store_with_route();
        let t = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let mut rec = crate::store::TokenRecord { subject: "alice".into(), created_at: NOW, ..crate::fixtures::token_record("tok_alice", NOW + 600) };
        rec.revoked_at = Some(NOW);
        block_on(s.revoke(&rec)).unwrap();
        assert_eq!(decide(&cfg, &s, &parts("/llama/x", &[("authorization", &t)])).unwrap_err(), Error::TokenRevoked);
    }

    #[test]
    fn session_header_is_scoped_to_the_subject() {
        let cfg = test_config();
        let route = Route::new("r", vec![]);
        let a = Principal { rate_limit_rpm: None, token_id: "tok_1".into(), subject: "alice".into(), kind: TokenKind::User, groups: vec![], routes: None, expires_at: 0, issued_at: 0, provider: None, partner: None, contract: None, registrar: None };
        let b = Principal { subject: "bob".into(), ..a.clone() };
        let p = parts("/r/x", &[("x-session-id", "s1")]);
        assert_ne!(affinity_key(&route, &p, Some(&a), "r"), affinity_key(&route, &p, Some(&b), "r"));
        assert_eq!(affinity_key(&route, &p, Some(&a), "r1"), affinity_key(&route, &p, Some(&a), "r2"));
        let p = parts("/r/x", &[]);
        assert_eq!(affinity_key(&route, &p, Some(&a), "r"), "t\u{0}tok_1");
        let mut with_cookie = route.clone();
        with_cookie.affinity.cookie = Some("sid".into());
        let p = parts("/r/x", &[("cookie", "a=1; sid=zz")]);
        assert!(affinity_key(&with_cookie, &p, Some(&a), "r").ends_with("zz"));
        let _ = cfg;
    }

    #[test]
    fn disabled_and_leased_routes() {
        let cfg = test_config();
        let s = MemoryStore::default();
        let mut r = Route::new("pub", vec![]);
        r.auth.required = false;
        block_on(s.put_route(&r, None)).unwrap();
        assert_eq!(decide(&cfg, &s, &parts("/pub/x", &[])).unwrap_err(), Error::NoLiveEndpoint);
        let mut lease = Endpoint::new("l1", "http://10.0.0.9:8000");
        lease.lease_expires_at = Some(NOW + 30);
        block_on(s.put_lease("pub", &lease)).unwrap();
        assert_eq!(plan(decide(&cfg, &s, &parts("/pub/x", &[]))).upstreams[0].endpoint_id, "l1");
        lease.lease_expires_at = Some(NOW);
        block_on(s.put_lease("pub", &lease)).unwrap();
        assert_eq!(decide(&cfg, &s, &parts("/pub/x", &[])).unwrap_err(), Error::NoLiveEndpoint);
        r.enabled = false;
        block_on(s.put_route(&r, None)).unwrap();
        assert!(matches!(decide(&cfg, &s, &parts("/pub/x", &[])), Err(Error::NotFound(_))));
    }

    #[test]
    fn limits_and_body_size() {
        let cfg = test_config();
        let s = store_with_route();
        let ok = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let big = "x".repeat(cfg.limits.max_header_bytes);
        assert!(matches!(decide(&cfg, &s, &parts("/llama/x", &[("x-big", &big)])), Err(Error::HeadersTooLarge(_))));
        let long = format!("/llama/{}", "a".repeat(cfg.limits.max_url_bytes));
        assert!(matches!(decide(&cfg, &s, &parts(&long, &[])), Err(Error::UriTooLong { .. })));
        let too_big = (10 * 1024 * 1024 + 1).to_string();
        assert!(matches!(
            decide(&cfg, &s, &parts("/llama/x", &[("authorization", &ok), ("content-length", &too_big)])),
            Err(Error::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn host_routes_take_every_path() {
        let cfg = test_config();
        let s = MemoryStore::default();
        let mut r = Route::new("hosted", vec![Endpoint::new("a", "http://10.0.0.1:8000")]);
        r.host = Some("gw.example.com".into());
        r.auth.required = false;
        block_on(s.put_route(&r, None)).unwrap();
        let p = plan(decide(&cfg, &s, &parts("/v1/models", &[])));
        assert_eq!(p.upstreams[0].url, "http://10.0.0.1:8000/v1/models");
        assert!(matches!(decide(&cfg, &s, &parts("/_gateway/routes", &[])), Ok(Decision::Admin(_))));
    }

    #[test]
    fn only_the_affinity_cookie_goes_upstream() {
        let cfg = test_config();
        let s = MemoryStore::default();
        let mut r = Route::new("pub", vec![Endpoint::new("a", "http://10.0.0.1:8000")]);
        r.auth.required = false;
        r.affinity.cookie = Some("sid".into());
        block_on(s.put_route(&r, None)).unwrap();
        let p = plan(decide(&cfg, &s, &parts("/pub/x", &[("cookie", "dashboard=secret; sid=zz"), ("x-forwarded-host", "evil")])));
        assert_eq!(p.headers.get_all("cookie").iter().collect::<Vec<_>>(), ["sid=zz"]);
        assert!(!p.headers.contains_key("x-forwarded-host"));
        r.affinity.cookie = None;
        block_on(s.put_route(&r, Some(&r.clone()))).unwrap();
        let p = plan(decide(&cfg, &s, &parts("/pub/x", &[("cookie", "dashboard=secret; sid=zz")])));
        assert!(!p.headers.contains_key("cookie"));
    }

    #[test]
    fn endpoints_the_upstream_policy_refuses_are_never_used() {
        let mut cfg = test_config();
        let s = MemoryStore::default();
        // As Terraform could write it, straight to storage.
        let mut r = Route::new("tf", vec![
            Endpoint::new("meta", "http://169.254.169.254/latest"),
            Endpoint::new("loop", "http://0x7f.1:8000"),
            Endpoint::new("ok", "http://10.0.0.1:8000"),
        ]);
        r.auth.required = false;
        r.managed_by = Some("terraform".into());
        let mut tunnel = Endpoint::new("tunnel", "http://10.0.0.2:8000");
        tunnel.via = Some("VPC_PROD".into());
        r.endpoints.push(tunnel);
        block_on(s.put_route(&r, None)).unwrap();
        let mut lease = Endpoint::new("lease", "http://[::ffff:127.0.0.1]:8000");
        lease.lease_expires_at = Some(NOW + 30);
        block_on(s.put_lease("tf", &lease)).unwrap();
        let ids = |cfg: &Config| {
            let mut ids: Vec<String> = plan(decide(cfg, &s, &parts("/tf/x", &[]))).upstreams.into_iter().map(|u| u.endpoint_id).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&cfg), ["ok"]);
        cfg.upstreams.via_bindings = vec!["VPC_PROD".into()];
        assert_eq!(ids(&cfg), ["ok", "tunnel"]);
        cfg.upstreams.allow_local = true;
        assert_eq!(ids(&cfg), ["lease", "loop", "meta", "ok", "tunnel"]);
        cfg.upstreams = Default::default();
        r.endpoints.retain(|e| e.id != "ok");
        block_on(s.put_route(&r, None)).unwrap();
        assert_eq!(decide(&cfg, &s, &parts("/tf/x", &[])).unwrap_err(), Error::NoLiveEndpoint, "none left: 503");
    }

    fn parts_on(host: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut p = parts(uri, headers);
        p.headers.insert("host", host.parse().unwrap());
        p
    }

    #[test]
    fn service_worker_scripts_are_refused_on_the_data_plane() {
        let cfg = test_config();
        let s = store_with_route();
        let ok = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        for v in ["script", "Script", " script "] {
            let e = decide(&cfg, &s, &parts("/llama/sw.js", &[("authorization", &ok), ("service-worker", v)])).unwrap_err();
            assert_eq!(e, Error::ServiceWorkerRefused, "{v}");
            assert_eq!((e.status().as_u16(), e.code()), (403, "service_worker_refused"));
        }
        assert!(matches!(decide(&cfg, &s, &parts("/llama/sw.js", &[("authorization", &ok)])), Ok(Decision::Forward(_))));
        assert!(matches!(decide(&cfg, &s, &parts("/_gateway/dashboard", &[("service-worker", "script")])), Ok(Decision::Admin(_))), "admin paths are unaffected");
    }

    #[test]
    fn the_admin_host_alone_answers_the_admin_api_and_never_proxies() {
        let mut cfg = test_config();
        let s = store_with_route();
        let mut hosted = Route::new("hosted", vec![Endpoint::new("a", "http://10.0.0.1:8000")]);
        hosted.host = Some("admin.example.com".into());
        hosted.auth.required = false;
        block_on(s.put_route(&hosted, None)).unwrap();
        let ok = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let admin = |host: &str, path: &str| decide(&cfg, &s, &parts_on(host, path, &[]));
        // Unset: every host answers both, as before (the host route takes its host).
        assert!(matches!(admin("gw.example.com", "/_gateway/routes"), Ok(Decision::Admin(_))));
        assert!(matches!(admin("admin.example.com", "/v1/models"), Ok(Decision::Forward(_))));

        cfg.admin_host = Some("admin.example.com".into());
        let admin = |host: &str, path: &str| decide(&cfg, &s, &parts_on(host, path, &[]));
        assert!(matches!(admin("admin.example.com", "/_gateway/routes"), Ok(Decision::Admin(_))));
        assert!(matches!(admin("Admin.Example.com:443", "/_gateway/dashboard"), Ok(Decision::Admin(_))));
        for path in ["/_gateway/routes", "/_gateway/dashboard", "/_gateway/me"] {
            assert!(matches!(admin("gw.example.com", path), Err(Error::NotFound(_))), "{path}");
        }
        assert!(matches!(admin("gw.example.com", "/_gateway/healthz"), Ok(Decision::Admin(_))), "healthz answers on every host");
        for path in ["/llama/v1/models", "/v1/models", "/e/abcdefghijklmnop/x"] {
            assert!(matches!(admin("admin.example.com", path), Err(Error::NotFound(_))), "{path}");
        }
        let p = parts_on("gw.example.com", "/llama/v1/models", &[("authorization", &ok)]);
        assert!(matches!(decide(&cfg, &s, &p), Ok(Decision::Forward(_))), "the data plane still answers elsewhere");
    }

    #[test]
    fn with_an_origin_secret_only_the_front_door_may_call_and_its_host_is_trusted() {
        let secret = "0123456789abcdef0123456789abcdef-front";
        let with = |v: Option<&str>| Config::from_lookup(&|k| match k {
            "GATEWAY_SIGNING_KEYS" => Some(r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#.to_string()),
            "GATEWAY_ORIGIN_SECRET" => v.map(str::to_string),
            _ => None,
        });
        for bad in ["short", "has a space in it 0123456789abcdef0123456789", &"x".repeat(257)] {
            let e = with(Some(bad)).expect_err(bad);
            assert_eq!(e.setting, "GATEWAY_ORIGIN_SECRET");
            assert!(!e.message.contains(bad), "the value is never echoed");
        }
        let cfg = with(Some(secret)).expect("config");
        assert!(!format!("{cfg:?}").contains(secret), "never printed");
        let s = store_with_route();
        let mut hosted = Route::new("hosted", vec![Endpoint::new("h", "http://10.0.0.2:8000")]);
        hosted.host = Some("llama.models.example.com".into());
        hosted.auth.required = false;
        block_on(s.put_route(&hosted, None)).unwrap();

        // Straight to the Function URL: refused, with or without a wrong secret or a host claim.
        let direct = [
            vec![],
            vec![("x-origin-verify", "0123456789abcdef0123456789abcdef-frond")],
            vec![("x-origin-verify", "")],
            vec![("x-forwarded-host", "llama.models.example.com")],
        ];
        for h in direct {
            let p = parts_on("abc.lambda-url.us-east-1.on.aws", "/hosted/v1/models", &h);
            assert!(matches!(check_transport(&cfg, "https", &p), Err(Error::Forbidden(_))), "{h:?}");
        }
        let twice = parts_on("x", "/", &[("x-origin-verify", secret), ("x-origin-verify", secret)]);
        assert!(check_transport(&cfg, "https", &twice).is_err(), "one value only");

        // Through the front door: the viewer's host picks the host route; the secret stays here.
        let front = parts_on("abc.lambda-url.us-east-1.on.aws", "/v1/models", &[("x-origin-verify", secret), ("x-forwarded-host", "LLAMA.models.example.com:443")]);
        assert_eq!(check_transport(&cfg, "https", &front), Ok(Transport::Proceed));
        let plan = plan(decide(&cfg, &s, &front));
        assert_eq!(plan.upstreams[0].url, "http://10.0.0.2:8000/v1/models");
        assert!(!plan.headers.contains_key("x-origin-verify") && !plan.headers.contains_key("x-forwarded-host"));

        // Without the setting, `x-forwarded-host` is the client's word and never trusted.
        let open = test_config();
        let p = parts_on("gw.example.com", "/hosted-path/x", &[("x-forwarded-host", "llama.models.example.com")]);
        assert_eq!(check_transport(&open, "https", &p), Ok(Transport::Proceed));
        assert!(matches!(decide(&open, &s, &p), Err(Error::NotFound(_))), "no host route from a client's header");
    }

    /// Two routes serving models: `llama` (group ml-team) and `mistral` (group other-team).
    fn store_with_models() -> MemoryStore {
        let s = store_with_route();
        let mut llama = block_on(s.route("llama")).unwrap().unwrap();
        llama.models = vec!["llama-3.1-8b".into(), "llama".into()];
        block_on(s.put_route(&llama, None)).unwrap();
        let mut mistral = Route::new("mistral", vec![Endpoint::new("m", "http://10.0.0.7:8000")]);
        mistral.models = vec!["mistral-7b".into()];
        mistral.auth.groups = vec!["other-team".into()];
        block_on(s.put_route(&mistral, None)).unwrap();
        let mut public = Route::new("open", vec![Endpoint::new("o", "http://10.0.0.8:8000")]);
        public.models = vec!["tiny".into()];
        public.auth.required = false;
        block_on(s.put_route(&public, None)).unwrap();
        s
    }

    fn by_model(cfg: &Config, s: &MemoryStore, headers: &[(&str, &str)], body: &str) -> Result<Decision> {
        let mut p = parts("/v1/chat/completions", headers);
        p.method = http::Method::POST;
        let ctx = RequestContext {
            now: NOW,
            client_ip: None,
            proto: "https",
            new_request_id: "req_1",
            trace: &crate::trace::Trace::from_headers(&p.headers, &[7; 24]),
            failures: &Default::default(),
            in_flight: &Default::default(),
            body_peek: Some((body.as_bytes(), true)),
        };
        block_on(super::decide(cfg, s, &p, &ctx))
    }

    #[test]
    fn v1_routes_by_the_bodys_model_with_rbac_and_one_404_for_unknown_and_forbidden() {
        let cfg = test_config();
        let s = store_with_models();
        let alice = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let auth = [("authorization", alice.as_str())];
        let p = plan(by_model(&cfg, &s, &auth, r#"{"model": "llama-3.1-8b", "messages": []}"#));
        assert_eq!(p.route, "llama");
        assert!(p.upstreams.iter().all(|u| u.url.ends_with(":8000/v1/chat/completions")), "the whole path goes upstream: {:?}", p.upstreams);
        assert_eq!(plan(by_model(&cfg, &s, &auth, r#"{"model": "llama"}"#)).route, "llama", "an alias");
        assert_eq!(plan(by_model(&cfg, &s, &[], r#"{"model": "tiny"}"#)).route, "open", "a public route needs no token");

        let unknown = by_model(&cfg, &s, &auth, r#"{"model": "gpt-9"}"#).unwrap_err();
        let forbidden = by_model(&cfg, &s, &auth, r#"{"model": "mistral-7b"}"#).unwrap_err();
        let anonymous = by_model(&cfg, &s, &[], r#"{"model": "mistral-7b"}"#).unwrap_err();
        for (e, m) in [(&unknown, "gpt-9"), (&forbidden, "mistral-7b"), (&anonymous, "mistral-7b")] {
            assert_eq!(*e, Error::ModelNotFound(m.into()));
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!((e.status().as_u16(), v["error"]["code"].as_str(), v["error"]["type"].as_str(), v["error"]["param"].as_str()), (404, Some("model_not_found"), Some("invalid_request_error"), Some("model")));
        }
        assert_eq!(unknown.body().len() - "gpt-9".len(), forbidden.body().len() - "mistral-7b".len(), "the same answer either way");
        assert!(matches!(by_model(&cfg, &s, &auth, r#"{"messages": []}"#), Err(Error::BadRequest { ref field, .. }) if field == "model"));
        let bad = format!("Bearer {}x", token(&cfg, "alice", &["ml-team"]));
        assert!(matches!(by_model(&cfg, &s, &[("authorization", &bad)], r#"{"model": "llama"}"#), Err(Error::InvalidToken(_))), "a bad token is still a 401");
        // A disabled route's models are gone too.
        let mut llama = block_on(s.route("llama")).unwrap().unwrap();
        llama.enabled = false;
        block_on(s.put_route(&llama, None)).unwrap();
        assert_eq!(by_model(&cfg, &s, &auth, r#"{"model": "llama"}"#).unwrap_err(), Error::ModelNotFound("llama".into()));
    }

    #[test]
    fn the_model_list_is_what_the_caller_may_use() {
        let cfg = test_config();
        let s = store_with_models();
        let list = |headers: &[(&str, &str)]| -> Vec<String> {
            let p = parts("/v1/models", headers);
            match block_on(resolve(&cfg, &s, &p, NOW)).unwrap() {
                Resolution::Answer(res) => {
                    let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
                    assert_eq!(v["object"], "list");
                    v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
                }
                other => panic!("{other:?}"),
            }
        };
        let alice = format!("Bearer {}", token(&cfg, "alice", &["ml-team"]));
        let bob = format!("Bearer {}", token(&cfg, "bob", &["other-team", "ml-team"]));
        assert_eq!(list(&[("authorization", &alice)]), ["llama", "llama-3.1-8b", "tiny"]);
        assert_eq!(list(&[("authorization", &bob)]), ["llama", "llama-3.1-8b", "mistral-7b", "tiny"]);
        assert_eq!(list(&[]), ["tiny"], "anonymous callers see public routes' models only");
        let one = |id: &str| {
            let p = parts(&format!("/v1/models/{id}"), &[("authorization", &alice)]);
            block_on(resolve(&cfg, &s, &p, NOW))
        };
        assert!(matches!(one("llama-3.1-8b"), Ok(Resolution::Answer(_))));
        assert!(matches!(one("mistral-7b"), Err(Error::ModelNotFound(_))));
        // POSTs under /v1 wait for the body.
        let mut post = parts("/v1/completions", &[]);
        post.method = http::Method::POST;
        assert!(matches!(block_on(resolve(&cfg, &s, &post, NOW)), Ok(Resolution::NeedsModel)));
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn plain_http_is_refused_or_redirected_and_hsts_is_sent() {
        let mut cfg = test_config();
        let get = parts("/llama/x?q=1", &[]);
        assert_eq!(check_transport(&cfg, "https", &get), Ok(Transport::Proceed));
        assert_eq!(check_transport(&cfg, "http", &get), Err(Error::HttpsRequired));
        assert!(security_headers(&cfg).iter().any(|(n, v)| *n == "strict-transport-security" && v.contains("max-age=")));
        cfg.redirect_http = true;
        assert_eq!(check_transport(&cfg, "http", &get), Ok(Transport::Redirect("https://gw.example.com/llama/x?q=1".into())));
        let mut post = parts("/llama/x", &[]);
        post.method = http::Method::POST;
        assert_eq!(check_transport(&cfg, "http", &post), Err(Error::HttpsRequired));
        cfg.allow_http = true;
        assert_eq!(check_transport(&cfg, "http", &post), Ok(Transport::Proceed));
        assert!(!security_headers(&cfg).iter().any(|(n, _)| *n == "strict-transport-security"));
    }
}
