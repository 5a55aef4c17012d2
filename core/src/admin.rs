//! The admin API: parse a call, authenticate and authorise its caller,
//! validate, write through the `Store`, and audit every write.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::rbac::authorize_admin;
use crate::registrar;
use crate::route::{is_valid_endpoint_id, is_valid_ephemeral_id, is_valid_route_name, Endpoint, Route};
use crate::identity::owner_of;
use crate::store::{AuditEntry, ServiceAccount, Store, TokenRecord};
use crate::token::{new_token_id, random_base32, Principal, TokenIssuer, TokenKind, TokenRequest};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest admin request body.
pub const MAX_ADMIN_BODY: usize = 1024 * 1024;
/// Shortest lease an endpoint may take.
pub const MIN_LEASE_SECONDS: u64 = 5;
/// Longest lease an endpoint may take.
pub const MAX_LEASE_SECONDS: u64 = 24 * 3600;
/// Longest life of a self-service token (and never more than `GATEWAY_MAX_TOKEN_TTL_SECONDS`).
pub const MAX_SELF_SERVICE_TTL: u64 = 30 * 24 * 3600;
/// Active self-service tokens one user may hold.
pub const MAX_SELF_SERVICE_TOKENS: usize = 25;

/// Self-service tokens one owner may be issued in any 24 hours, revoked ones included.
pub const MAX_SELF_SERVICE_ISSUES_PER_DAY: usize = 50;

const DAY: u64 = 24 * 3600;

/// How long a token record is kept after its token expired (listings show recent expiries).
pub const TOKEN_RECORD_GRACE: u64 = 30 * DAY;

/// How long a revoked token's record is kept (its revocation itself is kept until the token
/// expires): long enough to count against [`MAX_SELF_SERVICE_ISSUES_PER_DAY`].
pub const REVOKED_RECORD_KEEP: u64 = 2 * DAY;

/// The longest page of a listing, and the default.
pub const MAX_PAGE: usize = 1000;

/// A page of a listing: at most `limit` items whose key sorts after `cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items on the page, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// The key of the last item of the previous page (`next_cursor` of its answer).
    pub cursor: Option<String>,
}

impl Page {
    /// `limit` (1..=1000, default 1000) and `cursor` from the query string.
    pub fn parse(query: Option<&str>) -> Result<Page> {
        let limit = match query_param(query, "limit") {
            Some(l) => l.parse().ok().filter(|l| (1..=MAX_PAGE).contains(l)).ok_or_else(|| Error::bad_request("limit", format!("must be between 1 and {MAX_PAGE}")))?,
            None => MAX_PAGE,
        };
        let cursor = query_param(query, "cursor").filter(|c| !c.is_empty());
        if cursor.as_ref().is_some_and(|c| c.len() > 256) {
            return Err(Error::bad_request("cursor", "is not one this API gave"));
        }
        Ok(Page { limit, cursor })
    }

    /// Sorts `items` by `key`, keeps the page, and says where the next one starts (`None` at the end).
    pub fn take<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
        items.sort_by(|a, b| key(a).cmp(key(b)));
        if let Some(c) = &self.cursor {
            items.retain(|i| key(i) > c.as_str());
        }
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        let next = if more { items.last().map(|i| key(i).to_string()) } else { None };
        (items, next)
    }
}

/// True for a token record past keeping: expired beyond [`TOKEN_RECORD_GRACE`], or revoked
/// beyond [`REVOKED_RECORD_KEEP`]. Revocations themselves live on until their token expires.
pub fn record_expired(t: &TokenRecord, now: u64) -> bool {
    t.expires_at + TOKEN_RECORD_GRACE < now || t.revoked_at.is_some_and(|r| r + REVOKED_RECORD_KEEP < now)
}

/// Removes the token records past keeping ([`record_expired`]); returns how many. Run by
/// each deployment's scheduled job, so records never pile up in the state.
pub async fn prune_tokens<S: Store>(store: &S, now: u64) -> Result<usize> {
    let mut n = 0;
    for t in store.list_tokens().await?.into_iter().filter(|t| record_expired(t, now)) {
        store.delete_token(&t.id).await?;
        n += 1;
    }
    Ok(n)
}
/// Shortest life of an ephemeral route.
pub const MIN_EPHEMERAL_SECONDS: u64 = 5;
/// Longest life of an ephemeral route.
pub const MAX_EPHEMERAL_SECONDS: u64 = 7 * 24 * 3600;

/// One parsed admin call.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminCommand {
    /// `GET /routes?limit=&cursor=`
    ListRoutes(Page),
    /// `GET /routes/{name}`
    GetRoute(String),
    /// `PUT /routes/{name}`
    PutRoute(Box<Route>),
    /// `DELETE /routes/{name}`
    DeleteRoute(String),
    /// `PUT /routes/{name}/endpoints/{id}`
    PutEndpoint { route: String, endpoint: Endpoint, lease_seconds: u64 },
    /// `DELETE /routes/{name}/endpoints/{id}`
    DeleteEndpoint { route: String, id: String },
    /// `POST /ephemeral`
    CreateEphemeral(EphemeralRequest),
    /// `POST /tokens`
    IssueToken(TokenRequest),
    /// `GET /tokens?q=&limit=&cursor=`
    ListTokens { q: Option<String>, page: Page },
    /// `DELETE /tokens/{id}`
    RevokeToken(String),
    /// `POST /subjects/{subject}/revoke`: every token the subject holds now, IdP sign-ins and
    /// self-service tokens included.
    RevokeSubject(String),
    /// `GET /audit?before=&limit=`
    Audit { before: Option<u64>, limit: usize },
    /// `GET /metrics`
    Metrics,
    /// `GET /metrics/prometheus?per_token=1`: series per token only when asked for.
    MetricsPrometheus { per_token: bool },
    /// `POST /probes`: one round of health probes now.
    RunProbes,
    /// `GET /keys`: the signing keys and what each still has to verify.
    Keys,
    /// `GET /budgets`: every token budget with its use in the current windows.
    ListBudgets,
    /// `PUT /budgets/{tokens|service-accounts|contracts}/{id}`
    PutBudget { kind: crate::budget::BudgetKind, id: String, budget: crate::budget::TokenBudget },
    /// `DELETE /budgets/{kind}/{id}`
    DeleteBudget { kind: crate::budget::BudgetKind, id: String },
    /// `GET /me`
    Me,
    /// `GET /me/tokens?limit=&cursor=`
    MyTokens(Page),
    /// `GET /me/tokens/{id}`
    MyToken(String),
    /// `POST /me/tokens`
    IssueMyToken(ScopedTokenRequest),
    /// `DELETE /me/tokens/{id}`
    RevokeMyToken(String),
    /// `POST /service-accounts`
    CreateServiceAccount(ServiceAccountRequest),
    /// `GET /service-accounts?limit=&cursor=`
    ListServiceAccounts(Page),
    /// `GET /service-accounts/{name}`
    GetServiceAccount(String),
    /// `DELETE /service-accounts/{name}`
    DeleteServiceAccount(String),
    /// `POST /service-accounts/{name}/tokens`
    IssueServiceToken { account: String, req: ScopedTokenRequest },
}

/// Body of `POST /me/tokens` and `POST /service-accounts/{name}/tokens`: a
/// token for a principal that already exists, so no subject or kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedTokenRequest {
    /// Lifetime; required.
    pub ttl_seconds: Option<u64>,
    /// Self-service: a subset of the caller's groups (default all). Service accounts: not allowed.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Optional allow-list of routes.
    #[serde(default)]
    pub routes: Option<Vec<String>>,
    /// What the token is for.
    #[serde(default)]
    pub description: String,
    /// Requests per minute.
    #[serde(default)]
    pub rate_limit_rpm: Option<u32>,
}

/// Body of `POST /service-accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountRequest {
    /// Name (like a route name); the subject of its tokens.
    pub name: String,
    /// Groups its tokens carry.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The person or team answerable for it.
    pub owner: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// Body of `PUT /routes/{name}/endpoints/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Endpoint URL.
    pub url: String,
    /// Weight, default 1.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Lease length; the endpoint drops out when it ends.
    pub lease_seconds: Option<u64>,
    /// Workers VPC binding.
    #[serde(default)]
    pub via: Option<String>,
}

/// Body of `POST /ephemeral`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EphemeralRequest {
    /// Endpoint URL.
    pub url: String,
    /// Life of the route.
    pub ttl_seconds: Option<u64>,
    /// Groups allowed to call it.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Optional upstream secret name.
    #[serde(default)]
    pub upstream_api_key_secret: Option<String>,
}

/// An admin reply: status and JSON body, or another kind of document.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminReply {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body (when `document` is `None`).
    pub body: Value,
    /// A non-JSON answer (Prometheus text, the dashboard's files).
    pub document: Option<Document>,
}

/// A non-JSON admin answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Headers added to the response (the dashboard's CSP…).
    pub headers: &'static [(&'static str, &'static str)],
}

impl AdminReply {
    fn ok(body: Value) -> Self {
        AdminReply { status: StatusCode::OK, body, document: None }
    }
    fn with_status(status: StatusCode, body: Value) -> Self {
        AdminReply { status, body, document: None }
    }
    fn document(document: Document) -> Self {
        AdminReply { status: StatusCode::OK, body: Value::Null, document: Some(document) }
    }
    /// Serialises the reply as an HTTP response.
    pub fn into_response(self) -> http::Response<Vec<u8>> {
        let (bytes, content_type, extra) = match self.document {
            Some(d) => (d.bytes, d.content_type, d.headers),
            None => (serde_json::to_vec(&self.body).unwrap_or_default(), "application/json", &[][..]),
        };
        let mut res = http::Response::new(bytes);
        *res.status_mut() = self.status;
        res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        res.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        for (name, value) in extra {
            res.headers_mut().insert(*name, http::HeaderValue::from_static(value));
        }
        res
    }
}

fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T> {
    if body.len() > MAX_ADMIN_BODY {
        return Err(Error::PayloadTooLarge { limit: MAX_ADMIN_BODY as u64 });
    }
    // Objects only: serde also fills a struct from a JSON array, positionally, which would let
    // `PUT /routes/a` with `["b"]` write route `b` past the path-name check (found by fuzzing).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::bad_request("body", "must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(decode_error)?;
    de.end().map_err(|e| Error::bad_request("body", e.to_string()))?;
    Ok(value)
}

/// A body that does not decode, as a 400 naming the field. serde's message names an unknown
/// or missing field (`unknown field `x``) without echoing values; for a value of the wrong
/// kind, the path names the field (`affinity.fallback`), never the value.
fn decode_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let msg = e.inner().to_string();
    let field = match msg.split('`').nth(1) {
        Some(name) if msg.starts_with("unknown field") || msg.starts_with("missing field") => name.to_string(),
        _ if path != "." => path,
        _ => "body".to_string(),
    };
    Error::bad_request(field, msg)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

impl AdminCommand {
    /// Parses an admin call from its method, the path segments after `_gateway`, query and body.
    pub fn parse(method: &Method, segs: &[String], query: Option<&str>, body: &[u8]) -> Result<AdminCommand> {
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let route_name = |n: &str| -> Result<String> {
            if is_valid_route_name(n) {
                Ok(n.to_string())
            } else {
                Err(Error::bad_request("name", "must match ^[a-z0-9][a-z0-9-]{0,62}$ and not be reserved"))
            }
        };
        match (method, s.as_slice()) {
            (&Method::GET, ["routes"]) => Ok(AdminCommand::ListRoutes(Page::parse(query)?)),
            (&Method::GET, ["routes", n]) => Ok(AdminCommand::GetRoute(n.to_string())),
            (&Method::PUT, ["routes", n]) => {
                let name = route_name(n)?;
                let mut v: Value = json_body(body)?;
                // The path names the route; a body that disagrees is an error, a body without a name takes the path's.
                match v.get("name") {
                    None => {
                        if let Some(o) = v.as_object_mut() {
                            o.insert("name".into(), Value::String(name.clone()));
                        }
                    }
                    Some(Value::String(b)) if *b == name => {}
                    Some(_) => return Err(Error::bad_request("name", "must match the route name in the path")),
                }
                let route: Route = serde_path_to_error::deserialize(v).map_err(decode_error)?;
                if route.expires_at.is_some() {
                    return Err(Error::bad_request("expires_at", "static routes do not expire; use POST /_gateway/ephemeral"));
                }
                route.validate()?;
                Ok(AdminCommand::PutRoute(Box::new(route)))
            }
            (&Method::DELETE, ["routes", n]) => Ok(AdminCommand::DeleteRoute(n.to_string())),
            (&Method::PUT, ["routes", n, "endpoints", id]) => {
                let route = route_name(n)?;
                if !is_valid_endpoint_id(id) {
                    return Err(Error::bad_request("id", "must match ^[A-Za-z0-9._-]{1,64}$"));
                }
                let req: LeaseRequest = json_body(body)?;
                let lease_seconds = req.lease_seconds.ok_or_else(|| Error::bad_request("lease_seconds", "is required"))?;
                if !(MIN_LEASE_SECONDS..=MAX_LEASE_SECONDS).contains(&lease_seconds) {
                    return Err(Error::bad_request("lease_seconds", format!("must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS}")));
                }
                let endpoint = Endpoint { id: id.to_string(), url: req.url, weight: req.weight.unwrap_or(1), via: req.via, lease_expires_at: None, registered_by: None };
                // Errors name the body's own fields (`url`, `weight`, `via`).
                endpoint.validate("endpoint").map_err(|e| match e {
                    Error::BadRequest { field, message } => Error::bad_request(field.trim_start_matches("endpoint.").to_string(), message),
                    other => other,
                })?;
                Ok(AdminCommand::PutEndpoint { route, endpoint, lease_seconds })
            }
            (&Method::DELETE, ["routes", n, "endpoints", id]) => Ok(AdminCommand::DeleteEndpoint { route: n.to_string(), id: id.to_string() }),
            (&Method::POST, ["ephemeral"]) => Ok(AdminCommand::CreateEphemeral(json_body(body)?)),
            (&Method::POST, ["tokens"]) => Ok(AdminCommand::IssueToken(json_body(body)?)),
            (&Method::GET, ["tokens"]) => Ok(AdminCommand::ListTokens { q: query_param(query, "q").filter(|q| !q.is_empty()), page: Page::parse(query)? }),
            (&Method::DELETE, ["tokens", id]) => Ok(AdminCommand::RevokeToken(id.to_string())),
            (&Method::POST, ["subjects", subject, "revoke"]) => {
                if !crate::identity::valid_subject(subject) {
                    return Err(Error::bad_request("subject", "must be 1 to 256 characters without control characters"));
                }
                Ok(AdminCommand::RevokeSubject(subject.to_string()))
            }
            (&Method::GET, ["audit"]) => {
                let before = match query_param(query, "before") {
                    Some(b) => Some(b.parse().map_err(|_| Error::bad_request("before", "must be a sequence number"))?),
                    None => None,
                };
                let limit = match query_param(query, "limit") {
                    Some(l) => l.parse().ok().filter(|l| (1..=1000).contains(l)).ok_or_else(|| Error::bad_request("limit", "must be between 1 and 1000"))?,
                    None => 100,
                };
                Ok(AdminCommand::Audit { before, limit })
            }
            (&Method::GET, ["metrics"]) => Ok(AdminCommand::Metrics),
            (&Method::GET, ["metrics", "prometheus"]) => {
                let per_token = match query_param(query, "per_token").as_deref() {
                    None | Some("0" | "false") => false,
                    Some("" | "1" | "true") => true,
                    Some(_) => return Err(Error::bad_request("per_token", "must be 1 or 0")),
                };
                Ok(AdminCommand::MetricsPrometheus { per_token })
            }
            (&Method::POST, ["probes"]) => Ok(AdminCommand::RunProbes),
            (&Method::GET, ["keys"]) => Ok(AdminCommand::Keys),
            (&Method::GET, ["budgets"]) => Ok(AdminCommand::ListBudgets),
            (&Method::PUT | &Method::DELETE, ["budgets", kind, id]) => {
                let kind = crate::budget::BudgetKind::parse(kind).ok_or_else(|| Error::bad_request("kind", "must be tokens, service-accounts or contracts"))?;
                if !crate::budget::is_valid_id(id) {
                    return Err(Error::bad_request("id", "must be 1 to 128 visible characters without /"));
                }
                if method == Method::DELETE {
                    return Ok(AdminCommand::DeleteBudget { kind, id: id.to_string() });
                }
                let budget: crate::budget::TokenBudget = json_body(body)?;
                if budget.managed_by.is_some() {
                    return Err(Error::bad_request("managed_by", "is set by Terraform, not through the admin API"));
                }
                budget.validate()?;
                Ok(AdminCommand::PutBudget { kind, id: id.to_string(), budget })
            }
            (&Method::GET, ["me"]) => Ok(AdminCommand::Me),
            (&Method::GET, ["me", "tokens"]) => Ok(AdminCommand::MyTokens(Page::parse(query)?)),
            (&Method::POST, ["me", "tokens"]) => Ok(AdminCommand::IssueMyToken(json_body(body)?)),
            (&Method::GET, ["me", "tokens", id]) => Ok(AdminCommand::MyToken(id.to_string())),
            (&Method::DELETE, ["me", "tokens", id]) => Ok(AdminCommand::RevokeMyToken(id.to_string())),
            (&Method::POST, ["service-accounts"]) => {
                let req: ServiceAccountRequest = json_body(body)?;
                route_name(&req.name).map_err(|_| Error::bad_request("name", "must match ^[a-z0-9][a-z0-9-]{0,62}$"))?;
                Ok(AdminCommand::CreateServiceAccount(req))
            }
            (&Method::GET, ["service-accounts"]) => Ok(AdminCommand::ListServiceAccounts(Page::parse(query)?)),
            (&Method::GET, ["service-accounts", n]) => Ok(AdminCommand::GetServiceAccount(n.to_string())),
            (&Method::DELETE, ["service-accounts", n]) => Ok(AdminCommand::DeleteServiceAccount(n.to_string())),
            (&Method::POST, ["service-accounts", n, "tokens"]) => {
                Ok(AdminCommand::IssueServiceToken { account: n.to_string(), req: json_body(body)? })
            }
            (
                _,
                ["routes"] | ["routes", _] | ["routes", _, "endpoints", _] | ["ephemeral"] | ["tokens"] | ["tokens", _] | ["audit"] | ["metrics"]
                | ["metrics", "prometheus"] | ["probes"] | ["keys"] | ["me"] | ["me", "tokens"] | ["me", "tokens", _] | ["service-accounts"]
                | ["service-accounts", _] | ["service-accounts", _, "tokens"] | ["subjects", _, "revoke"],
            ) => {
                Err(Error::MethodNotAllowed)
            }
            _ => Err(Error::NotFound("no such admin call".into())),
        }
    }

    /// The audit action and object of a write; `None` for reads.
    fn audit_label(&self) -> Option<(&'static str, String)> {
        Some(match self {
            AdminCommand::PutRoute(r) => ("route.put", format!("route/{}", r.name)),
            AdminCommand::DeleteRoute(n) => ("route.delete", format!("route/{n}")),
            AdminCommand::PutEndpoint { route, endpoint, .. } => ("endpoint.register", format!("route/{route}/endpoint/{}", endpoint.id)),
            AdminCommand::DeleteEndpoint { route, id } => ("endpoint.deregister", format!("route/{route}/endpoint/{id}")),
            AdminCommand::CreateEphemeral(_) => ("ephemeral.create", "ephemeral".into()),
            AdminCommand::IssueToken(r) => ("token.issue", format!("subject/{}", r.subject)),
            AdminCommand::RevokeToken(id) => ("token.revoke", format!("token/{id}")),
            AdminCommand::RevokeSubject(s) => ("subject.revoke", format!("subject/{s}")),
            AdminCommand::RunProbes => ("probe.run", "probes".into()),
            AdminCommand::PutBudget { kind, id, .. } => ("budget.put", format!("budget/{}", kind.key(id))),
            AdminCommand::DeleteBudget { kind, id } => ("budget.delete", format!("budget/{}", kind.key(id))),
            AdminCommand::IssueMyToken(_) => ("token.issue", "self-service".into()),
            AdminCommand::RevokeMyToken(id) => ("token.revoke", format!("token/{id}")),
            AdminCommand::CreateServiceAccount(r) => ("service_account.create", format!("service-account/{}", r.name)),
            AdminCommand::DeleteServiceAccount(n) => ("service_account.delete", format!("service-account/{n}")),
            AdminCommand::IssueServiceToken { account, .. } => ("token.issue", format!("service-account/{account}")),
            _ => return None,
        })
    }
}

/// The caller-independent inputs of an admin call.
pub struct AdminRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Path segments after `_gateway`.
    pub segments: &'a [String],
    /// Raw query string.
    pub query: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a http::HeaderValue>,
    /// Request body (at most [`MAX_ADMIN_BODY`]).
    pub body: &'a [u8],
    /// The call's W3C trace id, kept in its audit entry.
    pub trace_id: Option<&'a str>,
}

/// True for `GET /_gateway/healthz`, which needs no token.
pub fn is_healthz(segments: &[String]) -> bool {
    segments.len() == 1 && segments[0] == "healthz"
}

/// The answer to a call that needs no token: the liveness check and the
/// dashboard's own files (the page asks for a token and sends it with each
/// data call); `None` for every other call.
pub fn public(method: &Method, segments: &[String]) -> Option<AdminReply> {
    if is_healthz(segments) {
        return Some(healthz());
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    crate::dashboard::file(&s).map(AdminReply::document)
}

/// The liveness answer.
pub fn healthz() -> AdminReply {
    AdminReply::ok(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Answers one admin call end to end. Every write, allowed or not, is audited.
pub async fn handle<S: Store>(cfg: &Config, store: &S, now: u64, req: AdminRequest<'_>) -> Result<AdminReply> {
    if let Some(reply) = public(req.method, req.segments) {
        return Ok(reply);
    }
    let is_write = !matches!(*req.method, Method::GET | Method::HEAD);
    // Size before anything else, as the edge checks it while reading: the same answer on
    // both deployments, and no token check spent on a body that will be refused anyway.
    if req.body.len() > MAX_ADMIN_BODY {
        return Err(Error::PayloadTooLarge { limit: MAX_ADMIN_BODY as u64 });
    }
    // Authenticate first, so nobody learns the admin API's shape without a token.
    let principal = match crate::identity::authenticate(cfg, store, req.authorization, now).await {
        Ok(p) => p,
        Err(e) => {
            if is_write {
                audit(
                    store,
                    now,
                    req.trace_id,
                    None,
                    "admin.write",
                    format!("{} /_gateway/{}", req.method, req.segments.join("/")),
                    e.code(),
                )
                .await;
            }
            return Err(e);
        }
    };
    // `/me…` is each principal's own; a registrar's are its leases; everything else is the admins'.
    let own = req.segments.first().is_some_and(|s| s == "me");
    let allowed = if registrar::is_registrar(&principal) {
        registrar::authorize_call(req.method, req.segments)
    } else if own {
        Ok(())
    } else {
        authorize_admin(&principal)
    };
    if let Err(e) = allowed {
        if is_write {
            audit(
                store,
                now,
                req.trace_id,
                Some(&principal),
                "admin.write",
                format!("{} /_gateway/{}", req.method, req.segments.join("/")),
                e.code(),
            )
            .await;
        }
        return Err(e);
    }
    // Terraform writes routes straight into the store: its changes reach the audit log before
    // an admin reads or changes anything (registrars' lease renewals and `/me` skip this).
    let admin_call = !own && !registrar::is_registrar(&principal);
    if admin_call {
        // A failure leaves the changes for the next call or probe round to find.
        let _ = crate::managed::sync(store, now, req.trace_id).await;
    }
    let cmd = match AdminCommand::parse(req.method, req.segments, req.query, req.body) {
        Ok(c) => c,
        Err(e) => {
            if is_write {
                audit(
                    store,
                    now,
                    req.trace_id,
                    Some(&principal),
                    "admin.write",
                    format!("{} /_gateway/{}", req.method, req.segments.join("/")),
                    e.code(),
                )
                .await;
            }
            return Err(e);
        }
    };
    let label = cmd.audit_label();
    let result = execute(cfg, store, now, &principal, cmd).await;
    if admin_call && result.is_ok() && label.as_ref().is_some_and(|(a, _)| a.starts_with("route.")) {
        // The admin API's own change is recorded as seen, so a later Terraform change of the
        // same route is audited against this version.
        let _ = crate::managed::sync(store, now, req.trace_id).await;
    }
    if let Some((action, mut object)) = label {
        if let (Ok(reply), "ephemeral.create" | "token.issue") = (&result, action) {
            if let Some(id) = reply.body.get("id").and_then(Value::as_str) {
                object = if action == "token.issue" { format!("token/{id}") } else { format!("ephemeral/{id}") };
            }
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        audit(
            store,
            now,
            req.trace_id,
            Some(&principal),
            action,
            object,
            outcome,
        )
        .await;
    }
    result
}

async fn audit<S: Store>(
    store: &S,
    now: u64,
    trace_id: Option<&str>,
    who: Option<&Principal>,
    action: &str,
    object: String,
    outcome: &str,
) {
    let entry = AuditEntry {
        seq: 0,
        at: now,
        actor: who.map_or_else(|| "anonymous".to_string(), |p| p.subject.clone()),
        actor_token: who.map(|p| p.token_id.clone()),
        action: action.to_string(),
        object,
        outcome: outcome.to_string(),
        trace_id: trace_id.map(str::to_string),
        old_version: None,
        new_version: None,
    };
    // The write already happened or was refused; a lost audit line must not undo or fail it,
    // but the adapter's store logs the failure.
    let _ = store.append_audit(entry).await;
}

/// A budget Terraform wrote is Terraform's to change (409), as a managed route is.
async fn refuse_managed_budget<S: Store>(store: &S, key: &str) -> Result<()> {
    if store.budget(key).await?.is_some_and(|b| b.managed_by.is_some()) {
        return Err(Error::Conflict(format!("budget `{key}` is managed by terraform; change it there")));
    }
    Ok(())
}

fn refuse_managed(route: &Route) -> Result<()> {
    if route.is_externally_managed() {
        Err(Error::Conflict(format!(
            "route `{}` is managed by {}; change it there",
            route.name,
            route.managed_by.as_deref().unwrap_or("another owner")
        )))
    } else {
        Ok(())
    }
}

/// Executes a parsed command for an authorised caller: an admin, a principal on its own
/// `/me` calls, or a registrar on its endpoint calls (held to its scope here).
pub async fn execute<S: Store>(cfg: &Config, store: &S, now: u64, who: &Principal, cmd: AdminCommand) -> Result<AdminReply> {
    let as_registrar = registrar::is_registrar(who);
    if as_registrar && !matches!(cmd, AdminCommand::PutEndpoint { .. } | AdminCommand::DeleteEndpoint { .. }) {
        return Err(Error::Forbidden("a registrar token may only register, renew and remove its own endpoints".into()));
    }
    match cmd {
        AdminCommand::ListRoutes(page) => {
            let (routes, next) = page.take(store.list_routes().await?, |r| r.name.as_str());
            Ok(AdminReply::ok(json!({ "routes": routes, "next_cursor": next })))
        }
        AdminCommand::GetRoute(name) => {
            let route = store.route(&name).await?.ok_or_else(|| Error::NotFound(format!("no route `{name}`")))?;
            let leases: Vec<Endpoint> = store.leases(&name).await?.into_iter().filter(|e| e.is_live(now)).collect();
            let mut v = serde_json::to_value(&route).map_err(|e| Error::Internal(e.to_string()))?;
            v["leased_endpoints"] = serde_json::to_value(leases).map_err(|e| Error::Internal(e.to_string()))?;
            Ok(AdminReply::ok(v))
        }
        AdminCommand::PutRoute(mut route) => {
            for (i, ep) in route.endpoints.iter().enumerate() {
                cfg.upstreams.check(ep, &format!("endpoints[{i}]"))?;
            }
            let previous = store.route(&route.name).await?;
            if let Some(p) = &previous {
                refuse_managed(p)?;
            }
            // Only Terraform writes managed routes; through this API a route is the API's own.
            if route.managed_by.is_some() {
                return Err(Error::bad_request("managed_by", "is set by Terraform, not through the admin API"));
            }
            if let Some(host) = &route.host {
                if cfg.admin_host.as_deref() == Some(host.as_str()) {
                    return Err(Error::bad_request("host", "is the admin API's own host (GATEWAY_ADMIN_HOST), which never proxies"));
                }
                if let Some(other) = store.route_for_host(host).await? {
                    if other.name != route.name {
                        return Err(Error::Conflict(format!("host `{host}` already belongs to route `{}`", other.name)));
                    }
                }
            }
            // A model name routes one way: to one route (model routing under `/v1/`).
            for (i, model) in route.models.iter().enumerate() {
                let Some(other) = store.model_route(model).await?.filter(|o| *o != route.name) else { continue };
                // An index entry left by a route since changed or removed does not count.
                if store.route(&other).await?.is_some_and(|o| o.models.contains(model)) {
                    return Err(Error::Conflict(format!("`models[{i}]`: model `{model}` is already served by route `{other}`")));
                }
            }
            route.expires_at = None;
            store.put_route(&route, previous.as_ref()).await?;
            let status = if previous.is_some() { StatusCode::OK } else { StatusCode::CREATED };
            Ok(AdminReply::with_status(status, serde_json::to_value(&*route).map_err(|e| Error::Internal(e.to_string()))?))
        }
        AdminCommand::DeleteRoute(name) => {
            let route = store.route(&name).await?.ok_or_else(|| Error::NotFound(format!("no route `{name}`")))?;
            refuse_managed(&route)?;
            store.delete_route(&route).await?;
            Ok(AdminReply::ok(json!({ "deleted": name })))
        }
        AdminCommand::PutEndpoint { route, mut endpoint, lease_seconds } => {
            // A registrar: its routes, its hosts, its caps; the lease is then recorded as its own.
            // An admin's write clears the record, so the lease is the admins' from then on.
            let scope = if as_registrar { Some(registrar::scope_for(who, &route)?) } else { None };
            if let Some(scope) = scope {
                scope.check_lease(&endpoint, lease_seconds)?;
                endpoint.registered_by = Some(who.subject.clone());
            }
            cfg.upstreams.check(&endpoint, "")?;
            // Leases are the instances' own, so they may join Terraform-managed routes too.
            let r = store.route(&route).await?.ok_or_else(|| Error::NotFound(format!("no route `{route}`")))?;
            if r.endpoints.iter().any(|e| e.id == endpoint.id) {
                let why = format!("endpoint `{}` is defined by the route itself", endpoint.id);
                return Err(if as_registrar { Error::Forbidden(why) } else { Error::Conflict(why) });
            }
            let leases = store.leases(&route).await?;
            if let Some(scope) = scope {
                if leases.iter().any(|e| e.id == endpoint.id && !registrar::may_replace(&who.subject, e, now)) {
                    return Err(Error::Forbidden(format!("lease `{}` on route `{route}` was registered by someone else", endpoint.id)));
                }
                let held = leases.iter().filter(|e| e.is_live(now) && e.id != endpoint.id && e.registered_by.as_deref() == Some(who.subject.as_str())).count();
                if held >= scope.max_endpoints as usize {
                    return Err(Error::Forbidden(format!(
                        "this registrar already holds {held} live endpoint(s) on route `{route}`, its most (registrar.max_endpoints)"
                    )));
                }
            }
            let live = leases.iter().filter(|e| e.is_live(now) && e.id != endpoint.id).count();
            if r.endpoints.len() + live + 1 > crate::route::MAX_ENDPOINTS {
                return Err(Error::bad_request("id", "the route has too many endpoints"));
            }
            endpoint.lease_expires_at = Some(now + lease_seconds);
            store.put_lease(&route, &endpoint).await?;
            Ok(AdminReply::ok(json!({ "route": route, "endpoint": endpoint.id, "lease_expires_at": now + lease_seconds })))
        }
        AdminCommand::DeleteEndpoint { route, id } => {
            if as_registrar {
                registrar::scope_for(who, &route)?;
                // Someone else's lease is refused; one that does not exist answers 404 below, as for admins.
                if store.leases(&route).await?.iter().any(|e| e.id == id && !registrar::may_remove(&who.subject, e)) {
                    return Err(Error::Forbidden(format!("lease `{id}` on route `{route}` was registered by someone else")));
                }
            }
            if store.delete_lease(&route, &id).await? {
                Ok(AdminReply::ok(json!({ "route": route, "deregistered": id })))
            } else {
                Err(Error::NotFound(format!("no leased endpoint `{id}` on route `{route}`")))
            }
        }
        AdminCommand::CreateEphemeral(req) => {
            let ttl = req.ttl_seconds.ok_or_else(|| Error::bad_request("ttl_seconds", "is required"))?;
            if !(MIN_EPHEMERAL_SECONDS..=MAX_EPHEMERAL_SECONDS).contains(&ttl) {
                return Err(Error::bad_request("ttl_seconds", format!("must be between {MIN_EPHEMERAL_SECONDS} and {MAX_EPHEMERAL_SECONDS}")));
            }
            let id = random_base32(10)?;
            debug_assert!(is_valid_ephemeral_id(&id));
            let endpoint = Endpoint::new("e0", req.url);
            cfg.upstreams.check(&endpoint, "")?;
            let mut route = Route::new(id.clone(), vec![endpoint]);
            route.auth.groups = req.groups;
            route.upstream_api_key_secret = req.upstream_api_key_secret;
            route.expires_at = Some(now + ttl);
            // Ephemeral ids are not route names; validate the rest under a stand-in name.
            let mut check = route.clone();
            check.name = "ephemeral".into();
            check.validate().map_err(|e| match e {
                Error::BadRequest { field, message } => Error::bad_request(field.replace("endpoints[0].", ""), message),
                other => other,
            })?;
            store.put_ephemeral(&route).await?;
            Ok(AdminReply::with_status(StatusCode::CREATED, json!({ "id": id, "path": format!("/e/{id}/"), "expires_at": now + ttl })))
        }
        AdminCommand::IssueToken(req) => issue(cfg, store, now, who, req, None).await,
        AdminCommand::ListTokens { q, page } => {
            let mut tokens = store.list_tokens().await?;
            if let Some(q) = q {
                let q = q.to_lowercase();
                tokens.retain(|t| t.subject.to_lowercase().contains(&q) || t.description.to_lowercase().contains(&q));
            }
            let (tokens, next) = page.take(tokens, |t| t.id.as_str());
            Ok(AdminReply::ok(json!({ "tokens": token_list(store, tokens, now).await?, "next_cursor": next })))
        }
        AdminCommand::RevokeSubject(subject) => {
            // The subject's own record first: from now on no token it held is accepted, also
            // ones the gateway has no record of (IdP sign-ins, tokens minted offline).
            store.revoke_subject(&subject, now).await?;
            // Then its token records, so listings show them revoked: those issued to the subject
            // and those it owns (an IdP user's self-service tokens, by `oidc:{provider}:{sub}`).
            let mut revoked = Vec::new();
            for mut t in store.list_tokens().await? {
                let held = t.subject == subject || t.owner.as_deref() == Some(subject.as_str());
                if held && t.revoked_at.is_none() && t.expires_at > now {
                    t.revoked_at = Some(now);
                    store.revoke(&t).await?;
                    revoked.push(t.id);
                }
            }
            Ok(AdminReply::ok(json!({ "subject": subject, "revoked_at": now, "tokens_revoked": revoked })))
        }
        AdminCommand::RevokeToken(id) => {
            if !id.starts_with("tok_") || id.len() > 64 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return Err(Error::NotFound(format!("no token `{id}`")));
            }
            // Tokens minted offline (gatewayctl bootstrap) have no record; they must still be revocable,
            // so the revocation outlives any token the gateway would accept.
            let record = match store.token(&id).await? {
                Some(r) => r,
                None => TokenRecord {
                    rate_limit_rpm: None,
                    id: id.clone(),
                    subject: "(minted offline)".into(),
                    kind: crate::token::TokenKind::User,
                    groups: Vec::new(),
                    routes: None,
                    description: "revoked without a record".into(),
                    metadata: Default::default(),
                    created_by: who.subject.clone(),
                    created_at: now,
                    expires_at: now + cfg.max_token_ttl,
                    revoked_at: None,
                    last_used_at: None,
                    request_count: 0,
                    owner: None,
                    kid: None,
                    registrar: None,
                },
            };
            revoke(store, now, record).await
        }
        AdminCommand::Audit { before, limit } => {
            let entries = store.audit(before, limit).await?;
            let next = if entries.len() == limit { entries.last().map(|e| e.seq) } else { None };
            Ok(AdminReply::ok(json!({ "entries": entries, "next_before": next })))
        }
        AdminCommand::Metrics => {
            let snap = metrics_snapshot(store, now).await?;
            Ok(AdminReply::ok(serde_json::to_value(snap).map_err(|e| Error::Internal(e.to_string()))?))
        }
        AdminCommand::MetricsPrometheus { per_token } => {
            let snap = metrics_snapshot(store, now).await?;
            Ok(AdminReply::document(Document {
                content_type: crate::metrics::PROMETHEUS_CONTENT_TYPE,
                bytes: crate::metrics::render_prometheus(&snap, per_token).into_bytes(),
                headers: &[],
            }))
        }
        AdminCommand::RunProbes => {
            let report = crate::probe::run(store, now).await?;
            let loads = crate::probe::load_round(store, now).await?;
            let mut body = serde_json::to_value(report).map_err(|e| Error::Internal(e.to_string()))?;
            body["loads"] = serde_json::to_value(loads.loads).map_err(|e| Error::Internal(e.to_string()))?;
            Ok(AdminReply::ok(body))
        }
        AdminCommand::ListBudgets => {
            let budgets = store.list_budgets().await?;
            let uses = futures_util::future::try_join_all(budgets.iter().map(|(k, _)| store.budget_use(k, now))).await?;
            let items: Vec<Value> = budgets
                .iter()
                .zip(uses)
                .map(|((key, b), used)| {
                    let (kind, id) = key.split_once('/').unwrap_or((key.as_str(), ""));
                    let mut v = serde_json::to_value(b).unwrap_or_default();
                    v["kind"] = json!(kind);
                    v["id"] = json!(id);
                    v["used"] = json!({"minute": used.minute, "day": used.day, "month": used.month});
                    v
                })
                .collect();
            Ok(AdminReply::ok(json!({ "budgets": items })))
        }
        AdminCommand::PutBudget { kind, id, budget } => {
            refuse_managed_budget(store, &kind.key(&id)).await?;
            store.put_budget(&kind.key(&id), &budget).await?;
            let mut v = serde_json::to_value(budget).unwrap_or_default();
            v["kind"] = json!(kind.segment());
            v["id"] = json!(id);
            Ok(AdminReply::ok(v))
        }
        AdminCommand::DeleteBudget { kind, id } => {
            refuse_managed_budget(store, &kind.key(&id)).await?;
            if !store.delete_budget(&kind.key(&id)).await? {
                return Err(Error::NotFound(format!("no budget for {} `{id}`", kind.segment())));
            }
            Ok(AdminReply::ok(json!({ "deleted": kind.key(&id) })))
        }
        AdminCommand::Keys => {
            let tokens = store.list_tokens().await?;
            let keys: Vec<Value> = cfg
                .keys
                .describe()
                .into_iter()
                .map(|(kid, alg, signing)| {
                    let live: Vec<&TokenRecord> =
                        tokens.iter().filter(|t| t.kid.as_deref() == Some(kid) && t.revoked_at.is_none() && t.expires_at > now).collect();
                    json!({ "kid": kid, "alg": alg, "signing": signing, "tokens_outstanding": live.len(), "last_expiry": live.iter().map(|t| t.expires_at).max() })
                })
                .collect();
            Ok(AdminReply::ok(json!({ "signing_kid": cfg.keys.signing_kid(), "keys": keys, "max_token_ttl_seconds": cfg.max_token_ttl })))
        }
        AdminCommand::Me => Ok(AdminReply::ok(json!({
            "subject": who.subject,
            "kind": who.kind,
            "groups": who.groups,
            "provider": who.provider,
            "partner": who.partner,
            "token_id": who.token_id,
            "expires_at": who.expires_at,
        }))),
        AdminCommand::MyTokens(page) => {
            let me = owner_of(who);
            let tokens = store.list_tokens().await?.into_iter().filter(|t| t.owner.as_deref() == Some(me.as_str())).collect();
            let (tokens, next) = page.take(tokens, |t| t.id.as_str());
            Ok(AdminReply::ok(json!({ "tokens": token_list(store, tokens, now).await?, "next_cursor": next })))
        }
        AdminCommand::MyToken(id) => {
            let t = own_token(store, who, &id).await?;
            Ok(AdminReply::ok(token_list(store, vec![t], now).await?.pop().unwrap_or(Value::Null)))
        }
        AdminCommand::RevokeMyToken(id) => {
            let t = own_token(store, who, &id).await?;
            revoke(store, now, t).await
        }
        AdminCommand::IssueMyToken(req) => {
            if who.provider.is_none() || who.kind != TokenKind::User {
                return Err(Error::Forbidden("self-service tokens are for users signed in through the identity provider".into()));
            }
            if req.rate_limit_rpm.is_some() {
                return Err(Error::bad_request("rate_limit_rpm", "is set by an admin; self-service tokens take the route's limit"));
            }
            // Admin rights stay with the sign-in: a token that outlives it never carries them.
            let groups = match req.groups {
                None => who.groups.iter().filter(|g| *g != crate::rbac::ADMIN_GROUP).cloned().collect(),
                Some(asked) => {
                    if let Some(g) = asked.iter().find(|g| !who.has_group(g)) {
                        return Err(Error::Forbidden(format!("you do not hold group `{g}`")));
                    }
                    if asked.iter().any(|g| g == crate::rbac::ADMIN_GROUP) {
                        return Err(Error::Forbidden("self-service tokens cannot carry `admin`; ask an admin for one".into()));
                    }
                    asked
                }
            };
            let max = cfg.max_token_ttl.min(MAX_SELF_SERVICE_TTL);
            if req.ttl_seconds.is_some_and(|t| t > max) {
                return Err(Error::bad_request("ttl_seconds", format!("self-service tokens live at most {max} seconds")));
            }
            let me = owner_of(who);
            let mine: Vec<TokenRecord> = store.list_tokens().await?.into_iter().filter(|t| t.owner.as_deref() == Some(me.as_str())).collect();
            let active = mine.iter().filter(|t| t.revoked_at.is_none() && t.expires_at > now).count();
            if active >= MAX_SELF_SERVICE_TOKENS {
                return Err(Error::Forbidden(format!("you hold {MAX_SELF_SERVICE_TOKENS} active self-service tokens; revoke one first")));
            }
            // Issuing and revoking in a loop is bounded too: revoked records count for a day.
            let today: Vec<u64> = mine.iter().map(|t| t.created_at).filter(|c| c + DAY > now).collect();
            if today.len() >= MAX_SELF_SERVICE_ISSUES_PER_DAY {
                let oldest = today.iter().min().copied().unwrap_or(now);
                return Err(Error::RateLimited { limit: MAX_SELF_SERVICE_ISSUES_PER_DAY as u32, retry_after: (oldest + DAY).saturating_sub(now).max(1) });
            }
            let treq = TokenRequest {
                subject: who.subject.clone(),
                kind: TokenKind::User,
                groups,
                routes: req.routes,
                ttl_seconds: req.ttl_seconds,
                description: req.description,
                metadata: [("issued_via".to_string(), "self-service".to_string())].into(),
                rate_limit_rpm: req.rate_limit_rpm,
                registrar: None,
            };
            issue(cfg, store, now, who, treq, Some(me)).await
        }
        AdminCommand::CreateServiceAccount(req) => {
            let check = TokenRequest {
                subject: req.name.clone(),
                kind: TokenKind::Service,
                groups: req.groups.clone(),
                routes: None,
                ttl_seconds: Some(cfg.max_token_ttl),
                description: req.description.clone(),
                metadata: Default::default(),
                rate_limit_rpm: None,
                registrar: None,
            };
            check.validate(cfg)?;
            if req.owner.trim().is_empty() || req.owner.len() > 128 || req.owner.chars().any(char::is_control) {
                return Err(Error::bad_request("owner", "must be 1-128 printable characters"));
            }
            let account = ServiceAccount {
                name: req.name,
                groups: req.groups,
                owner: req.owner,
                description: req.description,
                created_at: now,
                created_by: who.subject.clone(),
            };
            store.create_service_account(&account).await?;
            Ok(AdminReply::with_status(StatusCode::CREATED, serde_json::to_value(&account).map_err(|e| Error::Internal(e.to_string()))?))
        }
        AdminCommand::ListServiceAccounts(page) => {
            let (accounts, next) = page.take(store.list_service_accounts().await?, |a| a.name.as_str());
            Ok(AdminReply::ok(json!({ "service_accounts": accounts, "next_cursor": next })))
        }
        AdminCommand::GetServiceAccount(name) => {
            let account = store.service_account(&name).await?.ok_or_else(|| Error::NotFound(format!("no service account `{name}`")))?;
            let tokens = account_tokens(store, &name).await?;
            let mut v = serde_json::to_value(&account).map_err(|e| Error::Internal(e.to_string()))?;
            v["tokens"] = Value::Array(token_list(store, tokens, now).await?);
            Ok(AdminReply::ok(v))
        }
        AdminCommand::DeleteServiceAccount(name) => {
            store.service_account(&name).await?.ok_or_else(|| Error::NotFound(format!("no service account `{name}`")))?;
            // Tokens first: a failure part-way leaves the account, so deleting again finishes the job.
            let mut revoked = 0;
            for mut t in account_tokens(store, &name).await?.into_iter().filter(|t| t.revoked_at.is_none()) {
                t.revoked_at = Some(now);
                store.revoke(&t).await?;
                revoked += 1;
            }
            store.delete_service_account(&name).await?;
            Ok(AdminReply::ok(json!({ "deleted": name, "revoked_tokens": revoked })))
        }
        AdminCommand::IssueServiceToken { account, req } => {
            let acct = store.service_account(&account).await?.ok_or_else(|| Error::NotFound(format!("no service account `{account}`")))?;
            if req.groups.is_some() {
                return Err(Error::bad_request("groups", "a service account's tokens carry the account's groups"));
            }
            let treq = TokenRequest {
                subject: acct.name.clone(),
                kind: TokenKind::Service,
                groups: acct.groups,
                routes: req.routes,
                ttl_seconds: req.ttl_seconds,
                description: req.description,
                metadata: [("service_account".to_string(), acct.name)].into(),
                rate_limit_rpm: req.rate_limit_rpm,
                registrar: None,
            };
            issue(cfg, store, now, who, treq, None).await
        }
    }
}

/// Mints a token, keeps its record (never the token), and answers with the token once.
async fn issue<S: Store>(cfg: &Config, store: &S, now: u64, who: &Principal, req: TokenRequest, owner: Option<String>) -> Result<AdminReply> {
    let jti = new_token_id()?;
    let (token, claims) = TokenIssuer::new(cfg).issue(&req, now, jti)?;
    let record = TokenRecord {
        rate_limit_rpm: claims.rpm,
        id: claims.jti.clone(),
        subject: claims.sub,
        kind: claims.kind,
        groups: claims.groups,
        routes: claims.routes,
        description: req.description,
        metadata: req.metadata,
        created_by: who.subject.clone(),
        created_at: now,
        expires_at: claims.exp,
        revoked_at: None,
        last_used_at: None,
        request_count: 0,
        owner,
        kid: Some(cfg.keys.signing_kid().to_string()),
        registrar: claims.reg,
    };
    store.put_token(&record).await?;
    Ok(AdminReply::with_status(StatusCode::CREATED, json!({ "id": record.id, "token": token, "expires_at": record.expires_at })))
}

/// Revokes a token by its record.
async fn revoke<S: Store>(store: &S, now: u64, mut record: TokenRecord) -> Result<AdminReply> {
    if record.revoked_at.is_some() {
        return Err(Error::Conflict(format!("token `{}` is already revoked", record.id)));
    }
    record.revoked_at = Some(now);
    store.revoke(&record).await?;
    Ok(AdminReply::ok(json!({ "id": record.id, "revoked": true, "revoked_at": now })))
}

/// A token the caller owns; 404 for any other, so others' tokens are not even confirmed to exist.
async fn own_token<S: Store>(store: &S, who: &Principal, id: &str) -> Result<TokenRecord> {
    let me = owner_of(who);
    store.token(id).await?.filter(|t| t.owner.as_deref() == Some(me.as_str())).ok_or_else(|| Error::NotFound(format!("no token `{id}`")))
}

/// The tokens issued for a service account.
async fn account_tokens<S: Store>(store: &S, name: &str) -> Result<Vec<TokenRecord>> {
    Ok(store
        .list_tokens()
        .await?
        .into_iter()
        .filter(|t| t.kind == TokenKind::Service && t.metadata.get("service_account").map(String::as_str) == Some(name))
        .collect())
}

/// Token records as listed: newest first, with `revoked` and `expired` flags, and
/// `request_count` / `last_used_at` from the metric counters (`tok:{id}`), which the
/// data plane keeps per request; the record itself is not rewritten per request.
async fn token_list<S: Store>(store: &S, mut tokens: Vec<TokenRecord>, now: u64) -> Result<Vec<Value>> {
    let usage = crate::metrics::snapshot(now, store.counters(now).await?, std::iter::empty()).tokens;
    for t in &mut tokens {
        if let Some(u) = usage.get(&t.id) {
            // Records from before the counters existed keep what they had counted.
            t.request_count = t.request_count.max(u.requests);
            t.last_used_at = t.last_used_at.max(u.last_seen);
        }
    }
    tokens.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
    Ok(tokens
        .into_iter()
        .map(|t| {
            let expired = now >= t.expires_at;
            let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
            v["revoked"] = Value::Bool(t.revoked_at.is_some());
            v["expired"] = Value::Bool(expired);
            v
        })
        .collect())
}

/// The metrics as of `now`, from the store's counters and health records.
async fn metrics_snapshot<S: Store>(store: &S, now: u64) -> Result<crate::metrics::Snapshot> {
    let counters = store.counters(now).await?;
    let health = store.health().await?;
    let tokens = store.list_tokens().await?;
    let mut b = crate::metrics::SnapshotBuilder::new(now);
    for (k, v) in counters {
        b.counter(k.as_ref(), v);
    }
    for (route, endpoint, h) in &health {
        b.health(route, endpoint, h);
    }
    b.tokens(&tokens);
    for route in store.list_routes().await? {
        b.loads(&route.name, &store.loads(&route.name).await?);
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::test_config;
    use crate::store::{MemoryStore, RouteSource};
    use crate::token::{TokenKind, TokenRequest, TokenVerifier};
    use futures_executor::block_on;

    const NOW: u64 = 1_800_000_000;

    fn admin_token(cfg: &Config, groups: &[&str]) -> http::HeaderValue {
        let req = TokenRequest {
            rate_limit_rpm: None,
            subject: "ops".into(),
            kind: TokenKind::User,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            routes: None,
            ttl_seconds: Some(3600),
            description: String::new(),
            metadata: Default::default(),
            registrar: None,
        };
        let (t, _) = TokenIssuer::new(cfg).issue(&req, NOW, "tok_admin".into()).unwrap();
        http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    /// One admin call at `now`, as an adapter hands it over.
    #[allow(clippy::too_many_arguments)]
    fn admin_request(
        cfg: &Config,
        store: &MemoryStore,
        now: u64,
        auth: Option<&http::HeaderValue>,
        method: Method,
        path: &str,
        body: &str,
        trace_id: Option<&str>,
    ) -> Result<AdminReply> {
        let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(String::from).collect();
        block_on(handle(cfg, store, now, AdminRequest { method: &method, segments: &segs, query: None, authorization: auth, body: body.as_bytes(), trace_id }))
    }

    fn call(cfg: &Config, store: &MemoryStore, auth: Option<&http::HeaderValue>, method: Method, path: &str, body: &str) -> Result<AdminReply> {
        admin_request(cfg, store, NOW, auth, method, path, body, None)
    }

    /// An identity provider user's bearer header (see `oidc::tests`), with IdP group `ml-engineers` → `ml-team`.
    fn idp_user(email: &str) -> http::HeaderValue {
        let mut c = crate::oidc::tests::claims();
        c["email"] = serde_json::json!(email);
        c["sub"] = serde_json::json!(format!("id-{email}"));
        let t = crate::oidc::tests::sign(crate::oidc::tests::ed_header("ed-1"), &c);
        http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    #[test]
    fn self_service_tokens_belong_to_their_owner_only() {
        let cfg = crate::oidc::tests::config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team"]})));
        let store = crate::oidc::tests::store();
        let (alice, bob) = (idp_user("alice@corp.example"), idp_user("bob@corp.example"));
        let me = call(&cfg, &store, Some(&alice), Method::GET, "me", "").unwrap().body;
        assert_eq!((me["subject"].as_str(), me["provider"].as_str(), &me["groups"]), (Some("alice@corp.example"), Some("corp"), &json!(["ml-team"])));

        let made = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600, "description": "nb"}"#).unwrap();
        assert_eq!(made.status, StatusCode::CREATED);
        let id = made.body["id"].as_str().unwrap().to_string();
        let p = TokenVerifier::new(&cfg).verify(made.body["token"].as_str().unwrap(), NOW).unwrap();
        assert_eq!((p.subject.as_str(), p.groups.clone(), p.kind), ("alice@corp.example", vec!["ml-team".to_string()], TokenKind::User));
        // Groups she lacks, lifetimes over the maximum.
        assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600, "groups": ["admin"]}"#), Err(Error::Forbidden(_))));
        assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 999999999}"#), Err(Error::BadRequest { .. })));

        // Bob sees nothing of hers and cannot touch it; admins' calls are not his.
        assert_eq!(call(&cfg, &store, Some(&bob), Method::GET, "me/tokens", "").unwrap().body["tokens"], json!([]));
        assert!(matches!(call(&cfg, &store, Some(&bob), Method::GET, &format!("me/tokens/{id}"), ""), Err(Error::NotFound(_))));
        assert!(matches!(call(&cfg, &store, Some(&bob), Method::DELETE, &format!("me/tokens/{id}"), ""), Err(Error::NotFound(_))));
        assert!(matches!(call(&cfg, &store, Some(&bob), Method::GET, "tokens", ""), Err(Error::Forbidden(_))));
        // A gateway token cannot mint more tokens for itself.
        let gw = admin_token(&cfg, &["ml-team"]);
        assert!(matches!(call(&cfg, &store, Some(&gw), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#), Err(Error::Forbidden(_))));

        let mine = call(&cfg, &store, Some(&alice), Method::GET, "me/tokens", "").unwrap().body;
        assert_eq!(mine["tokens"][0]["owner"], "oidc:corp:id-alice@corp.example");
        // No own rate limit, no admin, at most 30 days, at most 25 at once.
        assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600, "rate_limit_rpm": 1000000}"#), Err(Error::BadRequest { .. })));
        assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", &format!(r#"{{"ttl_seconds": {}}}"#, MAX_SELF_SERVICE_TTL + 1)), Err(Error::BadRequest { .. })));
        for _ in 1..MAX_SELF_SERVICE_TOKENS {
            call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#).unwrap();
        }
        assert!(matches!(call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#), Err(Error::Forbidden(_))));
        call(&cfg, &store, Some(&alice), Method::DELETE, &format!("me/tokens/{id}"), "").unwrap();
        assert!(block_on(store.is_revoked(&id)).unwrap());
        let audit = block_on(store.audit(None, 1000)).unwrap();
        assert!(audit.iter().any(|e| e.action == "token.revoke" && e.actor == "alice@corp.example" && e.outcome == "ok"));
        assert!(audit.iter().any(|e| e.action == "token.issue" && e.object == format!("token/{id}")));
    }

    #[test]
    fn an_oversized_admin_body_is_413_before_any_token_check() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let big = "x".repeat(MAX_ADMIN_BODY + 1);
        // No token at all: the size answers first, as at the edge where it is checked while reading.
        assert!(matches!(call(&cfg, &store, None, Method::PUT, "routes/big", &big), Err(Error::PayloadTooLarge { .. })));
        assert!(matches!(call(&cfg, &store, None, Method::PUT, "routes/big", "{}"), Err(Error::MissingToken)));
    }

    #[test]
    fn listings_are_paged_by_cursor() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        for i in 0..5 {
            let body = format!(r#"{{"subject": "svc-{i}", "kind": "service", "groups": ["ml-team"], "ttl_seconds": 600}}"#);
            call(&cfg, &store, Some(&admin), Method::POST, "tokens", &body).unwrap();
        }
        let page = |q: &str| {
            let segs = vec!["tokens".to_string()];
            block_on(handle(
                &cfg,
                &store,
                NOW,
                AdminRequest {
                    method: &Method::GET,
                    segments: &segs,
                    query: Some(q),
                    authorization: Some(&admin),
                    body: b"",
                    trace_id: None,
                },
            ))
        };
        let (mut seen, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let q = match &cursor {
                Some(c) => format!("limit=2&cursor={c}"),
                None => "limit=2".to_string(),
            };
            let body = page(&q).unwrap().body;
            let ids: Vec<String> = body["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_string()).collect();
            assert!(ids.len() <= 2);
            seen.extend(ids);
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let mut unique = seen.clone();
        unique.dedup();
        assert_eq!((seen.len(), unique.len()), (5, 5), "every token once: {seen:?}");
        assert!(matches!(page("limit=0"), Err(Error::BadRequest { .. })));
        assert!(matches!(page("limit=1001"), Err(Error::BadRequest { .. })));
        let all = page("").unwrap().body;
        assert_eq!((all["tokens"].as_array().map(Vec::len), &all["next_cursor"]), (Some(5), &Value::Null));
    }

    #[test]
    fn self_service_issuance_is_bounded_per_day_even_when_revoked() {
        let cfg = crate::oidc::tests::config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team"]})));
        let store = crate::oidc::tests::store();
        let alice = idp_user("alice@corp.example");
        for _ in 0..MAX_SELF_SERVICE_ISSUES_PER_DAY {
            let made = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#).unwrap();
            let id = made.body["id"].as_str().unwrap().to_string();
            call(&cfg, &store, Some(&alice), Method::DELETE, &format!("me/tokens/{id}"), "").unwrap();
        }
        let refused = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#);
        assert!(matches!(refused, Err(Error::RateLimited { retry_after, .. }) if retry_after > 0 && retry_after <= 24 * 3600), "{refused:?}");
    }

    #[test]
    fn token_records_past_keeping_are_pruned_but_revocations_stay() {
        let store = MemoryStore::default();
        let rec = |id: &str, expires_at: u64, revoked_at: Option<u64>| TokenRecord {
            id: id.into(), subject: "s".into(), kind: TokenKind::User, groups: vec![], routes: None, description: String::new(),
            metadata: Default::default(), created_by: "ops".into(), created_at: 0, expires_at, revoked_at, last_used_at: None,
            request_count: 0, rate_limit_rpm: None, owner: None, kid: None, registrar: None,
        };
        block_on(store.put_token(&rec("tok_old", NOW - 31 * 24 * 3600, None))).unwrap();
        block_on(store.revoke(&rec("tok_gone", NOW + 3600, Some(NOW - 3 * 24 * 3600)))).unwrap();
        block_on(store.revoke(&rec("tok_recent", NOW + 3600, Some(NOW - 3600)))).unwrap();
        block_on(store.put_token(&rec("tok_live", NOW + 3600, None))).unwrap();
        assert_eq!(block_on(prune_tokens(&store, NOW)).unwrap(), 2);
        let left: Vec<String> = block_on(store.list_tokens()).unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(left, ["tok_live", "tok_recent"]);
        assert!(block_on(store.is_revoked("tok_gone")).unwrap(), "the revocation outlives the record");
    }

    #[test]
    fn revoking_a_subject_refuses_every_token_it_held_then() {
        let cfg = crate::oidc::tests::config(r#"["EdDSA"]"#, Some(json!({"ml-engineers": ["ml-team"]})));
        let store = crate::oidc::tests::store();
        let (alice, bob) = (idp_user("alice@corp.example"), idp_user("bob@corp.example"));
        let admin = admin_token(&cfg, &["admin"]);
        let made = call(&cfg, &store, Some(&alice), Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#).unwrap();
        let own = http::HeaderValue::from_str(&format!("Bearer {}", made.body["token"].as_str().unwrap())).unwrap();
        let auth = |h: &http::HeaderValue| block_on(crate::identity::authenticate(&cfg, &store, Some(h), NOW));
        assert!(auth(&alice).is_ok() && auth(&own).is_ok());

        // Only admins; the subject is named as listings show it.
        assert!(matches!(call(&cfg, &store, Some(&bob), Method::POST, "subjects/alice@corp.example/revoke", ""), Err(Error::Forbidden(_))));
        let r = call(&cfg, &store, Some(&admin), Method::POST, "subjects/alice@corp.example/revoke", "").unwrap();
        assert_eq!(r.body["tokens_revoked"].as_array().map(Vec::len), Some(1), "{}", r.body);
        assert!(matches!(auth(&alice), Err(Error::TokenRevoked)), "her sign-in");
        assert!(matches!(auth(&own), Err(Error::TokenRevoked)), "her self-service token");
        assert!(auth(&bob).is_ok(), "others are untouched");
        // A sign-in issued after the revocation is a new decision of the identity provider's.
        let mut later = crate::oidc::tests::claims();
        later["iat"] = json!(NOW + 1);
        let t = crate::oidc::tests::sign(crate::oidc::tests::ed_header("ed-1"), &later);
        assert!(auth(&http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap()).is_ok());
        // Revoking by the stable IdP id works too.
        call(&cfg, &store, Some(&admin), Method::POST, "subjects/oidc:corp:id-bob@corp.example/revoke", "").unwrap();
        assert!(matches!(auth(&bob), Err(Error::TokenRevoked)));
        let audit = block_on(store.audit(None, 1000)).unwrap();
        assert!(audit.iter().any(|e| e.action == "subject.revoke" && e.object == "subject/alice@corp.example" && e.outcome == "ok"));
        assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "subjects/a\u{1}b/revoke", ""), Err(Error::BadRequest { .. })));
    }

    #[test]
    fn deleting_a_service_account_revokes_its_tokens() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        let body = r#"{"name": "svc-x", "groups": ["ml-team"], "owner": "team-ml@corp.example"}"#;
        assert_eq!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts", body).unwrap().status, StatusCode::CREATED);
        assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts", body), Err(Error::Conflict(_))));
        assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts", r#"{"name": "Bad Name", "owner": "x"}"#), Err(Error::BadRequest { .. })));
        let tok = call(&cfg, &store, Some(&admin), Method::POST, "service-accounts/svc-x/tokens", r#"{"ttl_seconds": 600}"#).unwrap().body;
        let p = TokenVerifier::new(&cfg).verify(tok["token"].as_str().unwrap(), NOW).unwrap();
        assert_eq!((p.kind, p.subject.as_str(), p.groups.clone()), (TokenKind::Service, "svc-x", vec!["ml-team".to_string()]));
        assert!(matches!(call(&cfg, &store, Some(&admin), Method::POST, "service-accounts/svc-x/tokens", r#"{"ttl_seconds": 600, "groups": ["admin"]}"#), Err(Error::BadRequest { .. })));
        let shown = call(&cfg, &store, Some(&admin), Method::GET, "service-accounts/svc-x", "").unwrap().body;
        assert_eq!(shown["tokens"][0]["id"], tok["id"]);
        let user = admin_token(&cfg, &["ml-team"]);
        assert!(matches!(call(&cfg, &store, Some(&user), Method::DELETE, "service-accounts/svc-x", ""), Err(Error::Forbidden(_))));
        let gone = call(&cfg, &store, Some(&admin), Method::DELETE, "service-accounts/svc-x", "").unwrap().body;
        assert_eq!(gone["revoked_tokens"], 1);
        assert!(block_on(store.is_revoked(tok["id"].as_str().unwrap())).unwrap());
        assert!(matches!(call(&cfg, &store, Some(&admin), Method::GET, "service-accounts/svc-x", ""), Err(Error::NotFound(_))));
    }

    #[test]
    fn keys_report_what_each_still_verifies() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        call(&cfg, &store, Some(&admin), Method::POST, "tokens", r#"{"subject": "a", "kind": "user", "ttl_seconds": 600}"#).unwrap();
        let keys = call(&cfg, &store, Some(&admin), Method::GET, "keys", "").unwrap().body;
        assert_eq!(keys["signing_kid"], "k1");
        assert_eq!((keys["keys"][0]["tokens_outstanding"].as_u64(), keys["keys"][0]["last_expiry"].as_u64()), (Some(1), Some(NOW + 600)));
    }

    #[test]
    fn bodies_must_be_json_objects() {
        // Found by fuzzing: serde fills a struct from an array, positionally, so `["dev"]`
        // at `PUT /routes/fuzzed` used to write route `dev`.
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        for body in [r#"["dev"]"#, "  [\"dev\", null]", r#""dev""#, "null"] {
            let e = call(&cfg, &store, Some(&admin), Method::PUT, "routes/fuzzed", body).unwrap_err();
            assert!(matches!(&e, Error::BadRequest { field, .. } if field == "body"), "{body}: {e:?}");
        }
        let e = call(&cfg, &store, Some(&admin), Method::POST, "tokens", r#"["alice","user",[],null,600]"#).unwrap_err();
        assert!(matches!(&e, Error::BadRequest { field, .. } if field == "body"), "{e:?}");
        assert!(block_on(store.list_routes()).unwrap().is_empty());
        assert!(call(&cfg, &store, Some(&admin), Method::PUT, "routes/fuzzed", " {}").is_ok());
    }

    #[test]
    fn route_lifecycle_is_audited() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let r = call(&cfg, &store, Some(&auth), Method::PUT, "routes/llama", r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9"}]}"#).unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        let r = call(&cfg, &store, Some(&auth), Method::GET, "routes/llama", "").unwrap();
        assert_eq!(r.body["name"], "llama");
        call(&cfg, &store, Some(&auth), Method::DELETE, "routes/llama", "").unwrap();
        let log = block_on(store.audit(None, 10)).unwrap();
        assert_eq!(log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["route.delete", "route.put"]);
        assert!(log.iter().all(|e| e.actor == "ops" && e.outcome == "ok"));
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_named_by_its_field_never_echoed() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let body = r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9"}],"affinity":{"fallback":"s3cr3t-value"}}"#;
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", body).unwrap_err();
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["param"], "affinity.fallback", "{v}");
        assert!(!v.to_string().contains("s3cr3t") || v["error"]["message"].as_str().is_some_and(|m| m.contains("unknown variant")), "{v}");
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9","weight":"heavy"}]}"#).unwrap_err();
        assert_eq!(serde_json::from_slice::<Value>(&e.body()).unwrap()["error"]["param"], "endpoints[0].weight");
    }

    #[test]
    fn the_audit_entry_keeps_the_calls_trace_id() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        call_at(
            &cfg,
            &store,
            NOW,
            &auth,
            Method::PUT,
            "routes/traced",
            r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:9"}]}"#,
        )
        .unwrap();
        call(
            &cfg,
            &store,
            Some(&auth),
            Method::DELETE,
            "routes/traced",
            "",
        )
        .unwrap();
        let log = block_on(store.audit(None, 10)).unwrap();
        assert_eq!(
            log[1].trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(log[0].trace_id, None);
        let shown = serde_json::to_value(&log[1]).unwrap();
        assert_eq!(shown["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn non_admin_and_missing_tokens_are_refused_and_audited() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let user = admin_token(&cfg, &["ml-team"]);
        assert!(matches!(call(&cfg, &store, Some(&user), Method::PUT, "routes/x", "{}"), Err(Error::Forbidden(_))));
        assert_eq!(call(&cfg, &store, None, Method::DELETE, "tokens/tok_x", ""), Err(Error::MissingToken));
        let log = block_on(store.audit(None, 10)).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].outcome, "missing_token");
        assert_eq!(log[1].outcome, "forbidden");
    }

    #[test]
    fn terraform_routes_are_refused_with_409() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let mut r = Route::new("tf", vec![Endpoint::new("a", "http://h")]);
        r.managed_by = Some("terraform".into());
        block_on(store.put_route(&r, None)).unwrap();
        let auth = admin_token(&cfg, &["admin"]);
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/tf", r#"{"endpoints":[]}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, "routes/tf", "").unwrap_err().status(), StatusCode::CONFLICT);
        // Instances may still take leases on it.
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/tf/endpoints/b", r#"{"url":"http://h2","lease_seconds":30}"#).unwrap();
    }

    #[test]
    fn a_model_is_served_by_one_route_and_names_are_checked() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/a", r#"{"endpoints":[],"models":["llama","llama-3.1-8b"]}"#).unwrap();
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/b", r#"{"endpoints":[],"models":["mistral","llama"]}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert!(e.to_string().contains("models[1]") && e.to_string().contains("route `a`"), "{e}");
        // Its own route may keep it; once route a lets it go, b may take it.
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/a", r#"{"endpoints":[],"models":["llama-3.1-8b","llama"]}"#).unwrap();
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/a", r#"{"endpoints":[],"models":["llama-3.1-8b"]}"#).unwrap();
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/b", r#"{"endpoints":[],"models":["llama"]}"#).unwrap();
        for (body, field) in [
            (r#"{"endpoints":[],"models":["x","x"]}"#, "models[1]"),
            (r#"{"endpoints":[],"models":["has space"]}"#, "models[0]"),
            (r#"{"endpoints":[],"models":[""]}"#, "models[0]"),
            (r#"{"endpoints":[],"models":"llama"}"#, "models"),
        ] {
            let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/c", body).unwrap_err();
            assert!(matches!(e, Error::BadRequest { field: ref f, .. } if f == field), "{body}: {e:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("m{i}")).collect();
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/c", &serde_json::json!({"endpoints": [], "models": many}).to_string()).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "models"), "{e:?}");
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/v1", r#"{"endpoints":[]}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "`v1` is model routing's prefix: {e:?}");
    }

    #[test]
    fn budgets_are_set_listed_with_their_use_and_removed() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let put = call(&cfg, &store, Some(&auth), Method::PUT, "budgets/contracts/C-17", r#"{"tokens_per_minute": 1000, "tokens_per_month": 5000000}"#).unwrap();
        assert_eq!((put.body["kind"].as_str(), put.body["id"].as_str(), put.body["tokens_per_minute"].as_u64()), (Some("contracts"), Some("C-17"), Some(1000)));
        store.add_budget_use("contracts/C-17", 250, NOW);
        let list = call(&cfg, &store, Some(&auth), Method::GET, "budgets", "").unwrap();
        let b = &list.body["budgets"][0];
        assert_eq!((b["kind"].as_str(), b["id"].as_str(), b["used"]["minute"].as_u64(), b["used"]["month"].as_u64()), (Some("contracts"), Some("C-17"), Some(250), Some(250)));
        assert!(b.get("tokens_per_day").is_none(), "unset limits are left out");
        for (path, body, field) in [
            ("budgets/partners/x", r#"{"tokens_per_day": 5}"#, "kind"),
            ("budgets/tokens/tok_a", r#"{}"#, "tokens_per_minute"),
            ("budgets/tokens/tok_a", r#"{"tokens_per_day": 0}"#, "tokens_per_day"),
            ("budgets/tokens/tok_a", r#"{"tokens_per_hour": 5}"#, "tokens_per_hour"),
        ] {
            let e = call(&cfg, &store, Some(&auth), Method::PUT, path, body).unwrap_err();
            assert!(matches!(e, Error::BadRequest { ref field, .. } if field == field), "{path} {body}: {e:?}");
            let _ = field;
        }
        call(&cfg, &store, Some(&auth), Method::DELETE, "budgets/contracts/C-17", "").unwrap();
        assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, "budgets/contracts/C-17", "").unwrap_err().status(), StatusCode::NOT_FOUND);
        let log = block_on(store.audit(None, 10)).unwrap();
        assert!(log.iter().any(|e| e.action == "budget.put" && e.object == "budget/contracts/C-17"));
        assert!(log.iter().any(|e| e.action == "budget.delete" && e.outcome == "ok"));
        // Terraform's budgets are Terraform's.
        let tf = crate::budget::TokenBudget { tokens_per_day: Some(9), managed_by: Some(crate::budget::Owner::Terraform), ..Default::default() };
        block_on(store.put_budget("contracts/C-tf", &tf)).unwrap();
        assert_eq!(call(&cfg, &store, Some(&auth), Method::PUT, "budgets/contracts/C-tf", r#"{"tokens_per_day": 99}"#).unwrap_err().status(), StatusCode::CONFLICT);
        assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, "budgets/contracts/C-tf", "").unwrap_err().status(), StatusCode::CONFLICT);
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "budgets/contracts/C-x", r#"{"tokens_per_day": 9, "managed_by": "terraform"}"#).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "managed_by"), "{e:?}");
        // Not for non-admins.
        let user = admin_token(&cfg, &["ml-team"]);
        assert_eq!(call(&cfg, &store, Some(&user), Method::GET, "budgets", "").unwrap_err().status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"endpoints":[{"id":"a","url":"http://h","weight":0}]}"#).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "endpoints[0].weight"), "{e:?}");
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"endpoints":[],"colour":"red"}"#).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "colour"), "{e:?}");
        let e = call(&cfg, &store, Some(&auth), Method::POST, "tokens", r#"{"subject":"a","kind":"user","groups":[]}"#).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "ttl_seconds"), "{e:?}");
        assert!(call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", "not json").is_err());
        assert!(call(&cfg, &store, Some(&auth), Method::PUT, "routes/_x", "{}").is_err());
    }

    #[test]
    fn tokens_issue_list_revoke() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let r = call(&cfg, &store, Some(&auth), Method::POST, "tokens", r#"{"subject":"bob","kind":"user","groups":["ml-team"],"ttl_seconds":600,"description":"notebook"}"#).unwrap();
        let id = r.body["id"].as_str().unwrap().to_string();
        let token = r.body["token"].as_str().unwrap();
        assert!(TokenVerifier::new(&cfg).verify(token, NOW).is_ok());
        let list = call(&cfg, &store, Some(&auth), Method::GET, "tokens", "").unwrap();
        let listed = serde_json::to_string(&list.body).unwrap();
        assert!(listed.contains(&id) && !listed.contains(token), "the list never holds the token");
        call(&cfg, &store, Some(&auth), Method::DELETE, &format!("tokens/{id}"), "").unwrap();
        assert!(block_on(store.is_revoked(&id)).unwrap());
        assert_eq!(call(&cfg, &store, Some(&auth), Method::DELETE, &format!("tokens/{id}"), "").unwrap_err().status(), StatusCode::CONFLICT);
    }

    #[test]
    fn ephemeral_routes_expire() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let r = call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", r#"{"url":"http://h:1","ttl_seconds":120,"groups":["dev"]}"#).unwrap();
        let id = r.body["id"].as_str().unwrap();
        assert!(is_valid_ephemeral_id(id));
        let route = block_on(store.ephemeral(id)).unwrap().unwrap();
        assert!(route.is_active(NOW + 119) && !route.is_active(NOW + 120));
        assert!(call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", r#"{"url":"http://h:1","groups":[]}"#).is_err());
    }

    #[test]
    fn a_route_cannot_take_the_admin_host() {
        let mut cfg = test_config();
        cfg.admin_host = Some("admin.example.com".into());
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let e = call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"host":"admin.example.com"}"#).unwrap_err();
        assert!(matches!(e, Error::BadRequest { ref field, .. } if field == "host"), "{e:?}");
        assert!(call(&cfg, &store, Some(&auth), Method::PUT, "routes/x", r#"{"host":"models.example.com"}"#).is_ok());
    }

    #[test]
    fn admin_writes_refuse_local_upstreams_and_unknown_bindings() {
        let mut cfg = test_config();
        let store = MemoryStore::default();
        let auth = admin_token(&cfg, &["admin"]);
        let field = |r: Result<AdminReply>| match r {
            Err(Error::BadRequest { field, .. }) => field,
            other => panic!("not a 400: {other:?}"),
        };
        let route = r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:8000"},{"id":"b","url":"http://169.254.169.254/"}]}"#;
        assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", route)), "endpoints[1].url");
        let tunnel = r#"{"endpoints":[{"id":"a","url":"http://10.0.0.1:8000","via":"VPC_X"}]}"#;
        assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", tunnel)), "endpoints[0].via");
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", r#"{"endpoints":[]}"#).unwrap();
        let lease = r#"{"url":"http://2130706433:8000","lease_seconds":30}"#;
        assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/l", lease)), "url");
        let lease_via = r#"{"url":"http://10.0.0.1:8000","lease_seconds":30,"via":"VPC_X"}"#;
        assert_eq!(field(call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/l", lease_via)), "via");
        let eph = r#"{"url":"http://localhost:8000","ttl_seconds":60}"#;
        assert_eq!(field(call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", eph)), "url");
        assert!(block_on(store.leases("r")).unwrap().is_empty());

        cfg.upstreams = crate::route::UpstreamPolicy { allow_local: true, via_bindings: vec!["VPC_X".into()] };
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/r", tunnel).unwrap();
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/l", lease).unwrap();
        call(&cfg, &store, Some(&auth), Method::PUT, "routes/r/endpoints/m", lease_via).unwrap();
        call(&cfg, &store, Some(&auth), Method::POST, "ephemeral", eph).unwrap();
    }

    /// [`call`] at `now`, carrying a trace id.
    fn call_at(cfg: &Config, store: &MemoryStore, now: u64, auth: &http::HeaderValue, method: Method, path: &str, body: &str) -> Result<AdminReply> {
        admin_request(cfg, store, now, Some(auth), method, path, body, Some("4bf92f3577b34da6a3ce929d0e0e4736"))
    }

    /// A registrar token issued through the admin API, as its bearer header.
    fn registrar(cfg: &Config, store: &MemoryStore, admin: &http::HeaderValue, subject: &str, scope: &str) -> http::HeaderValue {
        let body = format!(r#"{{"subject": "{subject}", "kind": "registrar", "routes": ["llama"], "ttl_seconds": 3600, "registrar": {scope}}}"#);
        let r = call(cfg, store, Some(admin), Method::POST, "tokens", &body).unwrap();
        http::HeaderValue::from_str(&format!("Bearer {}", r.body["token"].as_str().unwrap())).unwrap()
    }

    fn field_of(r: Result<AdminReply>) -> String {
        match r {
            Err(Error::BadRequest { field, .. }) => field,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn registrar_tokens_are_issued_by_admins_with_a_valid_scope() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        let issue = |body: &str| call(&cfg, &store, Some(&admin), Method::POST, "tokens", body);
        let base = r#""subject": "gpu-7", "kind": "registrar", "ttl_seconds": 3600"#;
        assert_eq!(field_of(issue(&format!(r#"{{{base}, "routes": ["llama"]}}"#))), "registrar");
        assert_eq!(field_of(issue(&format!(r#"{{{base}, "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "routes");
        assert_eq!(field_of(issue(&format!(r#"{{{base}, "routes": [], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "routes");
        let scoped = |scope: &str| issue(&format!(r#"{{{base}, "routes": ["llama"], "registrar": {scope}}}"#));
        assert_eq!(field_of(scoped(r#"{"hosts": []}"#)), "registrar.hosts");
        assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24", "10.0.2.5/24"]}"#)), "registrar.hosts[1]");
        assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24"], "max_weight": 1001}"#)), "registrar.max_weight");
        assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24"], "max_lease_seconds": 86401}"#)), "registrar.max_lease_seconds");
        assert_eq!(field_of(scoped(r#"{"hosts": ["10.0.1.0/24"], "colour": 1}"#)), "colour");
        assert_eq!(field_of(issue(&format!(r#"{{{base}, "groups": ["admin"], "routes": ["llama"], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "groups");
        assert_eq!(field_of(issue(&format!(r#"{{{base}, "groups": ["ml-team"], "routes": ["llama"], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#))), "groups");
        let user = r#"{"subject": "bob", "kind": "user", "ttl_seconds": 600, "registrar": {"hosts": ["10.0.1.0/24"]}}"#;
        assert_eq!(field_of(issue(user)), "registrar");
        // Only admins issue them.
        let reg = registrar(&cfg, &store, &admin, "gpu-7", r#"{"hosts": ["10.0.1.0/24"], "max_weight": 4}"#);
        let again = format!(r#"{{{base}, "routes": ["llama"], "registrar": {{"hosts": ["10.0.1.0/24"]}}}}"#);
        assert!(matches!(call(&cfg, &store, Some(&reg), Method::POST, "tokens", &again), Err(Error::Forbidden(_))));
        // Listed with the scope (defaults filled in), never the secret.
        let listed = call(&cfg, &store, Some(&admin), Method::GET, "tokens", "").unwrap().body;
        let t = &listed["tokens"][0];
        assert_eq!((t["kind"].as_str(), &t["groups"], &t["routes"]), (Some("registrar"), &json!([]), &json!(["llama"])));
        assert_eq!(t["registrar"], json!({"hosts": ["10.0.1.0/24"], "max_weight": 4, "max_lease_seconds": 300, "max_endpoints": 1}));
        assert!(!listed.to_string().contains(reg.to_str().unwrap().trim_start_matches("Bearer ")));
    }

    #[test]
    fn a_registrar_registers_renews_and_removes_only_its_own_leases() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", r#"{"endpoints":[{"id":"a","url":"http://10.0.1.1:8000"}]}"#).unwrap();
        call(&cfg, &store, Some(&admin), Method::PUT, "routes/other", r#"{"endpoints":[]}"#).unwrap();
        let scope = r#"{"hosts": ["10.0.1.0/24", "gpu-*.vllm.internal"], "max_weight": 4, "max_lease_seconds": 60}"#;
        let reg = registrar(&cfg, &store, &admin, "gpu-host-7", scope);
        let at = |now: u64, who: &http::HeaderValue, m: Method, path: &str, body: &str| call_at(&cfg, &store, now, who, m, path, body);
        let put = |who: &http::HeaderValue, path: &str, body: &str| at(NOW, who, Method::PUT, path, body);

        // Its own lease, within its limits: registered, renewed, recorded as its own.
        let lease = r#"{"url": "http://10.0.1.7:8000", "weight": 4, "lease_seconds": 60}"#;
        put(&reg, "routes/llama/endpoints/gpu-7", lease).unwrap();
        put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://gpu-7.vllm.internal:8000", "lease_seconds": 30}"#).unwrap();
        let stored = block_on(store.leases("llama")).unwrap();
        assert_eq!((stored.len(), stored[0].registered_by.as_deref(), stored[0].lease_expires_at), (1, Some("gpu-host-7"), Some(NOW + 30)));
        let shown = call(&cfg, &store, Some(&admin), Method::GET, "routes/llama", "").unwrap().body;
        assert_eq!(shown["leased_endpoints"][0]["registered_by"], "gpu-host-7", "admins see who registered it");

        // Outside its scope.
        assert!(matches!(put(&reg, "routes/other/endpoints/gpu-7", lease), Err(Error::Forbidden(_))), "another route");
        assert!(matches!(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://10.0.2.7:8000", "lease_seconds": 60}"#), Err(Error::Forbidden(m)) if m.contains("`url`")));
        assert!(matches!(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://cpu-7.vllm.internal:8000", "lease_seconds": 60}"#), Err(Error::Forbidden(_))));
        assert_eq!(field_of(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://10.0.1.7:8000", "weight": 5, "lease_seconds": 60}"#)), "weight");
        assert_eq!(field_of(put(&reg, "routes/llama/endpoints/gpu-7", r#"{"url": "http://10.0.1.7:8000", "lease_seconds": 61}"#)), "lease_seconds");
        assert!(matches!(put(&reg, "routes/llama/endpoints/a", lease), Err(Error::Forbidden(_))), "the route's own endpoint");
        assert!(matches!(put(&reg, "routes/llama/endpoints/gpu-8", lease), Err(Error::Forbidden(m)) if m.contains("max_endpoints")), "one live lease per route by default");

        // Someone else's leases: an admin's, another registrar's.
        put(&admin, "routes/llama/endpoints/adm", r#"{"url": "http://10.0.1.9:8000", "lease_seconds": 600}"#).unwrap();
        let other = registrar(&cfg, &store, &admin, "gpu-host-8", scope);
        put(&other, "routes/llama/endpoints/gpu-8", r#"{"url": "http://10.0.1.8:8000", "lease_seconds": 60}"#).unwrap();
        for id in ["adm", "gpu-8"] {
            let path = format!("routes/llama/endpoints/{id}");
            assert!(matches!(put(&reg, &path, lease), Err(Error::Forbidden(m)) if m.contains("someone else")), "{id}");
            assert!(matches!(at(NOW, &reg, Method::DELETE, &path, ""), Err(Error::Forbidden(_))), "{id}");
        }
        assert!(matches!(at(NOW, &reg, Method::DELETE, "routes/llama/endpoints/nope", ""), Err(Error::NotFound(_))), "as for admins");
        assert!(matches!(at(NOW, &reg, Method::DELETE, "routes/other/endpoints/nope", ""), Err(Error::Forbidden(_))));
        // Its own lease it removes; a lease that has ended is free to take.
        let later = NOW + 61;
        at(later, &reg, Method::DELETE, "routes/llama/endpoints/gpu-7", "").unwrap();
        at(later, &reg, Method::PUT, "routes/llama/endpoints/gpu-8", r#"{"url": "http://10.0.1.7:8000", "lease_seconds": 60}"#).unwrap();
        let gpu8 = block_on(store.leases("llama")).unwrap().into_iter().find(|e| e.id == "gpu-8").unwrap();
        assert_eq!(gpu8.registered_by.as_deref(), Some("gpu-host-7"));

        // An admin's write makes the lease the admins'; the registrar can no longer touch it.
        put(&admin, "routes/llama/endpoints/gpu-8", r#"{"url": "http://10.0.1.7:8000", "weight": 900, "lease_seconds": 600}"#).unwrap();
        let gpu8 = block_on(store.leases("llama")).unwrap().into_iter().find(|e| e.id == "gpu-8").unwrap();
        assert_eq!((gpu8.registered_by, gpu8.weight), (None, 900));
        assert!(matches!(at(later, &reg, Method::DELETE, "routes/llama/endpoints/gpu-8", ""), Err(Error::Forbidden(_))));
        call(&cfg, &store, Some(&admin), Method::DELETE, "routes/llama/endpoints/gpu-8", "").unwrap();

        // Every other admin call, reads included, and the data plane's `/me`.
        for (m, path, body) in [
            (Method::GET, "routes", ""),
            (Method::GET, "routes/llama", ""),
            (Method::PUT, "routes/llama", r#"{"endpoints":[]}"#),
            (Method::DELETE, "routes/llama", ""),
            (Method::POST, "tokens", r#"{"subject": "x", "kind": "user", "ttl_seconds": 600}"#),
            (Method::GET, "tokens", ""),
            (Method::POST, "ephemeral", r#"{"url": "http://10.0.1.7:8000", "ttl_seconds": 60}"#),
            (Method::GET, "audit", ""),
            (Method::GET, "metrics", ""),
            (Method::POST, "probes", ""),
            (Method::GET, "me", ""),
            (Method::POST, "me/tokens", r#"{"ttl_seconds": 600}"#),
        ] {
            assert!(matches!(at(NOW, &reg, m.clone(), path, body), Err(Error::Forbidden(_))), "{m} {path}");
        }

        // Audited as the registrar, allowed and refused alike.
        let audit = block_on(store.audit(None, 1000)).unwrap();
        let mine: Vec<(&str, &str, &str)> =
            audit.iter().filter(|e| e.actor == "gpu-host-7").map(|e| (e.action.as_str(), e.object.as_str(), e.outcome.as_str())).collect();
        assert!(mine.contains(&("endpoint.register", "route/llama/endpoint/gpu-7", "ok")));
        assert!(mine.contains(&("endpoint.register", "route/other/endpoint/gpu-7", "forbidden")));
        assert!(mine.contains(&("endpoint.register", "route/llama/endpoint/gpu-7", "invalid_field")));
        assert!(mine.contains(&("endpoint.deregister", "route/llama/endpoint/adm", "forbidden")));
        assert!(mine.contains(&("endpoint.deregister", "route/llama/endpoint/gpu-7", "ok")));
        assert!(mine.contains(&("admin.write", "POST /_gateway/tokens", "forbidden")));
        assert!(!mine.iter().any(|(a, _, _)| *a == "token.issue"));
    }

    #[test]
    fn registrar_leases_still_meet_the_upstream_policy() {
        let mut cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", r#"{"endpoints":[]}"#).unwrap();
        let reg = registrar(&cfg, &store, &admin, "gpu-local", r#"{"hosts": ["127.0.0.1", "169.254.0.0/16", "10.0.1.0/24"], "max_endpoints": 4}"#);
        let put = |cfg: &Config, id: &str, body: &str| call_at(cfg, &store, NOW, &reg, Method::PUT, &format!("routes/llama/endpoints/{id}"), body);
        // Listed, but the gateway's surroundings are still refused, and `via` needs a configured binding.
        assert_eq!(field_of(put(&cfg, "l", r#"{"url": "http://127.0.0.1:8000", "lease_seconds": 60}"#)), "url");
        assert_eq!(field_of(put(&cfg, "m", r#"{"url": "http://169.254.169.254/", "lease_seconds": 60}"#)), "url");
        assert_eq!(field_of(put(&cfg, "v", r#"{"url": "http://10.0.1.5:8000", "via": "VPC_X", "lease_seconds": 60}"#)), "via");
        cfg.upstreams = crate::route::UpstreamPolicy { allow_local: true, via_bindings: vec!["VPC_X".into()] };
        put(&cfg, "l", r#"{"url": "http://127.0.0.1:8000", "lease_seconds": 60}"#).unwrap();
        put(&cfg, "v", r#"{"url": "http://10.0.1.5:8000", "via": "VPC_X", "lease_seconds": 60}"#).unwrap();
        // Local upstreams allowed or not, the host list still binds.
        assert!(matches!(put(&cfg, "x", r#"{"url": "http://localhost:8000", "lease_seconds": 60}"#), Err(Error::Forbidden(_))));
    }

    #[test]
    fn routes_cannot_claim_a_registrar() {
        let cfg = test_config();
        let store = MemoryStore::default();
        let admin = admin_token(&cfg, &["admin"]);
        let body = r#"{"endpoints":[{"id":"a","url":"http://10.0.1.1:8000","registered_by":"gpu-host-7"}]}"#;
        assert_eq!(field_of(call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama", body)), "endpoints[0].registered_by");
        let lease = r#"{"url":"http://10.0.1.1:8000","lease_seconds":60,"registered_by":"gpu-host-7"}"#;
        assert_eq!(field_of(call(&cfg, &store, Some(&admin), Method::PUT, "routes/llama/endpoints/b", lease)), "registered_by");
    }

    #[test]
    fn healthz_needs_no_token() {
        let cfg = test_config();
        let store = MemoryStore::default();
        assert_eq!(call(&cfg, &store, None, Method::GET, "healthz", "").unwrap().body["status"], "ok");
    }
}
