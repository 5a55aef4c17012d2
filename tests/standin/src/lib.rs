//! A stand-in for a vLLM OpenAI-compatible server.
//!
//! It speaks just enough of the vLLM HTTP surface (health, models, chat and text
//! completions with SSE streaming) for contract tests and the local demo, plus a few
//! test-only routes (`/echo/*`, `/slow`, `/redirect`, `/reset`) that let tests observe
//! exactly what the gateway forwarded and how it copes with slow, redirecting or
//! misbehaving upstreams. Every response carries `x-standin-instance: <name>` so a test
//! can tell which upstream served a request.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub mod server;
pub use server::Server;

/// Name of the header that identifies which stand-in served a response.
pub const INSTANCE_HEADER: &str = "x-standin-instance";
/// Request header selecting how many content chunks a streamed completion sends.
pub const CHUNKS_HEADER: &str = "x-standin-chunks";
/// Request header selecting the gap, in milliseconds, between streamed chunks.
pub const INTERVAL_HEADER: &str = "x-standin-interval-ms";

/// Default number of streamed content chunks.
const DEFAULT_CHUNKS: u64 = 5;
/// Upper bound on streamed content chunks, so a typo cannot stream forever.
const MAX_CHUNKS: u64 = 10_000;
/// Default gap between streamed chunks.
const DEFAULT_INTERVAL_MS: u64 = 20;
/// Fixed completion token count reported by non-streamed completions.
const NON_STREAM_COMPLETION_TOKENS: u64 = 7;
/// Model id the stand-in advertises.
const MODEL_ID: &str = "stand-in";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = BoxBody<Bytes, BoxError>;
type FrameResult = Result<Frame<Bytes>, BoxError>;

/// Configuration for [`StandIn::start`].
#[derive(Debug, Clone, Default)]
pub struct StandInOptions {
    /// Instance name, echoed in `x-standin-instance` and in response bodies.
    pub name: String,
    /// When set, every path except `/health` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Port to bind on 127.0.0.1; `0` picks any free port.
    pub port: u16,
}

impl StandInOptions {
    /// Options for an instance called `name` on any free port, without an API key.
    pub fn new(name: impl Into<String>) -> Self {
        StandInOptions {
            name: name.into(),
            api_key: None,
            port: 0,
        }
    }
}

/// One request as the stand-in received it (everything except `/health` is recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `"POST"`.
    pub method: String,
    /// Request path without the query string.
    pub path: String,
    /// Raw query string (without `?`), `None` when the URI had none.
    pub query: Option<String>,
    /// Headers in arrival order; names are lowercase, repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    /// The full request body.
    pub body: Bytes,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is valid JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared between the handle and every connection task.
struct Shared {
    name: String,
    instance_header: HeaderValue,
    api_key: Option<String>,
    addr: SocketAddr,
    requests: AtomicU64,
    cancelled_streams: AtomicU64,
    completed_streams: AtomicU64,
    last_request: Mutex<Option<RecordedRequest>>,
    /// What `/metrics` reports, set by a test ([`StandIn::set_load`]).
    load: Mutex<VllmLoad>,
    /// Times `/metrics` was read.
    metrics_reads: AtomicU64,
}

/// The load a stand-in reports on `/metrics`, in vLLM's metric names.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VllmLoad {
    /// `vllm:num_requests_running`.
    pub running: f64,
    /// `vllm:num_requests_waiting`.
    pub waiting: f64,
    /// `vllm:kv_cache_usage_perc` (0 to 1).
    pub kv_cache_usage: f64,
    /// `vllm:prefix_cache_queries_total` (tokens looked up).
    pub prefix_cache_queries: f64,
    /// `vllm:prefix_cache_hits_total` (tokens found).
    pub prefix_cache_hits: f64,
}

impl Shared {
    fn record(&self, req: RecordedRequest) {
        // Poisoning only happens if a holder panicked; the data is still a plain value.
        let mut slot = self
            .last_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(req);
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    /// Address suitable for clients: a wildcard bind is reached via loopback.
    fn client_addr(&self) -> SocketAddr {
        let ip = if self.addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            self.addr.ip()
        };
        SocketAddr::new(ip, self.addr.port())
    }
}

/// A running stand-in vLLM server.
///
/// Dropping it without calling [`StandIn::stop`] also shuts it down, in the background.
pub struct StandIn {
    shared: Arc<Shared>,
    server: Server,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn")
            .field("name", &self.shared.name)
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl StandIn {
    /// Binds `127.0.0.1:<opts.port>` and starts serving in the background.
    pub async fn start(opts: StandInOptions) -> std::io::Result<StandIn> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), opts).await
    }

    /// Like [`StandIn::start`] but binds `host` instead of loopback (used by the CLI's `--host`).
    pub async fn start_on(host: IpAddr, opts: StandInOptions) -> std::io::Result<StandIn> {
        let instance_header = HeaderValue::from_str(&opts.name).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("instance name {:?} is not a valid header value", opts.name),
            )
        })?;
        let listener = TcpListener::bind(SocketAddr::new(host, opts.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: opts.name,
            instance_header,
            api_key: opts.api_key,
            addr,
            requests: AtomicU64::new(0),
            cancelled_streams: AtomicU64::new(0),
            completed_streams: AtomicU64::new(0),
            last_request: Mutex::new(None),
            load: Mutex::new(VllmLoad::default()),
            metrics_reads: AtomicU64::new(0),
        });
        let serving = Arc::clone(&shared);
        let server = Server::spawn(listener, move |stream| serve_connection(stream, Arc::clone(&serving)))?;
        Ok(StandIn { shared, server })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:8001` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.client_addr())
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Number of requests handled so far, on every path except `/health`.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// SSE completion streams whose client went away before the final `[DONE]` was sent.
    pub fn cancelled_streams(&self) -> u64 {
        self.shared.cancelled_streams.load(Ordering::SeqCst)
    }

    /// SSE completion streams sent through to `[DONE]`.
    pub fn completed_streams(&self) -> u64 {
        self.shared.completed_streams.load(Ordering::SeqCst)
    }

    /// Sets what `/metrics` reports from now on.
    pub fn set_load(&self, load: VllmLoad) {
        *self.shared.load.lock().unwrap_or_else(|p| p.into_inner()) = load;
    }

    /// Times `/metrics` was read (by the gateway's probes).
    pub fn metrics_reads(&self) -> u64 {
        self.shared.metrics_reads.load(Ordering::SeqCst)
    }

    /// The most recent recorded request (any path except `/health`).
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared
            .last_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops accepting and closes every open connection; returns once the port is released.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A `127.0.0.1` address that nothing is listening on (the port was free a moment ago).
pub fn refused_addr() -> SocketAddr {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0));
    match listener.and_then(|l| l.local_addr()) {
        Ok(addr) => addr,
        // Why: port 1 (tcpmux) is privileged and essentially never served on loopback.
        Err(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1),
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handle(shared, req).await) }
    });
    // Connection errors (client resets, /reset aborts) are expected; nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<RespBody> {
    let mut resp = route(&shared, req).await;
    resp.headers_mut()
        .insert(INSTANCE_HEADER, shared.instance_header.clone());
    resp
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);

    // Like health, `/metrics` is unrecorded: the gateway's probes read it on their own schedule.
    if path == "/metrics" && parts.method == Method::GET {
        shared.metrics_reads.fetch_add(1, Ordering::SeqCst);
        let l = *shared.load.lock().unwrap_or_else(|p| p.into_inner());
        return text_response(StatusCode::OK, &vllm_metrics(&shared.name, &l));
    }
    // Why first: health is unauthenticated and unrecorded so probes never disturb counters.
    if path == "/health" {
        return if parts.method == Method::GET || parts.method == Method::HEAD {
            empty(StatusCode::OK)
        } else {
            not_found(&parts.method, &path)
        };
    }

    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("failed to read request body: {e}"),
                "invalid_request_error",
                "body_read_error",
            )
        }
    };

    shared.record(RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: path.clone(),
        query: query.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), header_str(v)))
            .collect(),
        body: body.clone(),
    });

    if let Some(key) = &shared.api_key {
        if !authorized(&parts.headers, key) {
            return openai_error(
                StatusCode::UNAUTHORIZED,
                "Incorrect or missing API key.",
                "authentication_error",
                "invalid_api_key",
            );
        }
    }

    let method = &parts.method;
    match path.as_str() {
        "/v1/models" if method == Method::GET => json_response(
            StatusCode::OK,
            &json!({
                "object": "list",
                "data": [{ "id": MODEL_ID, "object": "model", "owned_by": shared.name }],
            }),
        ),
        "/v1/chat/completions" | "/v1/completions" if method == Method::POST => {
            completion(shared, &parts.headers, &body)
        }
        "/echo" => echo(shared, &parts, &path, query.as_deref(), body.len()),
        p if p.starts_with("/echo/") => echo(shared, &parts, &path, query.as_deref(), body.len()),
        "/slow" => slow(query.as_deref()).await,
        "/redirect" if method == Method::GET => {
            let location = format!("http://{}/v1/models", shared.client_addr());
            let mut resp = empty(StatusCode::FOUND);
            if let Ok(value) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(LOCATION, value);
            }
            resp
        }
        "/hostile" if method == Method::GET => hostile(),
        "/redirect-to" if method == Method::GET => redirect_to(query.as_deref()),
        "/reset" if method == Method::GET => reset(),
        "/stall" if method == Method::GET => stall(Arc::clone(shared)),
        _ => not_found(method, &path),
    }
}

/// `/hostile`: what a compromised or careless upstream could send a browser on the
/// gateway's origin: a page that registers a service worker for the whole origin, and
/// cookies for the gateway's domain and its parent.
fn hostile() -> Response<RespBody> {
    let page = "<!doctype html><script>navigator.serviceWorker.register('/sw.js', {scope: '/'})</script>";
    let mut resp = Response::new(full(Bytes::from_static(page.as_bytes())));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert("service-worker-allowed", HeaderValue::from_static("/"));
    h.append(http::header::SET_COOKIE, HeaderValue::from_static("session=stolen; Path=/"));
    h.append(http::header::SET_COOKIE, HeaderValue::from_static("big=xxxx; Domain=example.com; Path=/"));
    resp
}

/// `/redirect-to?to=VALUE`: a 302 whose `Location` is VALUE as given (percent-decoded).
fn redirect_to(query: Option<&str>) -> Response<RespBody> {
    let to = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("to=")))
        .map(percent_decode)
        .unwrap_or_default();
    let mut resp = empty(StatusCode::FOUND);
    if let Ok(value) = HeaderValue::from_str(&to) {
        resp.headers_mut().insert(LOCATION, value);
    }
    resp
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authorized(headers: &HeaderMap, key: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| presented == key)
}

/// `/v1/chat/completions` and `/v1/completions`.
fn completion(shared: &Arc<Shared>, headers: &HeaderMap, body: &Bytes) -> Response<RespBody> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                &format!("request body is not valid JSON: {e}"),
                "invalid_request_error",
                "invalid_json",
            )
        }
    };
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(MODEL_ID)
        .to_owned();
    let prompt_tokens = count_prompt_words(&request);
    let id = format!(
        "chatcmpl-standin-{}-{}",
        shared.name,
        shared.requests.load(Ordering::SeqCst)
    );
    let created = unix_now();

    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let plan = StreamPlan {
            id,
            model,
            created,
            chunks: header_u64(headers, CHUNKS_HEADER)
                .unwrap_or(DEFAULT_CHUNKS)
                .min(MAX_CHUNKS),
            interval: Duration::from_millis(
                header_u64(headers, INTERVAL_HEADER).unwrap_or(DEFAULT_INTERVAL_MS),
            ),
            usage: include_usage.then_some(prompt_tokens),
        };
        // Why capacity 1: the producer stays at most one frame ahead, so a departed client
        // is noticed (send fails) before the stream could be counted as complete.
        let (tx, rx) = mpsc::channel::<FrameResult>(1);
        tokio::spawn(produce_stream(Arc::clone(shared), tx, plan));
        let mut resp = Response::new(channel_body(rx));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        return resp;
    }

    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": format!("Hello from stand-in instance {}.", shared.name),
                },
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": NON_STREAM_COMPLETION_TOKENS,
                "total_tokens": prompt_tokens + NON_STREAM_COMPLETION_TOKENS,
            },
        }),
    )
}

/// Whitespace-separated words across `messages[*].content` (string or text parts) and `prompt`.
fn count_prompt_words(request: &Value) -> u64 {
    fn words(s: &str) -> u64 {
        s.split_whitespace().count() as u64
    }
    let mut total = 0;
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        for message in messages {
            match message.get("content") {
                Some(Value::String(s)) => total += words(s),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if let Some(text) = part.get("text").and_then(Value::as_str) {
                            total += words(text);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match request.get("prompt") {
        Some(Value::String(s)) => total += words(s),
        Some(Value::Array(items)) => {
            total += items.iter().filter_map(Value::as_str).map(words).sum::<u64>();
        }
        _ => {}
    }
    total
}

struct StreamPlan {
    id: String,
    model: String,
    created: u64,
    chunks: u64,
    interval: Duration,
    /// `Some(prompt_tokens)` when the client asked for a usage chunk.
    usage: Option<u64>,
}

async fn produce_stream(shared: Arc<Shared>, tx: mpsc::Sender<FrameResult>, plan: StreamPlan) {
    let sent_all = send_stream(&tx, &plan).await;
    let counter = if sent_all {
        &shared.completed_streams
    } else {
        &shared.cancelled_streams
    };
    counter.fetch_add(1, Ordering::SeqCst);
}

/// Sends the whole SSE stream; `false` as soon as the client is found to be gone.
async fn send_stream(tx: &mpsc::Sender<FrameResult>, plan: &StreamPlan) -> bool {
    for i in 0..plan.chunks {
        if i > 0 && !plan.interval.is_zero() {
            // Why select: notice a departed client during the gap, not only at the next send.
            tokio::select! {
                _ = tokio::time::sleep(plan.interval) => {}
                _ = tx.closed() => return false,
            }
        }
        let mut delta = json!({ "content": format!("tok{i} ") });
        if i == 0 {
            delta["role"] = json!("assistant");
        }
        let last = i + 1 == plan.chunks;
        let chunk = json!({
            "id": plan.id,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "finish_reason": if last { json!("stop") } else { Value::Null },
            }],
        });
        if !send_event(tx, &chunk.to_string()).await {
            return false;
        }
    }
    if let Some(prompt_tokens) = plan.usage {
        let chunk = json!({
            "id": plan.id,
            "object": "chat.completion.chunk",
            "created": plan.created,
            "model": plan.model,
            "choices": [],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": plan.chunks,
                "total_tokens": prompt_tokens + plan.chunks,
            },
        });
        if !send_event(tx, &chunk.to_string()).await {
            return false;
        }
    }
    send_event(tx, "[DONE]").await
}

async fn send_event(tx: &mpsc::Sender<FrameResult>, data: &str) -> bool {
    let frame = Frame::data(Bytes::from(format!("data: {data}\n\n")));
    tx.send(Ok(frame)).await.is_ok()
}

/// `/reset`: two SSE chunks, then a body error so hyper aborts the connection mid-response.
fn reset() -> Response<RespBody> {
    let (tx, rx) = mpsc::channel::<FrameResult>(1);
    tokio::spawn(async move {
        for i in 0..2 {
            let chunk = json!({
                "object": "chat.completion.chunk",
                "choices": [{ "index": 0, "delta": { "content": format!("tok{i} ") }, "finish_reason": null }],
            });
            if !send_event(&tx, &chunk.to_string()).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "stand-in /reset");
        let _ = tx.send(Err(Box::new(err))).await;
    });
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

/// `/stall`: one SSE chunk, then silence until the client goes away (counted
/// as a cancelled stream), like a vLLM worker that hangs mid-generation.
fn stall(shared: Arc<Shared>) -> Response<RespBody> {
    let (tx, rx) = mpsc::channel::<FrameResult>(1);
    tokio::spawn(async move {
        let chunk = json!({
            "object": "chat.completion.chunk",
            "choices": [{ "index": 0, "delta": { "content": "tok0 " }, "finish_reason": null }],
        });
        if send_event(&tx, &chunk.to_string()).await {
            // Bounded, so a test that forgets to hang up cannot leak the task forever.
            tokio::select! {
                _ = tx.closed() => {}
                _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            }
        }
        shared.cancelled_streams.fetch_add(1, Ordering::SeqCst);
    });
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp
}

/// An upstream that reads a request (head and body) and then drops the
/// connection without answering: a request that reached it must not be sent
/// again elsewhere, since it may have been acted on.
pub struct BodyDropper {
    addr: SocketAddr,
    seen: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl BodyDropper {
    /// Binds a free loopback port and starts accepting.
    pub async fn start() -> std::io::Result<BodyDropper> {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    // Read until the head has ended and some body followed, or 2 s passed.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                    loop {
                        let read = tokio::time::timeout_at(deadline, sock.read(&mut buf)).await;
                        match read {
                            Ok(Ok(n)) if n > 0 => {
                                got.extend_from_slice(&buf[..n]);
                                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                                    if got.len() > end + 4 {
                                        break;
                                    }
                                }
                            }
                            _ => break,
                        }
                    }
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    // Reset rather than close, as a crashed process would.
                    // A zero linger resets at once; it never blocks the thread.
                    #[allow(deprecated)]
                    let _ = sock.set_linger(Some(Duration::ZERO));
                    drop(sock);
                });
            }
        });
        Ok(BodyDropper { addr, seen, task })
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose head arrived.
    pub fn requests(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for BodyDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `/metrics` in vLLM's Prometheus text format (the v1 engine's names), with a second
/// engine's label set on the counts and queues, so a reader must sum them.
fn vllm_metrics(name: &str, l: &VllmLoad) -> String {
    let mut out = String::new();
    let families: [(&str, &str, f64); 5] = [
        ("vllm:num_requests_running", "gauge", l.running),
        ("vllm:num_requests_waiting", "gauge", l.waiting),
        ("vllm:kv_cache_usage_perc", "gauge", l.kv_cache_usage),
        ("vllm:prefix_cache_queries_total", "counter", l.prefix_cache_queries),
        ("vllm:prefix_cache_hits_total", "counter", l.prefix_cache_hits),
    ];
    for (metric, kind, value) in families {
        out.push_str(&format!("# HELP {metric} Stand-in value.\n# TYPE {metric} {kind}\n"));
        out.push_str(&format!("{metric}{{engine=\"0\",model_name=\"{MODEL_ID}\",instance=\"{name}\"}} {value}\n"));
        if metric != "vllm:kv_cache_usage_perc" {
            out.push_str(&format!("{metric}{{engine=\"1\",model_name=\"{MODEL_ID}\",instance=\"{name}\"}} 0\n"));
        }
    }
    out
}

/// `/echo/*`: describes the request as received.
fn echo(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    path: &str,
    query: Option<&str>,
    body_len: usize,
) -> Response<RespBody> {
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let joined = parts
            .headers
            .get_all(name)
            .iter()
            .map(header_str)
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "instance": shared.name,
            "method": parts.method.as_str(),
            "path": path,
            "query": query,
            "headers": headers,
            "body_len": body_len,
        }),
    )
}

/// `/slow?ms=N`: sleeps, then reports how long.
async fn slow(query: Option<&str>) -> Response<RespBody> {
    let raw = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="));
    let ms = match raw.map(str::parse::<u64>) {
        None => 0,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "query parameter ms must be a non-negative integer",
                "invalid_request_error",
                "invalid_ms",
            )
        }
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    json_response(StatusCode::OK, &json!({ "slept_ms": ms }))
}

fn not_found(method: &Method, path: &str) -> Response<RespBody> {
    openai_error(
        StatusCode::NOT_FOUND,
        &format!("stand-in has no route for {method} {path}"),
        "invalid_request_error",
        "not_found",
    )
}

fn openai_error(status: StatusCode, message: &str, kind: &str, code: &str) -> Response<RespBody> {
    json_response(
        status,
        &json!({ "error": { "message": message, "type": kind, "code": code } }),
    )
}

fn json_response(status: StatusCode, value: &Value) -> Response<RespBody> {
    let mut resp = Response::new(full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text_response(status: StatusCode, text: &str) -> Response<RespBody> {
    let mut resp = Response::new(full(Bytes::from(text.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

fn empty(status: StatusCode) -> Response<RespBody> {
    let mut resp = Response::new(Empty::<Bytes>::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp
}

fn full(bytes: Bytes) -> RespBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// A streaming body fed by `rx`; dropping it (client gone) closes the channel.
fn channel_body(mut rx: mpsc::Receiver<FrameResult>) -> RespBody {
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    BodyExt::boxed(StreamBody::new(stream))
}

fn header_str(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(2);

    /// Sends one request on a fresh HTTP/1 connection; returns the response and the
    /// connection task (abort it to drop the connection).
    async fn send(
        addr: SocketAddr,
        req: Request<Full<Bytes>>,
    ) -> (Response<Incoming>, JoinHandle<()>) {
        let stream = timeout(WAIT, TcpStream::connect(addr)).await.unwrap().unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = timeout(WAIT, sender.send_request(req)).await.unwrap().unwrap();
        (resp, conn_task)
    }

    fn request(method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", "stand-in.test")
    }

    async fn body_bytes(resp: Response<Incoming>) -> Bytes {
        timeout(WAIT, resp.into_body().collect())
            .await
            .unwrap()
            .unwrap()
            .to_bytes()
    }

    async fn body_json(resp: Response<Incoming>) -> Value {
        serde_json::from_slice(&body_bytes(resp).await).unwrap()
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn start(name: &str, api_key: Option<&str>) -> StandIn {
        StandIn::start(StandInOptions {
            name: name.to_owned(),
            api_key: api_key.map(str::to_owned),
            port: 0,
        })
        .await
        .unwrap()
    }

    fn chat_body(stream: bool, include_usage: bool) -> String {
        json!({
            "model": "m",
            "messages": [
                { "role": "system", "content": "be brief" },
                { "role": "user", "content": "hello there  world" },
            ],
            "stream": stream,
            "stream_options": { "include_usage": include_usage },
        })
        .to_string()
    }

    #[tokio::test]
    async fn health_is_ok_empty_and_unrecorded() {
        let s = start("h", None).await;
        assert!(s.url().starts_with("http://127.0.0.1:"));
        assert_eq!(s.url(), format!("http://127.0.0.1:{}", s.addr().port()));
        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/health").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[INSTANCE_HEADER], "h");
        assert!(body_bytes(resp).await.is_empty());
        assert_eq!(s.requests(), 0);
        assert!(s.last_request().is_none());
        s.stop().await;
    }

    #[tokio::test]
    async fn metrics_report_the_load_set_in_vllms_names_unrecorded() {
        let s = start("m", Some("k")).await;
        s.set_load(VllmLoad { running: 3.0, waiting: 7.0, kv_cache_usage: 0.5, prefix_cache_queries: 100.0, prefix_cache_hits: 40.0 });
        let (resp, _c) = send(s.addr(), request(Method::GET, "/metrics").body(Full::default()).unwrap()).await;
        assert_eq!(resp.status(), StatusCode::OK, "no key needed, as vLLM's /metrics");
        let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        assert!(text.contains("# TYPE vllm:num_requests_waiting gauge"), "{text}");
        assert!(text.contains("vllm:num_requests_waiting{engine=\"0\",model_name=\"stand-in\",instance=\"m\"} 7\n"), "{text}");
        assert!(text.contains("vllm:num_requests_running{engine=\"1\",model_name=\"stand-in\",instance=\"m\"} 0\n"), "{text}");
        assert!(text.contains("vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"stand-in\",instance=\"m\"} 0.5\n"), "{text}");
        assert!(text.contains("vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"stand-in\",instance=\"m\"} 40\n"), "{text}");
        assert_eq!((s.requests(), s.metrics_reads()), (0, 1));
        assert!(s.last_request().is_none());
        s.stop().await;
    }

    #[tokio::test]
    async fn models_lists_stand_in() {
        let s = start("m1", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/v1/models").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v = body_json(resp).await;
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["id"], "stand-in");
        assert_eq!(v["data"][0]["owned_by"], "m1");
        s.stop().await;
    }

    #[tokio::test]
    async fn non_stream_completion_reports_usage_and_is_recorded() {
        let s = start("alpha", None).await;
        let body = chat_body(false, false);
        let (resp, _c) = send(
            s.addr(),
            request(Method::POST, "/v1/chat/completions?x=1")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[INSTANCE_HEADER], "alpha");
        let v = body_json(resp).await;
        assert_eq!(v["object"], "chat.completion");
        assert!(v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("alpha"));
        assert_eq!(v["usage"]["prompt_tokens"], 5);
        assert_eq!(v["usage"]["completion_tokens"], 7);
        assert_eq!(v["usage"]["total_tokens"], 12);

        assert_eq!(s.requests(), 1);
        let last = s.last_request().unwrap();
        assert_eq!(last.method, "POST");
        assert_eq!(last.path, "/v1/chat/completions");
        assert_eq!(last.query.as_deref(), Some("x=1"));
        assert_eq!(last.header("Content-Type"), Some("application/json"));
        assert_eq!(last.body, Bytes::from(body));
        s.stop().await;
    }

    #[tokio::test]
    async fn invalid_json_is_400_openai_error() {
        let s = start("j", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::POST, "/v1/completions")
                .body(Full::new(Bytes::from_static(b"{nope")))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].is_string());
        s.stop().await;
    }

    #[tokio::test]
    async fn stream_sends_requested_chunks_usage_and_done() {
        let s = start("st", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::POST, "/v1/chat/completions")
                .header(CHUNKS_HEADER, "3")
                .header(INTERVAL_HEADER, "1")
                .body(Full::new(Bytes::from(chat_body(true, true))))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
        let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        let events: Vec<&str> = text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap())
            .collect();
        assert_eq!(events.len(), 3 + 1 + 1, "{text}");
        for (i, e) in events[..3].iter().enumerate() {
            let v: Value = serde_json::from_str(e).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["choices"][0]["delta"]["content"], format!("tok{i} "));
        }
        let usage: Value = serde_json::from_str(events[3]).unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 5);
        assert_eq!(usage["usage"]["completion_tokens"], 3);
        assert_eq!(usage["usage"]["total_tokens"], 8);
        assert_eq!(events[4], "[DONE]");
        wait_for("completed stream", || s.completed_streams() == 1).await;
        assert_eq!(s.cancelled_streams(), 0);
        s.stop().await;
    }

    #[tokio::test]
    async fn stream_without_usage_defaults_to_five_chunks() {
        let s = start("st5", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::POST, "/v1/chat/completions")
                .header(INTERVAL_HEADER, "0")
                .body(Full::new(Bytes::from(chat_body(true, false))))
                .unwrap(),
        )
        .await;
        let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        assert_eq!(text.matches("\"tok").count(), 5, "{text}");
        assert!(!text.contains("\"usage\""));
        assert!(text.ends_with("data: [DONE]\n\n"));
        s.stop().await;
    }

    #[tokio::test]
    async fn dropped_stream_counts_as_cancelled() {
        let s = start("cx", None).await;
        let (resp, conn) = send(
            s.addr(),
            request(Method::POST, "/v1/chat/completions")
                .header(CHUNKS_HEADER, "1000")
                .header(INTERVAL_HEADER, "10")
                .body(Full::new(Bytes::from(chat_body(true, true))))
                .unwrap(),
        )
        .await;
        let mut body = resp.into_body();
        let first = timeout(WAIT, body.frame()).await.unwrap().unwrap().unwrap();
        assert!(first.data_ref().unwrap().starts_with(b"data: "));
        // Client goes away mid-stream.
        drop(body);
        conn.abort();
        wait_for("cancelled stream", || s.cancelled_streams() == 1).await;
        assert_eq!(s.completed_streams(), 0);
        s.stop().await;
    }

    #[tokio::test]
    async fn api_key_is_enforced_except_on_health() {
        let s = start("k", Some("sekret")).await;
        for auth in [None, Some("Bearer wrong"), Some("sekret")] {
            let mut b = request(Method::GET, "/v1/models");
            if let Some(a) = auth {
                b = b.header(AUTHORIZATION, a);
            }
            let (resp, _c) = send(s.addr(), b.body(Full::default()).unwrap()).await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(resp.headers()[INSTANCE_HEADER], "k");
            let v = body_json(resp).await;
            assert_eq!(v["error"]["type"], "authentication_error");
            assert_eq!(v["error"]["code"], "invalid_api_key");
        }
        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/v1/models")
                .header(AUTHORIZATION, "Bearer sekret")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/health").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(s.requests(), 4);
        s.stop().await;
    }

    #[tokio::test]
    async fn echo_describes_request() {
        let s = start("e", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::PUT, "/echo/a/b?q=1&r=2")
                .header("x-multi", "one")
                .header("x-multi", "two")
                .body(Full::new(Bytes::from_static(b"12345")))
                .unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v = body_json(resp).await;
        assert_eq!(v["instance"], "e");
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/echo/a/b");
        assert_eq!(v["query"], "q=1&r=2");
        assert_eq!(v["headers"]["x-multi"], "one, two");
        assert_eq!(v["body_len"], 5);
        s.stop().await;
    }

    #[tokio::test]
    async fn slow_redirect_and_not_found() {
        let s = start("r", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/slow?ms=30").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(body_json(resp).await, json!({ "slept_ms": 30 }));

        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/redirect").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(resp.headers()[LOCATION], format!("{}/v1/models", s.url()));

        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/nope").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(resp).await["error"]["code"], "not_found");
        s.stop().await;
    }

    #[tokio::test]
    async fn reset_aborts_mid_body() {
        let s = start("x", None).await;
        let (resp, _c) = send(
            s.addr(),
            request(Method::GET, "/reset").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let result = timeout(WAIT, resp.into_body().collect()).await.unwrap();
        assert!(result.is_err(), "body should fail after the abort");
        s.stop().await;
    }

    #[tokio::test]
    async fn stop_refuses_new_and_closes_open_connections() {
        let s = start("dead", None).await;
        let addr = s.addr();
        // An idle keep-alive connection that must be closed by stop().
        let mut open = TcpStream::connect(addr).await.unwrap();
        let (resp, _c) = send(
            addr,
            request(Method::GET, "/health").body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        timeout(WAIT, s.stop()).await.unwrap();

        let mut buf = [0u8; 16];
        let read = timeout(WAIT, open.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "open connection should be closed");
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn refused_addr_refuses() {
        let addr = refused_addr();
        assert!(addr.ip().is_loopback());
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
