//! A parsed admin call ([`AdminCommand`]), its request bodies, and its reply.

use super::*;

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

impl EphemeralRequest {
    /// The route this request makes, named `name`, ending at `expires_at` (Unix seconds).
    pub(super) fn route(&self, name: String, expires_at: u64) -> Route {
        let mut route = Route::new(name, vec![Endpoint::new("e0", self.url.clone())]);
        route.auth.groups = self.groups.clone();
        route.upstream_api_key_secret = self.upstream_api_key_secret.clone();
        route.expires_at = Some(expires_at);
        route
    }
}

impl ServiceAccountRequest {
    /// What the account's tokens would be asked for at most: its groups, for `ttl` seconds.
    pub(super) fn token_request(&self, ttl: u64) -> TokenRequest {
        TokenRequest {
            subject: self.name.clone(),
            kind: TokenKind::Service,
            groups: self.groups.clone(),
            routes: None,
            ttl_seconds: Some(ttl),
            description: self.description.clone(),
            metadata: Default::default(),
            rate_limit_rpm: None,
            registrar: None,
        }
    }
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
    pub(super) fn ok(body: Value) -> Self {
        AdminReply { status: StatusCode::OK, body, document: None }
    }
    pub(super) fn with_status(status: StatusCode, body: Value) -> Self {
        AdminReply { status, body, document: None }
    }
    pub(super) fn document(document: Document) -> Self {
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

    /// The checks a call's content needs beyond its shape: those that read the configuration
    /// (the upstream policy, the admin host, token lifetimes) but no stored state. `execute`
    /// runs them once the caller may make the call, before anything is read, so a refused call
    /// is audited under its own action.
    /// What depends on stored state (conflicts, Terraform's routes, a registrar's holdings)
    /// or on the caller (a registrar's scope, a user's groups) is decided where it is read.
    pub fn validate(&self, cfg: &Config) -> Result<()> {
        match self {
            AdminCommand::PutRoute(route) => {
                for (i, ep) in route.endpoints.iter().enumerate() {
                    cfg.upstreams.check(ep, &format!("endpoints[{i}]"))?;
                }
                if route.host.is_some() && route.host == cfg.admin_host {
                    return Err(Error::bad_request("host", "is the admin API's own host (GATEWAY_ADMIN_HOST), which never proxies"));
                }
            }
            AdminCommand::PutEndpoint { endpoint, .. } => cfg.upstreams.check(endpoint, "")?,
            AdminCommand::CreateEphemeral(req) => {
                let ttl = req.ttl_seconds.ok_or_else(|| Error::bad_request("ttl_seconds", "is required"))?;
                if !(MIN_EPHEMERAL_SECONDS..=MAX_EPHEMERAL_SECONDS).contains(&ttl) {
                    return Err(Error::bad_request("ttl_seconds", format!("must be between {MIN_EPHEMERAL_SECONDS} and {MAX_EPHEMERAL_SECONDS}")));
                }
                // Ephemeral ids are not route names; the rest is checked under a stand-in name
                // (its end is set when the route is made; validity does not depend on it).
                let route = req.route("ephemeral".into(), u64::MAX);
                cfg.upstreams.check(&route.endpoints[0], "")?;
                route.validate().map_err(|e| match e {
                    Error::BadRequest { field, message } => Error::bad_request(field.replace("endpoints[0].", ""), message),
                    other => other,
                })?;
            }
            AdminCommand::IssueToken(req) => {
                req.validate(cfg)?;
            }
            AdminCommand::CreateServiceAccount(req) => {
                req.token_request(cfg.max_token_ttl).validate(cfg)?;
                if req.owner.trim().is_empty() || req.owner.len() > 128 || req.owner.chars().any(char::is_control) {
                    return Err(Error::bad_request("owner", "must be 1-128 printable characters"));
                }
            }
            AdminCommand::IssueServiceToken { req, .. } => {
                if req.groups.is_some() {
                    return Err(Error::bad_request("groups", "a service account's tokens carry the account's groups"));
                }
            }
            AdminCommand::IssueMyToken(req) => {
                if req.rate_limit_rpm.is_some() {
                    return Err(Error::bad_request("rate_limit_rpm", "is set by an admin; self-service tokens take the route's limit"));
                }
                let max = cfg.max_token_ttl.min(MAX_SELF_SERVICE_TTL);
                if req.ttl_seconds.is_some_and(|t| t > max) {
                    return Err(Error::bad_request("ttl_seconds", format!("self-service tokens live at most {max} seconds")));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The audit action and object of a write; `None` for reads.
    pub(super) fn audit_label(&self) -> Option<(&'static str, String)> {
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
    /// Where the ids it makes come from ([`crate::token::OsRandom`] in a deployment).
    pub ids: &'a dyn crate::token::IdSource,
}
