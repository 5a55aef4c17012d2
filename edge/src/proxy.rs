//! One request through the Worker: parse, let core decide, then forward to
//! the upstream (streamed both ways, failing over on connection errors) or hand
//! an admin call to the Durable Object.

use crate::kv::KvReader;
use crate::state::STATE_ORIGIN;
use crate::{error_response, json_str, now_secs, to_worker, Isolate};
use futures_util::future::{select, Either, LocalBoxFuture};
use futures_util::{FutureExt, StreamExt};
use gateway_core::admin::{self, MAX_ADMIN_BODY};
use gateway_core::attempts::{Forwarding, Outcome, Step};
use gateway_core::batch::Flush;
use gateway_core::forward::{response_headers, ForwardPlan};
use gateway_core::gateway::{check_transport, resolve, resolve_model, Decision, RequestContext, Resolution, Transport};
use gateway_core::meter::Meter;
use gateway_core::metrics::RequestSample;
use gateway_core::stream::{is_event_stream, Fault, Guarded};
use gateway_core::trace::Trace;
use gateway_core::usage::Keep;
use gateway_core::{Config, Error};
use http::HeaderMap;
use js_sys::Uint8Array;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::{console_log, console_warn, Context, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response};

/// Entry point for every request the Worker receives.
pub async fn handle(req: Request, env: &Env, ctx: &Context, cfg: &Config, iso: &Rc<Isolate>, request_id: &str, started: f64) -> worker::Result<Response> {
    let (parts, proto) = match crate::request_parts(&req) {
        Ok(p) => p,
        Err(e) => return error_response(&e, request_id),
    };
    let proto = proto.as_str();
    let trace = Trace::from_headers(&parts.headers, &gateway_core::trace::fresh());
    match check_transport(cfg, proto, &parts) {
        Ok(Transport::Proceed) => {}
        Ok(Transport::Redirect(location)) => {
            let headers = Headers::new();
            headers.set("location", &location)?;
            headers.set("x-request-id", request_id)?;
            return Ok(Response::empty()?.with_status(308).with_headers(headers));
        }
        Err(e) => return error_response(&e, request_id),
    }

    let now = now_secs();
    let kv = KvReader { kv: env.kv(crate::KV_BINDING)?, cache: &iso.kv_cache, cache_ms: cfg.cache_seconds * 1000, stale_if_error_ms: cfg.stale_if_error_seconds * 1000, jwks: &iso.jwks };
    let client_ip = parts.headers.get("cf-connecting-ip").and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut peeked = None;
    let mut resolution = resolve(cfg, &kv, &parts, now).await;
    if matches!(resolution, Ok(Resolution::NeedsModel)) {
        // Model routing (`/v1/…`) reads the body's start to find `model`; what was read goes
        // upstream first, the rest streams on.
        match peek_body(&req).await {
            Ok(p) => peeked = p,
            Err(e) => return error_response(&e, request_id),
        }
        let (bytes, complete) = peeked.as_ref().map_or((&[][..], true), |p| (&p.bytes[..], p.complete));
        resolution = resolve_model(cfg, &kv, &parts, now, bytes, complete).await;
    }
    // What the request found stale in the isolate's cache is read again beside and after the
    // response (the request never waits on it).
    if iso.kv_cache.borrow().has_stale() {
        ctx.wait_until(crate::kv::refresh_stale(kv.kv.clone(), iso.clone(), kv.policy()));
    }
    let decision = match resolution {
        Err(e) => Err(e),
        Ok(resolution) => {
            // Routes keyed by prompt prefix read the body's start before choosing an endpoint;
            // what was read goes upstream first.
            if peeked.is_none() && resolution.needs_body(&parts) {
                match peek_body(&req).await {
                    Ok(p) => peeked = p,
                    Err(e) => return error_response(&e, request_id),
                }
            }
            // Borrowed only while deciding, which awaits nothing.
            let failures = iso.failures.borrow();
            let in_flight = iso.in_flight.borrow();
            let rctx = RequestContext {
                now,
                client_ip: client_ip.as_deref(),
                proto,
                new_request_id: request_id,
                trace: &trace,
                failures: &failures,
                in_flight: &in_flight,
                body_peek: peeked.as_ref().map(|p| (&p.bytes[..], p.complete)),
            };
            resolution.decide(&parts, &rctx)
        }
    };
    match decision {
        Err(e) => {
            // Refused after reading part of the body: read the rest away (up to the default body
            // limit, then give up on it), so the connection is not left with an unread upload
            // that would break the next request on it.
            if let Some(mut rest) = peeked.take().and_then(|p| p.rest) {
                let mut drained = 0u64;
                while let Some(Ok(chunk)) = rest.next().await {
                    drained += u64::from(Uint8Array::new(&chunk).length());
                    if drained > gateway_core::route::DEFAULT_MAX_BODY_BYTES {
                        let _ = rest.cancel().await;
                        break;
                    }
                }
            }
            if let Error::Internal(detail) | Error::StoreUnavailable(detail) = &e {
                worker::console_error!(
                    "{{\"level\":\"error\",\"request_id\":{},\"trace_id\":{},\"msg\":\"decision failed\",\"detail\":{}}}",
                    json_str(request_id),
                    json_str(&trace.trace_id),
                    json_str(detail)
                );
            }
            log_line(
                request_id,
                &trace.trace_id,
                None,
                None,
                e.status().as_u16(),
                started,
                None,
            );
            error_response(&e, request_id)
        }
        Ok(Decision::Admin(segments)) => match admin::public(&parts.method, &segments) {
            Some(reply) => to_worker(reply.into_response(), request_id),
            None => {
                // An identity provider's keys are fetched here, in the Worker, so the state
                // object (which authenticates, from memory and KV only) never waits on one.
                if let Ok(token) = gateway_core::token::bearer(parts.headers.get(http::header::AUTHORIZATION)) {
                    gateway_core::oidc::prefetch_keys(cfg, &kv, token).await;
                }
                // What this isolate has counted is written before a metrics read, so the
                // read sees it (other isolates' batches arrive within their second).
                if segments.first().is_some_and(|s| s == "metrics" || s == "tokens") {
                    flush(env, iso).await;
                }
                let metrics_read = segments.len() == 1 && segments[0] == "metrics";
                let res = admin(req, env, &parts, request_id, &trace).await?;
                if metrics_read && res.status_code() == 200 {
                    let calls = crate::do_calls().to_string();
                    return crate::set_headers(res, |h| h.set(gateway_core::metrics::INSTANCE_STORE_WRITES_HEADER, &calls));
                }
                Ok(res)
            }
        },
        Ok(Decision::Forward(plan)) => forward(req, env, ctx, iso, *plan, started, peeked).await,
        Ok(Decision::Answer(res)) => {
            log_line(request_id, &trace.trace_id, None, None, res.status().as_u16(), started, None);
            to_worker(res, request_id)
        }
    }
}

/// Hands an admin call to the Durable Object, which authenticates, writes and audits: the
/// client's method, path, query, authorization and body as they came (the body read to at
/// most [`MAX_ADMIN_BODY`]), with this request's id and trace.
async fn admin(mut req: Request, env: &Env, parts: &http::request::Parts, request_id: &str, trace: &Trace) -> worker::Result<Response> {
    // fetch refuses to send CONNECT and TRACE; the admin API serves neither.
    if matches!(parts.method, http::Method::CONNECT | http::Method::TRACE) {
        return error_response(&Error::MethodNotAllowed, request_id);
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_ADMIN_BODY) {
        return error_response(&Error::PayloadTooLarge { limit: MAX_ADMIN_BODY as u64 }, request_id);
    }
    // Capped while reading: a chunked body is never read whole before its size is checked.
    let Some(body) = crate::read_capped(req.stream(), MAX_ADMIN_BODY).await.unwrap_or_default() else {
        return error_response(&Error::PayloadTooLarge { limit: MAX_ADMIN_BODY as u64 }, request_id);
    };
    let headers = Headers::new();
    headers.set("x-request-id", request_id)?;
    // The object keeps the trace id in the call's audit entry.
    headers.set(gateway_core::trace::TRACEPARENT, &trace.traceparent())?;
    if let Some(auth) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        headers.set("authorization", auth)?;
    }
    // The method as it came, whatever it is (the object answers one the admin API lacks with
    // a 405, as the Lambda does).
    let init = web_sys::RequestInit::new();
    init.set_method(parts.method.as_str());
    init.set_headers(&headers.0);
    // A GET or HEAD carries no body (fetch refuses one); the admin API reads none there.
    if !matches!(parts.method, http::Method::GET | http::Method::HEAD) {
        init.set_body(&Uint8Array::from(&body[..]));
    }
    let target = format!("{STATE_ORIGIN}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let stub = env.durable_object(crate::DO_BINDING)?.get_by_name("global")?;
    crate::do_call();
    stub.fetch_with_request(Request::from(web_sys::Request::new_with_str_and_init(&target, &init)?)).await
}

/// The client's request body, shared by the attempts of one request so a
/// connection failure before any body byte was read can go to the next endpoint.
struct BodySource {
    /// Chunks read before the endpoint was chosen ([`peek_body`]), sent first.
    head: RefCell<std::collections::VecDeque<JsValue>>,
    stream: RefCell<Option<wasm_streams::readable::IntoStream<'static>>>,
    sent: Cell<u64>,
    over_limit: Cell<bool>,
    limit: u64,
    /// The current attempt's abort handle: going over the limit cancels the upstream request
    /// rather than erroring the stream (an uncaught stream error would poison the isolate).
    abort: RefCell<Option<web_sys::AbortController>>,
}

impl BodySource {
    /// A stream for one attempt: passes chunks through untouched (no copy),
    /// counting bytes as they stream so a lying or absent Content-Length cannot pass the limit.
    fn attempt(self: &Rc<Self>) -> web_sys::ReadableStream {
        let src = self.clone();
        let s = futures_util::stream::poll_fn(move |cx| {
            let mut guard = src.stream.borrow_mut();
            let head = src.head.borrow_mut().pop_front();
            let next = match head {
                Some(chunk) => Poll::Ready(Some(Ok(chunk))),
                None => match guard.as_mut() {
                    Some(inner) => inner.poll_next_unpin(cx),
                    None => return Poll::Ready(None),
                },
            };
            match next {
                Poll::Ready(Some(Ok(chunk))) => {
                    // Chunks are byte views; read byteLength rather than trusting their concrete class.
                    let len = js_sys::Reflect::get(&chunk, &JsValue::from_str("byteLength")).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u64;
                    let total = src.sent.get() + len;
                    src.sent.set(total);
                    if total > src.limit {
                        src.over_limit.set(true);
                        *guard = None;
                        if let Some(controller) = src.abort.borrow_mut().take() {
                            controller.abort();
                        }
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(None) => {
                    *guard = None;
                    Poll::Ready(None)
                }
                other => other,
            }
        });
        wasm_streams::ReadableStream::from_stream(s).into_raw().unchecked_into()
    }
}

/// The start of a request body, read before an endpoint is chosen (routes keyed by prompt
/// prefix): the chunks as they came (sent upstream first, uncopied), their bytes for core,
/// and the rest of the stream.
pub(crate) struct Peeked {
    chunks: Vec<JsValue>,
    bytes: Vec<u8>,
    complete: bool,
    rest: Option<wasm_streams::readable::IntoStream<'static>>,
}

/// Reads the body until [`gateway_core::load::BODY_PEEK_BYTES`] or its end; `None` without
/// one; an error when the body broke off (the client went away or sent garbage framing).
async fn peek_body(req: &Request) -> Result<Option<Peeked>, Error> {
    let Some(raw) = req.inner().body() else { return Ok(None) };
    let mut stream = wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).into_stream();
    let mut peeked = Peeked { chunks: Vec::new(), bytes: Vec::new(), complete: false, rest: None };
    while peeked.bytes.len() < gateway_core::load::BODY_PEEK_BYTES {
        match stream.next().await {
            Some(Ok(chunk)) => {
                peeked.bytes.extend_from_slice(&Uint8Array::new(&chunk).to_vec());
                peeked.chunks.push(chunk);
            }
            Some(Err(_)) => return Err(Error::InvalidRequest("the request body could not be read".into())),
            None => {
                peeked.complete = true;
                return Ok(Some(peeked));
            }
        }
    }
    peeked.rest = Some(stream);
    Ok(Some(peeked))
}

/// One request in flight to an endpoint, counted in the isolate until dropped (the
/// attempt failed, or the response body ended or was abandoned).
pub(crate) struct InFlightGuard {
    iso: Rc<Isolate>,
    key: String,
}

impl InFlightGuard {
    fn start(iso: &Rc<Isolate>, route: &str, endpoint: &str) -> Self {
        let key = iso.in_flight.borrow_mut().start(route, endpoint);
        InFlightGuard { iso: iso.clone(), key }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.iso.in_flight.borrow_mut().end(&self.key);
    }
}

/// HTTP statuses whose responses carry no body.
fn null_body(status: u16) -> bool {
    matches!(status, 101 | 204 | 205 | 304)
}

/// Forwards the request along the plan, streaming both ways.
async fn forward(req: Request, env: &Env, ctx: &Context, iso: &Rc<Isolate>, plan: ForwardPlan, started: f64, peeked: Option<Peeked>) -> worker::Result<Response> {
    let meter = Meter::new(&plan, now_secs());
    // The gateway's own answer once a route is known: logged, counted, sent.
    let refuse = |mut meter: Meter, endpoint: Option<&str>, e: &Error| {
        let status = e.status().as_u16();
        log_line(
            &plan.request_id,
            &plan.trace_id,
            Some(&plan.route),
            endpoint,
            status,
            started,
            plan.token_id.as_deref(),
        );
        meter.refused(status);
        record(env, ctx, iso, async move { Some(meter.finish(js_sys::Date::now() - started)) });
        error_response(e, &plan.request_id)
    };
    let mut allowance = None;
    if let Some(limit) = &plan.rate_limit {
        match crate::ratelimit::check(env, limit, &plan.request_id).await {
            Ok(a) => allowance = a,
            Err(e) => return refuse(meter, None, &e),
        }
    }
    let mut token_allowance = None;
    if !plan.budgets.is_empty() {
        match crate::ratelimit::check_budgets(env, &plan.budgets, &plan.request_id).await {
            Ok(a) => token_allowance = a,
            Err(e) => return refuse(meter, None, &e),
        }
    }
    let method = req.inner().method();
    // Aborts when the client goes away (compatibility flag `enable_request_signal`).
    let client_gone = req.inner().signal();
    let has_body = !matches!(method.as_str(), "GET" | "HEAD");
    let body = if let Some(replaced) = plan.body.as_ref() {
        // The gateway's own body (a stream's usage asked for): the peek held the whole original,
        // which is what the route's limit applies to, as on Lambda.
        let original = peeked.as_ref().map_or(0, |p| p.bytes.len() as u64);
        if original > plan.max_body_bytes {
            return refuse(meter, None, &Error::PayloadTooLarge { limit: plan.max_body_bytes });
        }
        let chunk: JsValue = Uint8Array::from(&replaced[..]).into();
        Some(Rc::new(BodySource {
            head: RefCell::new(std::collections::VecDeque::from([chunk])),
            stream: RefCell::new(None),
            sent: Cell::new(0),
            over_limit: Cell::new(false),
            limit: plan.max_body_bytes.max(replaced.len() as u64),
            abort: RefCell::new(None),
        }))
    } else if let Some(p) = peeked {
        Some(Rc::new(BodySource {
            head: RefCell::new(p.chunks.into()),
            stream: RefCell::new(p.rest),
            sent: Cell::new(0),
            over_limit: Cell::new(false),
            limit: plan.max_body_bytes,
            abort: RefCell::new(None),
        }))
    } else if has_body {
        req.inner().body().map(|b| {
            Rc::new(BodySource {
                head: RefCell::default(),
                stream: RefCell::new(Some(wasm_streams::ReadableStream::from_raw(b.unchecked_into()).into_stream())),
                sent: Cell::new(0),
                over_limit: Cell::new(false),
                limit: plan.max_body_bytes,
                abort: RefCell::new(None),
            })
        })
    } else {
        None
    };
    let upstream_headers = Headers::from(&plan.headers);
    // Core's forwarding machine decides failover and refusals; this loop only does the I/O.
    let mut fwd = Forwarding::new(&plan, method_of(&method), meter);
    let mut step = fwd.start();
    loop {
        let up = match step {
            Step::Try(i) => &plan.upstreams[i],
            // (`Respond` is never looped on: an answered attempt returns below.)
            Step::Respond(_) => return refuse(fwd.into_meter(), None, &Error::BadGateway),
            Step::Refuse(e) => return refuse(fwd.into_meter(), None, &e),
        };
        let controller = web_sys::AbortController::new()?;
        let init = web_sys::RequestInit::new();
        init.set_method(&method);
        init.set_headers(&upstream_headers.0);
        init.set_redirect(web_sys::RequestRedirect::Manual);
        init.set_signal(Some(&controller.signal()));
        if let Some(b) = &body {
            init.set_body(&b.attempt());
            *b.abort.borrow_mut() = Some(controller.clone());
        }
        let wreq = web_sys::Request::new_with_str_and_init(&up.url, &init)?;
        let in_flight = InFlightGuard::start(iso, &plan.route, &up.endpoint_id);
        let gateway_ms = js_sys::Date::now() - started;
        let sent: LocalBoxFuture<worker::Result<Response>> = match &up.via {
            // Private pools behind a Cloudflare Tunnel: fetch through the Workers VPC service binding.
            Some(binding) => {
                let fetcher = env.service(binding)?;
                async move { fetcher.fetch_request(Request::from(wreq)).await }.boxed_local()
            }
            None => async move { Fetch::Request(Request::from(wreq)).send().await }.boxed_local(),
        };
        let timeout = Delay::from(Duration::from_millis(plan.response_timeout_ms));
        let outcome = select(sent, timeout).await;
        if let Some(b) = &body {
            fwd.meter_mut().sent(b.sent.get());
        }
        let failed = if body.as_ref().is_some_and(|b| b.over_limit.get()) {
            Some(Outcome::BodyTooLarge)
        } else {
            match &outcome {
                Either::Right(_) => Some(Outcome::TimedOut),
                Either::Left((Ok(_), _)) => None,
                Either::Left((Err(e), _)) => {
                    warn_line(&plan.request_id, &plan.trace_id, &plan.route, &up.endpoint_id, "upstream attempt failed", &e.to_string());
                    // The fetch does not say whether it connected: a request none of whose body
                    // was read cannot have reached the model server; a bodiless one may have.
                    Some(Outcome::Failed { may_have_arrived: body.as_ref().is_none_or(|b| b.sent.get() > 0) })
                }
            }
        };
        if let Some(failed) = failed {
            if failed != (Outcome::Failed { may_have_arrived: false }) {
                controller.abort();
            }
            step = fwd.on(failed, &mut iso.failures.borrow_mut(), now_secs());
            if let Step::Refuse(e) = &step {
                let e = e.clone();
                return refuse(fwd.into_meter(), Some(&up.endpoint_id), &e);
            }
            continue;
        }
        match outcome {
            Either::Right(_) | Either::Left((Err(_), _)) => continue,
            Either::Left((Ok(resp), _)) => {
                fwd.on(Outcome::Answered, &mut iso.failures.borrow_mut(), now_secs());
                let mut meter = fwd.into_meter();
                let upstream: web_sys::Response = resp.into();
                let status = upstream.status();
                let mut headers = response_headers(&HeaderMap::from(&Headers(upstream.headers())), &plan, &up.base, gateway_ms);
                if let Some(a) = &allowance {
                    a.insert_into(&mut headers);
                }
                if let Some(a) = &token_allowance {
                    a.insert_into(&mut headers);
                }
                let init = web_sys::ResponseInit::new();
                init.set_status(status);
                init.set_headers(&Headers::from(&headers).0);
                let sse = is_event_stream(&headers);
                meter.answered(
                    &up.endpoint_id,
                    status,
                    &headers,
                    gateway_ms,
                    js_sys::Date::now() - started - gateway_ms,
                );
                let (tx, rx) = futures_channel::oneshot::channel();
                let metered = Metered {
                    meter: Some(meter),
                    started,
                    done: Some(tx),
                    _in_flight: Some(in_flight),
                };
                let stream = if null_body(status) {
                    None
                } else {
                    upstream
                        .body()
                        .map(|b| guarded(b, controller, &client_gone, &plan, &up.endpoint_id, sse, metered))
                };
                let out = web_sys::Response::new_with_opt_readable_stream_and_init(
                    stream.as_ref(),
                    &init,
                )?;
                log_line(
                    &plan.request_id,
                    &plan.trace_id,
                    Some(&plan.route),
                    Some(&up.endpoint_id),
                    status,
                    started,
                    plan.token_id.as_deref(),
                );
                // The sample arrives when the body ends or the client goes (a bodiless answer's at once).
                record(env, ctx, iso, async move { rx.await.ok() });
                return Ok(Response::from(out));
            }
        }
    }
}

/// The request's method as an `http` method (an unknown one is never idempotent).
fn method_of(m: &str) -> &'static http::Method {
    match m {
        "GET" => &http::Method::GET,
        "HEAD" => &http::Method::HEAD,
        "OPTIONS" => &http::Method::OPTIONS,
        _ => &http::Method::POST,
    }
}

/// Aborts the upstream fetch when dropped: when the client goes away, workerd
/// cancels the response stream, which drops this, so vLLM stops generating.
struct AbortOnDrop(web_sys::AbortController);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request's [`Meter`] while its body streams: it is told every chunk the client gets
/// ([`Metered::chunk`], on the Rust path) or, once, the body's byte count and kept bytes
/// ([`BodyEnd::finish`]), and hands the finished sample over once, when the body ends or when
/// the stream is dropped (the client went away).
struct Metered {
    meter: Option<Meter>,
    started: f64,
    done: Option<futures_channel::oneshot::Sender<RequestSample>>,
    /// Counted until the body ends or the client goes.
    _in_flight: Option<InFlightGuard>,
}

impl Metered {
    fn chunk(&mut self, chunk: &JsValue) {
        let Some(m) = self.meter.as_mut() else { return };
        if m.wants_bytes() {
            // Only while the usage tap reads: the copy out of JS memory costs per chunk.
            m.chunk(&Uint8Array::new(chunk).to_vec());
        } else {
            m.count(js_sys::Reflect::get(chunk, &JsValue::from_str("byteLength")).ok().and_then(|v| v.as_f64()).unwrap_or(0.0) as u64);
        }
    }
    fn finish(&mut self) {
        if let (Some(m), Some(tx)) = (self.meter.take(), self.done.take()) {
            let _ = tx.send(m.finish(js_sys::Date::now() - self.started));
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.finish();
    }
}

// Rebuilds the Worker when body.js changes (wasm-bindgen reads it, cargo does not watch it).
const _: &str = include_str!("body.js");

#[wasm_bindgen(module = "/src/body.js")]
extern "C" {
    /// The upstream's body passed through in JS, calling [`BodyEnd::finish`] once at its end.
    #[wasm_bindgen(js_name = passBody)]
    #[allow(clippy::too_many_arguments)]
    fn pass_body(
        body: &web_sys::ReadableStream,
        abort: &web_sys::AbortController,
        idle_ms: f64,
        sse: bool,
        idle_end: &str,
        broken_end: &str,
        keep_mode: u32,
        keep_limit: f64,
        end: BodyEnd,
        client_gone: &web_sys::AbortSignal,
    ) -> web_sys::ReadableStream;

    /// Aborts `abort` when `client_gone` aborts; returns what stops listening.
    #[wasm_bindgen(js_name = abortWhenClientGoes)]
    fn abort_when_client_goes(client_gone: &web_sys::AbortSignal, abort: &web_sys::AbortController) -> js_sys::Function;
}

/// Who a response stream belongs to, for its "cut short" warning.
struct StreamLog {
    request_id: String,
    trace_id: String,
    route: String,
    endpoint: String,
}

impl StreamLog {
    fn new(plan: &ForwardPlan, endpoint: &str) -> Self {
        StreamLog { request_id: plan.request_id.clone(), trace_id: plan.trace_id.clone(), route: plan.route.clone(), endpoint: endpoint.to_string() }
    }

    fn cut_short(&self, f: &Fault) {
        warn_line(&self.request_id, &self.trace_id, &self.route, &self.endpoint, "response stream cut short", &f.to_string());
    }
}

/// One warning about a forwarded request, as a JSON log line.
fn warn_line(request_id: &str, trace_id: &str, route: &str, endpoint: &str, msg: &str, detail: &str) {
    console_warn!(
        "{{\"level\":\"warn\",\"request_id\":{},\"trace_id\":{},\"route\":{},\"endpoint\":{},\"msg\":{},\"detail\":{}}}",
        json_str(request_id),
        json_str(trace_id),
        json_str(route),
        json_str(endpoint),
        json_str(msg),
        json_str(detail)
    );
}

/// How a body passed through in JS ended (`body.js`).
const ENDED_UPSTREAM_FAILED: u32 = 1;
const ENDED_IDLE: u32 = 2;

/// A response body's end, handed to `body.js` with it: holds the request's [`Metered`] (and
/// so its in-flight guard) until the body ends or the client goes, when JS calls
/// [`BodyEnd::finish`], once; dropped unfinished, the sample is still handed over.
#[wasm_bindgen]
pub struct BodyEnd {
    metered: Metered,
    log: StreamLog,
    idle_ms: u64,
}

#[wasm_bindgen]
impl BodyEnd {
    /// The body ended: `bytes` went to the client; `kept` and `cut` are what the usage tap asked
    /// to keep ([`Meter::keep`]); `how` is 0 (ended), 1 (the upstream's body failed, `detail`),
    /// 2 (idle) or 3 (the client went away).
    pub fn finish(mut self, bytes: f64, kept: &[u8], cut: bool, how: u32, detail: String) {
        if let Some(m) = self.metered.meter.as_mut() {
            m.ended(bytes as u64, kept, cut);
        }
        match how {
            ENDED_UPSTREAM_FAILED => self.log.cut_short(&Fault::Upstream(detail)),
            ENDED_IDLE => self.log.cut_short(&Fault::Idle { after_ms: self.idle_ms }),
            _ => {}
        }
        self.metered.finish();
    }
}

/// The upstream's body on its way to the client, with core's idle timeout and explained end,
/// metered. Chunks pass through as the same JS objects (no copy) and, unless the usage event
/// must be taken out, without a call into wasm per chunk (`body.js`).
fn guarded(
    body: web_sys::ReadableStream,
    controller: web_sys::AbortController,
    client_gone: &web_sys::AbortSignal,
    plan: &ForwardPlan,
    endpoint: &str,
    sse: bool,
    metered: Metered,
) -> web_sys::ReadableStream {
    // Event streams (long: an LLM answer) take the Rust path, whose stream workerd has always
    // cancelled when the client hangs up. Through the JS pull stream it now and then did not
    // (CI: a stand-in stream not cancelled within 6 s, vLLM generating a whole answer for
    // nobody), even with request.signal listened to; so only other bodies go through body.js.
    if sse {
        // Dropped with the stream; the listener itself is `once` and dies with the request.
        let _ = abort_when_client_goes(client_gone, &controller);
        return guarded_in_rust(body, controller, plan, endpoint, sse, metered);
    }
    let (keep_mode, keep_limit) = match metered.meter.as_ref().and_then(Meter::keep) {
        None => (0, 0.0),
        Some(Keep::Tail(n)) => (1, n as f64),
        Some(Keep::Whole(n)) => (2, n as f64),
    };
    // Rendered once; JS errors the body with the one that applies if it is cut short (body.js
    // can also close an event stream with core's SSE event, should event streams return to it).
    let idle_end = Fault::Idle { after_ms: plan.idle_timeout_ms }.message();
    let broken_end = Fault::Upstream(String::new()).message();
    let end = BodyEnd { metered, log: StreamLog::new(plan, endpoint), idle_ms: plan.idle_timeout_ms };
    pass_body(&body, &controller, plan.idle_timeout_ms as f64, false, &idle_end, &broken_end, keep_mode, keep_limit, end, client_gone)
}

/// [`guarded`] with a Rust step per chunk: for a stream whose usage event, asked for by the
/// gateway and not by the client, is taken out ([`gateway_core::usage::UsageStrip`]).
fn guarded_in_rust(
    body: web_sys::ReadableStream,
    controller: web_sys::AbortController,
    plan: &ForwardPlan,
    endpoint: &str,
    sse: bool,
    mut metered: Metered,
) -> web_sys::ReadableStream {
    let upstream = wasm_streams::ReadableStream::from_raw(body.unchecked_into())
        .into_stream()
        .map(|r| r.map_err(|e| format!("{e:?}")));
    let log = StreamLog::new(plan, endpoint);
    let log_fault = move |f: &Fault| log.cut_short(f);
    let sleep = |ms: u64| Delay::from(Duration::from_millis(ms));
    let to_chunk = |b: bytes::Bytes| -> JsValue { Uint8Array::from(&b[..]).into() };
    let guard = AbortOnDrop(controller);
    let mut inner = Guarded::new(upstream, plan.idle_timeout_ms, sse, sleep, to_chunk, log_fault);
    // Only when the gateway asked for usage the client did not: its event is taken out.
    let mut strip = (plan.strip_usage && sse).then(gateway_core::usage::UsageStrip::default);
    let mut ended = false;
    let s = futures_util::stream::poll_fn(move |cx| {
        let _ = &guard;
        loop {
            if ended {
                return Poll::Ready(None);
            }
            return match inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    metered.chunk(&chunk);
                    let Some(strip) = strip.as_mut() else { return Poll::Ready(Some(Ok(chunk))) };
                    let out = strip.feed(&Uint8Array::new(&chunk).to_vec());
                    if out.is_empty() {
                        continue;
                    }
                    Poll::Ready(Some(Ok(Uint8Array::from(&out[..]).into())))
                }
                Poll::Ready(Some(Err(f))) => {
                    metered.finish();
                    Poll::Ready(Some(Err(JsValue::from(js_sys::Error::new(&f.message())))))
                }
                Poll::Ready(None) => {
                    metered.finish();
                    ended = true;
                    match strip.as_mut().map(|s| s.finish()).filter(|rest| !rest.is_empty()) {
                        Some(rest) => Poll::Ready(Some(Ok(Uint8Array::from(&rest[..]).into()))),
                        None => Poll::Ready(None),
                    }
                }
                Poll::Pending => Poll::Pending,
            };
        }
    });
    wasm_streams::ReadableStream::from_stream(s).into_raw().unchecked_into()
}

/// Adds a request's sample to the isolate's batch once `sample` resolves, after the
/// response is on its way (`wait_until`): the client never waits on it. The batch is
/// written at most about once a second ([`gateway_core::batch`]), by whichever
/// `wait_until` first finds it unscheduled.
fn record(env: &Env, ctx: &Context, iso: &Rc<Isolate>, sample: impl std::future::Future<Output = Option<RequestSample>> + 'static) {
    let env = env.clone();
    let iso = iso.clone();
    ctx.wait_until(async move {
        let Some(sample) = sample.await else { return };
        // The answer's tokens count against its budgets, in their own objects, at once:
        // the next request must see them.
        let tokens = sample.llm_tokens();
        if tokens > 0 && !sample.budget_keys.is_empty() {
            if let Err(e) = crate::ratelimit::add_budget_use(&env, &sample.budget_keys, tokens, sample.at).await {
                worker::console_error!("{{\"level\":\"error\",\"msg\":\"budget use not counted\",\"route\":{},\"detail\":{}}}", json_str(&sample.route), json_str(&e.to_string()));
            }
        }
        let due = iso.batch.borrow_mut().add(&sample, js_sys::Date::now() as u64);
        match due {
            Flush::Now => flush(&env, &iso).await,
            // Returned once per write (core's `Batch`): one timer, whoever ends first.
            Flush::In(ms) => {
                Delay::from(Duration::from_millis(ms)).await;
                flush(&env, &iso).await;
            }
            Flush::Idle => {}
        }
    });
}

/// Writes the isolate's batch: each part to its shard's counter object, at once. A part
/// whose write fails is kept (under its id, so a write that did land is not counted twice)
/// and sent with the next batch.
pub(crate) async fn flush(env: &Env, iso: &Rc<Isolate>) {
    let parts = iso.batch.borrow_mut().take();
    if parts.is_empty() {
        return;
    }
    let sends = parts.into_iter().map(|part| async move {
        let run = async {
            let body = serde_json::to_string(&part).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post).with_body(Some(JsValue::from_str(&body)));
            let stub = env.durable_object(crate::DO_BINDING)?.get_by_name(&crate::state::shard_name(part.shard))?;
            crate::do_call();
            let res = stub.fetch_with_request(Request::new_with_init("https://gateway-state/batch", &init)?).await?;
            if res.status_code() >= 300 {
                return Err(worker::Error::RustError(format!("counter object answered {}", res.status_code())));
            }
            Ok::<(), worker::Error>(())
        };
        match run.await {
            Ok(()) => None,
            Err(e) => {
                worker::console_error!("{{\"level\":\"error\",\"msg\":\"metrics not recorded; kept for the next write\",\"shard\":{},\"detail\":{}}}", part.shard, json_str(&e.to_string()));
                Some(part)
            }
        }
    });
    for part in futures_util::future::join_all(sends).await.into_iter().flatten() {
        iso.batch.borrow_mut().failed(part);
    }
}

/// One JSON log line per request ([`gateway_core::gateway::AccessRecord`]); never the token, only its id.
fn log_line(
    request_id: &str,
    trace_id: &str,
    route: Option<&str>,
    endpoint: Option<&str>,
    status: u16,
    started: f64,
    token_id: Option<&str>,
) {
    let record = gateway_core::gateway::AccessRecord { request_id, trace_id: Some(trace_id), route, endpoint, status, latency_ms: js_sys::Date::now() - started, token_id };
    console_log!("{}", serde_json::to_string(&record).unwrap_or_default());
}
