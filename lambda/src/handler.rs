//! One invocation: parse, let core decide, then forward upstream (streaming the
//! answer back, failing over on connection errors) or answer an admin call.
//! Every request that resolved to a route is metered and recorded ([`Metered`]).

use crate::metered::{Metered, Record, Recording};
use crate::store::DynamoStore;
use bytes::Bytes;
use futures_util::TryStreamExt;
use gateway_core::admin::{self, AdminRequest};
use gateway_core::attempts::{Forwarding, Outcome, Step};
use gateway_core::cache::CachedSource;
use gateway_core::forward::{response_headers, FailureMemory, ForwardPlan};
use gateway_core::gateway::{check_transport, resolve, resolve_model, security_headers, AccessRecord, Decision, RequestContext, Resolution, Transport};
use gateway_core::load::InFlight;
use gateway_core::meter::Meter;
use gateway_core::metrics::RequestSample;
use gateway_core::stream::{is_event_stream, Fault, Guarded};
use gateway_core::token::IdSource;
use gateway_core::trace::Trace;
use gateway_core::{Config, Error};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use lambda_http::RequestExt;
use std::collections::HashMap;
use std::convert::Infallible;
use gateway_core::batch::{Batch, Flush};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::Instrument;

/// Errors a streamed body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body: either a whole JSON document or the upstream's stream.
pub type GwBody = UnsyncBoxBody<Bytes, BoxError>;

/// What lives for the whole life of a Lambda instance.
pub struct App {
    cfg: Config,
    /// The data plane's reads, cached for `GATEWAY_CACHE_SECONDS` in this instance, refreshed
    /// off the request path, used up to `GATEWAY_STALE_IF_ERROR_SECONDS` longer while
    /// DynamoDB fails ([`gateway_core::cache`]).
    routes: CachedSource<DynamoStore>,
    /// Writes, admin reads and counters go to DynamoDB directly.
    store: DynamoStore,
    /// One kept-alive client per connect timeout in use (reqwest sets it per client).
    clients: Mutex<HashMap<u64, reqwest::Client>>,
    failures: Mutex<FailureMemory>,
    /// Requests in flight from this instance, by endpoint ([`InFlightGuard`]).
    in_flight: Arc<Mutex<InFlight>>,
    /// CloudWatch EMF namespace (`GATEWAY_EMF_NAMESPACE`); `None` writes no EMF lines.
    emf_namespace: Option<String>,
    /// What upstream clients trust and present ([`crate::tls`]).
    tls: crate::tls::UpstreamTls,
    /// Samples of finished requests not yet written ([`gateway_core::batch`]).
    batch: Mutex<Batch>,
    /// One write of the batch at a time (a shutdown's flush waits for a running one).
    flushing: tokio::sync::Mutex<()>,
}

impl App {
    /// Builds the instance state from settings read once at start; nothing here does I/O
    /// or reads the environment.
    pub fn new(cfg: Config, settings: &crate::settings::Settings, dynamo: aws_sdk_dynamodb::Client, table: String) -> Self {
        let store = DynamoStore::new(dynamo, table);
        let routes = data_plane_cache(&cfg, store.clone());
        let emf_namespace = settings.emf_namespace.clone();
        App {
            cfg,
            routes,
            store,
            clients: Mutex::default(),
            failures: Mutex::default(),
            in_flight: Arc::default(),
            emf_namespace,
            tls: Default::default(),
            batch: Mutex::new(Batch::new(instance_id())),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// The same instance reaching upstreams with `tls`, probes included. (Upstream API keys
    /// are in the configuration: [`Config::upstream_secrets`].)
    pub fn with_upstream(mut self, tls: crate::tls::UpstreamTls) -> Self {
        let store = self.store.clone().with_tls(tls.clone());
        self.routes = data_plane_cache(&self.cfg, store.clone());
        self.store = store;
        self.tls = tls;
        self
    }

    /// Records one finished request: its EMF line at once, its counters into the
    /// instance's batch (written at most about once a second, off every request's path;
    /// the token's use is among them: `tok:{id}`, read back when tokens are listed), and
    /// its budgets' use at once (the next request must see it).
    async fn record(self: &Arc<Self>, sample: RequestSample, request_id: &str, arrived_ms: u64) {
        if let Some(ns) = &self.emf_namespace {
            // Raw JSON on stdout (not through tracing): CloudWatch Logs reads it as EMF.
            println!("{}", crate::emf::line(ns, &sample, request_id, arrived_ms));
        }
        let due = self.batch.lock().unwrap_or_else(|e| e.into_inner()).add(&sample, now_ms());
        match due {
            Flush::Now => {
                let app = self.clone();
                tokio::spawn(async move { app.flush().await });
            }
            Flush::In(ms) => {
                let app = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    app.flush().await;
                });
            }
            Flush::Idle => {}
        }
        // The answer's tokens count against its budgets.
        let tokens = sample.llm_tokens();
        if tokens > 0 && !sample.budget_keys.is_empty() {
            if let Err(e) = self.store.add_budget_use(&sample.budget_keys, tokens, sample.at).await {
                tracing::warn!(request_id, error = %e, "budget use not counted");
            }
        }
    }

    /// Writes the instance's batch: one idempotent DynamoDB transaction per part (ADDs,
    /// with the part's id as a marker), its high-water marks after. A part whose write
    /// failed is kept under its id and sent again with the next write, so nothing is lost
    /// and nothing counted twice. Run by a timer, and at shutdown ([`App::shutdown`]).
    pub async fn flush(&self) {
        let _one = self.flushing.lock().await;
        let parts = self.batch.lock().unwrap_or_else(|e| e.into_inner()).take();
        if parts.is_empty() {
            return;
        }
        let results = futures_util::future::join_all(parts.iter().map(|p| self.store.record_part(p, now_secs()))).await;
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        for (part, result) in parts.into_iter().zip(results) {
            if let Err(e) = result {
                tracing::warn!(part = part.id.as_str(), error = %e, "metrics not recorded; kept for the next write");
                batch.failed(part);
            }
        }
    }

    /// What the instance does when Lambda retires it (SIGTERM, about 500 ms): write what
    /// its batch holds.
    pub async fn shutdown(&self) {
        match tokio::time::timeout(Duration::from_millis(450), self.flush()).await {
            Ok(()) => tracing::info!("batch written at shutdown"),
            Err(_) => tracing::error!("batch not written within the shutdown's time"),
        }
    }

    /// What records the sample of the request `request_id` that arrived at `arrived_ms`.
    fn recorder(self: &Arc<Self>, request_id: &str, arrived_ms: u64) -> Record {
        let (app, request_id) = (self.clone(), request_id.to_string());
        Box::new(move |sample| -> Recording { Box::pin(async move { app.record(sample, &request_id, arrived_ms).await }) })
    }

    fn client(&self, connect_ms: u64) -> Result<reqwest::Client, Error> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&connect_ms) {
            return Ok(c.clone());
        }
        let c = self
            .tls
            .apply(reqwest::Client::builder())
            .connect_timeout(Duration::from_millis(connect_ms))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        clients.insert(connect_ms, c.clone());
        Ok(c)
    }
}

/// The data plane's reads through core's cache, by the configured bounds, each
/// DynamoDB read bound by `GATEWAY_STORE_TIMEOUT_MS` (admin calls and metric
/// writes keep the longer bound of the client they were given: a write cut short may still
/// have been applied).
fn data_plane_cache(cfg: &Config, store: DynamoStore) -> CachedSource<DynamoStore> {
    let store = store.with_timeout(Duration::from_millis(cfg.store_timeout_ms));
    CachedSource::new(store, cfg.cache_seconds * 1000, now_ms).with_stale_if_error(cfg.stale_if_error_seconds * 1000)
}

/// Refreshes what the request found stale in the cache, beside the request (spawned: the
/// request never waits on it; it runs while the invocation streams its answer).
fn refresh_behind(app: &Arc<App>) {
    if !app.routes.has_stale() {
        return;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let done = app.routes.refresh_stale().await;
        if let Some(e) = done.first_error {
            let detail = match &e {
                Error::StoreUnavailable(d) | Error::Internal(d) => d.clone(),
                other => other.to_string(),
            };
            tracing::warn!(refreshed = done.refreshed, failed = done.failed, detail, "cache refresh failed; serving kept answers within GATEWAY_STALE_IF_ERROR_SECONDS");
        }
    });
}

/// A random name for this instance (batch ids; not a secret).
fn instance_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    // The standard library's per-process random hash keys: random enough to tell instances apart.
    let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), nanos);
    format!("{random:016x}{:x}", std::process::id())
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn full(bytes: impl Into<Bytes>) -> GwBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed_unsync()
}

fn with_request_id(mut res: http::Response<Vec<u8>>, request_id: &str) -> http::Response<Vec<u8>> {
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

fn respond(res: http::Response<Vec<u8>>, request_id: &str) -> http::Response<GwBody> {
    with_request_id(res, request_id).map(full)
}

/// The error's response; internal details go to the log only.
fn error_response(e: &Error, request_id: &str) -> http::Response<Vec<u8>> {
    if let Error::Internal(detail) = e {
        tracing::error!(request_id, detail = detail.as_str(), "internal error");
    }
    if let Error::StoreUnavailable(detail) = e {
        tracing::error!(request_id, detail = detail.as_str(), "store unavailable");
    }
    with_request_id(e.into_response(), request_id)
}

fn error(e: &Error, request_id: &str) -> http::Response<GwBody> {
    error_response(e, request_id).map(full)
}

/// The response streamed through a [`Metered`] body that records the request at its end.
fn metered<S, E>(res: http::Response<S>, meter: Meter, app: &Arc<App>, started: Instant, request_id: &str, arrived_ms: u64, strip_usage: bool) -> http::Response<GwBody>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Into<BoxError> + Unpin + Send + 'static,
{
    let (parts, stream) = res.into_parts();
    let body = Metered::new(stream, meter, started, request_id, app.recorder(request_id, arrived_ms))
        .stripping_usage(strip_usage)
        .map_ok(http_body::Frame::data)
        .map_err(Into::into);
    http::Response::from_parts(parts, StreamBody::new(body).boxed_unsync())
}

/// The gateway's own answer to a request that has a plan (429, 413, 502, 504…), metered like
/// a forwarded one.
fn refuse(e: &Error, mut meter: Meter, app: &Arc<App>, started: Instant, request_id: &str, arrived_ms: u64) -> http::Response<GwBody> {
    meter.refused(e.status().as_u16());
    let res = error_response(e, request_id).map(|b| futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(b))]));
    metered(res, meter, app, started, request_id, arrived_ms, false)
}

/// The request's [`AccessRecord`], as the fields of a `request` event (its span carries the trace id).
fn log(request_id: &str, route: Option<&str>, endpoint: Option<&str>, status: u16, started: Instant, token_id: Option<&str>) {
    let r = AccessRecord { request_id, trace_id: None, route, endpoint, status, latency_ms: started.elapsed().as_secs_f64() * 1000.0, token_id };
    tracing::info!(request_id = r.request_id, route = r.route, endpoint = r.endpoint, status = r.status, latency_ms = r.latency_ms, token_id = r.token_id, "request");
}

/// One request in flight to an endpoint, counted in the instance until dropped.
struct InFlightGuard {
    table: Arc<Mutex<InFlight>>,
    key: String,
}

impl InFlightGuard {
    fn start(table: &Arc<Mutex<InFlight>>, route: &str, endpoint: &str) -> Self {
        let key = table.lock().map(|mut t| t.start(route, endpoint)).unwrap_or_default();
        InFlightGuard { table: table.clone(), key }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.end(&self.key);
        }
    }
}

/// Serves one request. Never fails: every error becomes an OpenAI-shaped response.
pub async fn handle(
    app: Arc<App>,
    req: lambda_http::Request,
) -> Result<http::Response<GwBody>, Infallible> {
    let request_id = gateway_core::token::OsRandom.request_id();
    let trace = Trace::from_headers(req.headers(), &gateway_core::trace::fresh());
    // Every line logged while serving carries the request and trace ids (the span's fields).
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_str(),
        trace_id = trace.trace_id.as_str()
    );
    let mut res = serve(&app, req, request_id.clone(), &trace)
        .instrument(span)
        .await;
    for (name, value) in security_headers(&app.cfg) {
        res.headers_mut().insert(*name, http::HeaderValue::from_static(value));
    }
    Ok(res)
}

async fn serve(
    app: &Arc<App>,
    req: lambda_http::Request,
    request_id: String,
    trace: &Trace,
) -> http::Response<GwBody> {
    let started = Instant::now();
    let client_ip = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    };
    let (parts, body) = req.into_parts();
    let body: Bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(t) => Bytes::from(t),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    // Function URLs terminate TLS and say so in X-Forwarded-Proto.
    let proto = parts.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).unwrap_or("http").to_string();
    match check_transport(&app.cfg, &proto, &parts) {
        Ok(Transport::Proceed) => {}
        Ok(Transport::Redirect(location)) => {
            let mut res = respond(http::Response::new(Vec::new()), &request_id);
            *res.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                res.headers_mut().insert(http::header::LOCATION, v);
            }
            return res;
        }
        Err(e) => return error(&e, &request_id),
    }
    let arrived_ms = now_ms();
    let now = arrived_ms / 1000;
    let resolution = match resolve(&app.cfg, &app.routes, &parts, now).await {
        // Model routing (`/v1/…`): the whole body is here; its start says which model.
        Ok(Resolution::NeedsModel) => {
            let n = body.len().min(gateway_core::models::PEEK_BYTES);
            resolve_model(&app.cfg, &app.routes, &parts, now, &body[..n], n == body.len()).await
        }
        other => other,
    };
    refresh_behind(app);
    // Deciding is synchronous from here, so its lookups need not be Send.
    let decision = resolution.and_then(|resolution| {
        // Held only while deciding (microseconds); a poisoned lock only means a panic elsewhere.
        let failures = app.failures.lock().unwrap_or_else(|e| e.into_inner());
        let in_flight = app.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let rctx = RequestContext {
            now,
            client_ip: client_ip.as_deref(),
            proto: &proto,
            new_request_id: &request_id,
            trace,
            failures: &failures,
            in_flight: &in_flight,
            // The whole body is here already; routes keyed by prompt prefix look at its start.
            body_peek: resolution.needs_body(&parts).then(|| {
                let n = body.len().min(gateway_core::load::BODY_PEEK_BYTES);
                (&body[..n], n == body.len())
            }),
        };
        resolution.decide(&parts, &rctx)
    });
    match decision {
        Err(e) => {
            log(&request_id, None, None, e.status().as_u16(), started, None);
            error(&e, &request_id)
        }
        Ok(Decision::Admin(segments)) => {
            let areq = AdminRequest {
                method: &parts.method,
                segments: &segments,
                query: parts.uri.query(),
                authorization: parts.headers.get(http::header::AUTHORIZATION),
                body: &body,
                trace_id: Some(&trace.trace_id),
                ids: &gateway_core::token::OsRandom,
            };
            let metrics_read = segments.len() == 1 && segments[0] == "metrics";
            match admin::handle(&app.cfg, &app.store, now, areq).await {
                Ok(reply) => {
                    let mut res = reply.into_response();
                    if metrics_read && res.status().is_success() {
                        res.headers_mut().insert(gateway_core::metrics::INSTANCE_STORE_WRITES_HEADER, crate::store::writes_sent().into());
                    }
                    respond(res, &request_id)
                }
                Err(e) => error(&e, &request_id),
            }
        }
        Ok(Decision::Forward(plan)) => forward(app, *plan, parts.method, body, started, arrived_ms).await,
        Ok(Decision::Answer(res)) => {
            log(&request_id, None, None, res.status().as_u16(), started, None);
            respond(res, &request_id)
        }
    }
}

/// Forwards along the plan; the response body streams as the upstream sends it. Every
/// answer from here on, the gateway's own included, is metered and recorded.
async fn forward(app: &Arc<App>, plan: ForwardPlan, method: http::Method, body: Bytes, started: Instant, arrived_ms: u64) -> http::Response<GwBody> {
    let mut meter = Meter::new(&plan, arrived_ms / 1000);
    let id = plan.request_id.as_str();
    let refused = |e: &Error, meter: Meter| refuse(e, meter, app, started, id, arrived_ms);
    // The Function URL delivers the whole request body in the event; its size is known here.
    if body.len() as u64 > plan.max_body_bytes {
        log(id, Some(&plan.route), None, 413, started, plan.token_id.as_deref());
        return refused(&Error::PayloadTooLarge { limit: plan.max_body_bytes }, meter);
    }
    let mut allowance = None;
    if let Some(limit) = &plan.rate_limit {
        match app.routes.inner().rate_hit(limit, now_ms()).await {
            Ok(a) => allowance = Some(a),
            Err(e @ Error::RateLimited { .. }) => {
                log(id, Some(&plan.route), None, 429, started, plan.token_id.as_deref());
                return refused(&e, meter);
            }
            // A rate limit protects capacity, not access (RBAC guards that): let the request through.
            Err(e) => tracing::error!(request_id = id, error = %e, "rate limiter unavailable; request let through"),
        }
    }
    let mut token_allowance = None;
    if !plan.budgets.is_empty() {
        let keys: Vec<&str> = plan.budgets.iter().map(|(k, _)| k.as_str()).collect();
        let now = now_ms();
        let checked = app.routes.inner().budget_uses(&keys, now / 1000).await.and_then(|uses| gateway_core::budget::check_all(&plan.budgets, &uses, now));
        match checked {
            Ok(a) => token_allowance = a,
            Err(e @ Error::TokenBudgetExceeded { .. }) => {
                log(id, Some(&plan.route), None, 429, started, plan.token_id.as_deref());
                return refused(&e, meter);
            }
            Err(e) => tracing::error!(request_id = id, error = %e, "token budgets unavailable; request let through"),
        }
    }
    let client = match app.client(plan.connect_timeout_ms) {
        Ok(c) => c,
        Err(e) => return refused(&e, meter),
    };
    // A `usage: "always"` route may send its own body (the stream's usage asked for).
    let body = plan.body.clone().unwrap_or(body);
    meter.sent(body.len() as u64);
    // Core's forwarding machine decides failover and refusals; this loop only does the I/O.
    let mut fwd = Forwarding::new(&plan, &method, meter);
    let mut step = fwd.start();
    loop {
        let up = match step {
            Step::Try(i) => &plan.upstreams[i],
            // (`Respond` is never looped on: an answered attempt returns below.)
            Step::Respond(_) => {
                log(id, Some(&plan.route), None, 502, started, plan.token_id.as_deref());
                return refused(&Error::BadGateway, fwd.into_meter());
            }
            Step::Refuse(e) => {
                log(id, Some(&plan.route), None, e.status().as_u16(), started, plan.token_id.as_deref());
                return refused(&e, fwd.into_meter());
            }
        };
        let gateway_ms = started.elapsed().as_secs_f64() * 1000.0;
        let in_flight = InFlightGuard::start(&app.in_flight, &plan.route, &up.endpoint_id);
        let send = client.request(method.clone(), &up.url).headers(plan.headers.clone()).body(body.clone()).send();
        let resp = match tokio::time::timeout(Duration::from_millis(plan.response_timeout_ms), send).await {
            Err(_) => Err(Outcome::TimedOut),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                // A connect error means nothing was sent; anything else may have reached it.
                tracing::warn!(request_id = id, route = plan.route.as_str(), endpoint = up.endpoint_id.as_str(), error = %e, "upstream attempt failed");
                Err(Outcome::Failed { may_have_arrived: !e.is_connect() })
            }
        };
        let resp = match resp {
            Ok(resp) => resp,
            Err(outcome) => {
                let mut failures = app.failures.lock().unwrap_or_else(|e| e.into_inner());
                step = fwd.on(outcome, &mut failures, now_secs());
                continue;
            }
        };
        {
            let mut failures = app.failures.lock().unwrap_or_else(|e| e.into_inner());
            fwd.on(Outcome::Answered, &mut failures, now_secs());
        }
        let mut meter = fwd.into_meter();
        let status = resp.status();
        let mut headers = response_headers(resp.headers(), &plan, &up.base, gateway_ms);
        if let Some(a) = &allowance {
            a.insert_into(&mut headers);
        }
        if let Some(a) = &token_allowance {
            a.insert_into(&mut headers);
        }
        meter.answered(&up.endpoint_id, status.as_u16(), &headers, gateway_ms, started.elapsed().as_secs_f64() * 1000.0 - gateway_ms);
        let (request_id, route, endpoint) = (plan.request_id.clone(), plan.route.clone(), up.endpoint_id.clone());
        let log_fault = move |f: &Fault| {
            tracing::warn!(request_id = request_id.as_str(), route = route.as_str(), endpoint = endpoint.as_str(), fault = %f, "response stream cut short");
        };
        let sleep = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
        let sse = is_event_stream(&headers);
        let stream = Guarded::new(Box::pin(resp.bytes_stream()), plan.idle_timeout_ms, sse, sleep, |b| b, log_fault);
        // Counted in flight until the body ends or the client goes (the stream is dropped).
        let stream = futures_util::StreamExt::map(stream, move |chunk| {
            let _counted = &in_flight;
            chunk
        });
        let mut res = http::Response::new(stream);
        *res.status_mut() = status;
        *res.headers_mut() = headers;
        log(id, Some(&plan.route), Some(&up.endpoint_id), status.as_u16(), started, plan.token_id.as_deref());
        return metered(res, meter, app, started, id, arrived_ms, plan.strip_usage && sse);
    }
}
