//! gateway-edge: the gateway as a Cloudflare Worker.
//!
//! The Worker parses the request, asks `gateway-core` what to do, and does the
//! I/O the decision names: route lookups from Workers KV (cached in the
//! isolate), the upstream fetch (streamed both ways, with failover), and admin
//! calls handed to the `GatewayState` Durable Object, which serialises every
//! write and mirrors what the data plane reads back into KV.

mod jwks;
mod kv;
mod proxy;
mod ratelimit;
mod state;
mod web;

use gateway_core::config::UpstreamSecrets;
use gateway_core::{Config, Error};
use std::cell::RefCell;
use std::rc::Rc;
use worker::*;

pub use ratelimit::RateLimiter;
pub use state::GatewayState;

/// KV namespace binding holding routes, leases, host bindings and revocations.
pub(crate) const KV_BINDING: &str = "GATEWAY_KV";
/// Durable Object namespace binding of [`GatewayState`].
pub(crate) const DO_BINDING: &str = "GATEWAY_STATE";
/// Durable Object namespace binding of [`RateLimiter`] (one object per limiter key).
pub(crate) const DO_RATE_BINDING: &str = "GATEWAY_RATE";

/// What an isolate keeps between requests.
pub(crate) struct Isolate {
    pub cfg: std::result::Result<Config, gateway_core::config::ConfigError>,
    pub kv_cache: RefCell<kv::Cache>,
    pub failures: RefCell<gateway_core::forward::FailureMemory>,
    /// Identity providers' keys.
    pub jwks: RefCell<gateway_core::oidc::JwksCache>,
    /// Requests in flight from this isolate, by endpoint ([`proxy::InFlightGuard`]).
    pub in_flight: RefCell<gateway_core::load::InFlight>,
    /// Samples of finished requests not yet written ([`gateway_core::batch`]).
    pub batch: RefCell<gateway_core::batch::Batch>,
}

/// Durable Object calls this isolate's Worker code has made since it started (the objects' own
/// calls to each other are not counted): shown to admins on `GET /_gateway/metrics` as
/// [`gateway_core::metrics::INSTANCE_STORE_WRITES_HEADER`], for the benchmark's writes per
/// proxied request.
static DO_CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one Durable Object call; every `fetch` on a stub from the Worker goes through here.
pub(crate) fn do_call() {
    DO_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Durable Object calls made by this isolate's Worker code so far.
pub(crate) fn do_calls() -> u64 {
    DO_CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

thread_local! {
    static ISOLATE: RefCell<Option<Rc<Isolate>>> = const { RefCell::new(None) };
}

/// Reads a setting from Worker secrets first, then plain vars.
pub(crate) fn setting(env: &Env, name: &str) -> Option<String> {
    env.secret(name).ok().map(|s| s.to_string()).or_else(|| env.var(name).ok().map(|v| v.to_string()))
}

/// Every binding that is a string (Worker secrets and plain-text vars), as (name, value).
fn string_bindings(env: &Env) -> Vec<(String, String)> {
    use wasm_bindgen::JsCast;
    js_sys::Object::entries(env.unchecked_ref::<js_sys::Object>())
        .iter()
        .filter_map(|pair| {
            let pair: js_sys::Array = pair.dyn_into().ok()?;
            Some((pair.get(0).as_string()?, pair.get(1).as_string()?))
        })
        .collect()
}

/// The isolate's state, built on the first request (configuration is read once).
pub(crate) fn isolate(env: &Env) -> Rc<Isolate> {
    ISOLATE.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                // The secrets routes may send upstream are resolved here, once per isolate.
                let cfg = Config::from_lookup(&|name| setting(env, name)).map(|c| c.with_upstream_secrets(UpstreamSecrets::from_settings(string_bindings(env))));
                if let Err(e) = &cfg {
                    console_error!("{{\"level\":\"error\",\"msg\":\"bad configuration\",\"detail\":{}}}", json_str(&e.to_string()));
                }
                Rc::new(Isolate { cfg, kv_cache: RefCell::new(kv::Cache::default()), failures: RefCell::default(), jwks: RefCell::default(), in_flight: RefCell::default(), batch: RefCell::new(gateway_core::batch::Batch::new(instance_id())) })
            })
            .clone()
    })
}

/// A random name for this isolate (batch ids; not a secret).
fn instance_id() -> String {
    format!("{:012x}{:012x}", (js_sys::Math::random() * 2f64.powi(48)) as u64, js_sys::Date::now() as u64 & 0xffff_ffff_ffff)
}

/// Unix seconds from the platform clock.
pub(crate) fn now_secs() -> u64 {
    (js_sys::Date::now() / 1000.0) as u64
}

/// Reads a body, stopping as soon as it passes `max` bytes: `Ok(None)` then. A chunked body
/// without `Content-Length` is never held whole before its size is known.
pub(crate) async fn read_capped(stream: Result<worker::ByteStream>, max: usize) -> Result<Option<Vec<u8>>> {
    use futures_util::StreamExt;
    let mut stream = match stream {
        Ok(s) => s,
        // No body at all.
        Err(_) => return Ok(Some(Vec::new())),
    };
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The request as core reads it, `http` types: method, path and query, headers (with the
/// body left to the caller, untouched), and the scheme the client used. Built here rather than
/// with the `worker` crate's `http` feature: its `Body` (worker 0.8.7) takes the runtime's body
/// stream into a Rust stream and copies every chunk into and out of wasm, where this Worker
/// passes chunks on as the runtime's own objects.
pub(crate) fn request_parts(req: &Request) -> std::result::Result<(http::request::Parts, String), Error> {
    let url = req.inner().url();
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", &url));
    let path_and_query = rest.find('/').map_or("/", |i| &rest[i..]);
    let mut parts = http::Request::new(()).into_parts().0;
    parts.uri = path_and_query.parse().map_err(|_| Error::InvalidRequest("malformed URL".into()))?;
    parts.method = req.inner().method().parse().map_err(|_| Error::InvalidRequest("unsupported method".into()))?;
    parts.headers = http::HeaderMap::from(req.headers());
    Ok((parts, scheme.to_string()))
}

/// Turns a core HTTP response into a Worker response.
pub(crate) fn to_worker(res: http::Response<Vec<u8>>, request_id: &str) -> Result<Response> {
    let (parts, body) = res.into_parts();
    let headers = Headers::from(&parts.headers);
    headers.set("x-request-id", request_id)?;
    Ok(Response::from_bytes(body)?.with_status(parts.status.as_u16()).with_headers(headers))
}

/// An error as the client sees it.
pub(crate) fn error_response(e: &Error, request_id: &str) -> Result<Response> {
    to_worker(e.into_response(), request_id)
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let started = js_sys::Date::now();
    let iso = isolate(&env);
    let request_id = gateway_core::token::IdSource::request_id(&gateway_core::token::OsRandom);
    let cfg = match &iso.cfg {
        Ok(c) => c,
        Err(_) => return error_response(&Error::Internal("configuration".into()), &request_id),
    };
    let res = match proxy::handle(req, &env, &ctx, cfg, &iso, &request_id, started).await {
        Ok(r) => Ok(r),
        Err(e) => {
            console_error!("{{\"level\":\"error\",\"request_id\":{},\"msg\":\"internal\",\"detail\":{}}}", json_str(&request_id), json_str(&e.to_string()));
            error_response(&Error::Internal(e.to_string()), &request_id)
        }
    };
    res.and_then(|r| with_security_headers(r, cfg))
}

/// Adds HSTS and `nosniff` to a response. Responses the Worker built have
/// mutable headers and are changed in place; responses that came from a fetch
/// (the Durable Object's) have immutable headers, so those alone are rebuilt
/// around the same body stream, which is not read or copied.
fn with_security_headers(res: Response, cfg: &Config) -> Result<Response> {
    set_headers(res, |headers| gateway_core::gateway::security_headers(cfg).iter().try_for_each(|(name, value)| headers.set(name, value)))
}

/// `res` with headers set by `set`: in place when they are mutable, else (a response from a
/// fetch) rebuilt around the same body stream, which is not read or copied.
pub(crate) fn set_headers(res: Response, set: impl Fn(&web_sys::Headers) -> std::result::Result<(), wasm_bindgen::JsValue>) -> Result<Response> {
    let inner: web_sys::Response = res.into();
    if set(&inner.headers()).is_ok() {
        return Ok(Response::from(inner));
    }
    let headers = web_sys::Headers::new_with_headers(&inner.headers())?;
    set(&headers)?;
    let init = web_sys::ResponseInit::new();
    init.set_status(inner.status());
    init.set_headers(&headers);
    let out = web_sys::Response::new_with_opt_readable_stream_and_init(inner.body().as_ref(), &init)?;
    Ok(Response::from(out))
}

/// The Cron Trigger (`[triggers] crons` in wrangler.toml): one round of health
/// probes, run by the state object that keeps endpoint health.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let run = async {
        let stub = env.durable_object(DO_BINDING)?.get_by_name("global")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post);
        do_call();
        let res = stub.fetch_with_request(Request::new_with_init("https://gateway-state/probe", &init)?).await?;
        if res.status_code() >= 300 {
            return Err(Error::Internal(format!("probe round answered {}", res.status_code())).to_string().into());
        }
        Ok::<(), worker::Error>(())
    };
    if let Err(e) = run.await {
        console_error!("{{\"level\":\"error\",\"msg\":\"scheduled probe round failed\",\"detail\":{}}}", json_str(&e.to_string()));
    }
}
