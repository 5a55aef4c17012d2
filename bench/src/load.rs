//! The load generator: closed loop, `C` workers each on its own kept-alive HTTP/1.1
//! connection, sending requests back to back; every latency goes into an HDR histogram.
//!
//! A run is either timed (warm-up, then a measured window: the requests that start inside
//! the window are recorded) or counted (exactly
//! `total` requests, all recorded; used around CPU accounting).

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What a response must look like to count as a success.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Status 200 and a body holding this text.
    Contains(&'static str),
    /// This (error) status, whatever the body: for measuring refusals.
    Status(u16),
    /// Status 200 and an SSE stream of exactly `chunks` content events (`"tok…`) then `[DONE]`.
    Stream { chunks: usize },
}

/// One kind of request against one system.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: Method,
    /// Path and query, e.g. `/bench-instant/v1/models`.
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Send `x-session-id: bench-<worker>` (session affinity at the gateway).
    pub session: bool,
    pub expect: Expect,
}

/// How long or how many.
#[derive(Debug, Clone, Copy)]
pub enum Amount {
    Timed { warmup: Duration, measure: Duration },
    Counted { total: u64 },
}

/// What one run measured. Times in nanoseconds.
pub struct Outcome {
    pub concurrency: usize,
    /// Successful requests recorded.
    pub ok: u64,
    /// Every request sent, warm-up and failures included.
    pub sent: u64,
    /// Failed requests in the measured window, by kind.
    pub errors: BTreeMap<String, u64>,
    /// Failed requests during the warm-up (not in `errors`).
    pub warmup_errors: u64,
    /// Requests that started inside the window and ended after it (recorded all the same).
    pub late: u64,
    /// Connections opened after the first one of each worker (server closed keep-alive, or errors).
    pub reconnects: u64,
    /// The measured window (timed) or the whole run (counted).
    pub elapsed: Duration,
    /// Whole-request latency (to the last byte).
    pub latency: Histogram<u64>,
    /// Streams: time to the first content event.
    pub ttfc: Histogram<u64>,
    /// Streams: gap between consecutive content events as received.
    pub gaps: Histogram<u64>,
}

impl Outcome {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn hist() -> Histogram<u64> {
    // 1 ns .. 10 min at 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("histogram bounds")
}

struct WorkerStats {
    ok: u64,
    sent: u64,
    late: u64,
    errors: BTreeMap<String, u64>,
    warmup_errors: u64,
    reconnects: u64,
    latency: Histogram<u64>,
    ttfc: Histogram<u64>,
    gaps: Histogram<u64>,
}

struct Success {
    ttfc: Option<Duration>,
    gaps: Vec<Duration>,
}

/// Runs `concurrency` workers against `target`.
pub async fn run(target: Arc<Target>, concurrency: usize, amount: Amount, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let (measure_from, end) = match amount {
        Amount::Timed { warmup, measure } => (start + warmup, Some(start + warmup + measure)),
        Amount::Counted { .. } => (start, None),
    };
    let budget = Arc::new(AtomicU64::new(match amount {
        Amount::Counted { total } => total,
        Amount::Timed { .. } => u64::MAX,
    }));
    let mut tasks = Vec::with_capacity(concurrency);
    for id in 0..concurrency {
        let target = target.clone();
        let budget = budget.clone();
        tasks.push(tokio::spawn(worker(id, target, measure_from, end, budget, timeout)));
    }
    let mut out = Outcome {
        concurrency,
        ok: 0,
        sent: 0,
        late: 0,
        errors: BTreeMap::new(),
        warmup_errors: 0,
        reconnects: 0,
        elapsed: Duration::ZERO,
        latency: hist(),
        ttfc: hist(),
        gaps: hist(),
    };
    for t in tasks {
        let s = t.await.expect("load worker");
        out.ok += s.ok;
        out.sent += s.sent;
        out.late += s.late;
        for (k, v) in s.errors {
            *out.errors.entry(k).or_default() += v;
        }
        out.warmup_errors += s.warmup_errors;
        out.reconnects += s.reconnects;
        out.latency.add(&s.latency).expect("same bounds");
        out.ttfc.add(&s.ttfc).expect("same bounds");
        out.gaps.add(&s.gaps).expect("same bounds");
    }
    out.elapsed = match end {
        Some(end) => end - measure_from,
        None => start.elapsed(),
    };
    out
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect_timeout".to_string())?
        .map_err(|_| "connect".to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| "handshake".to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn worker(id: usize, target: Arc<Target>, measure_from: Instant, end: Option<Instant>, budget: Arc<AtomicU64>, timeout: Duration) -> WorkerStats {
    let mut s = WorkerStats { ok: 0, sent: 0, late: 0, errors: BTreeMap::new(), warmup_errors: 0, reconnects: 0, latency: hist(), ttfc: hist(), gaps: hist() };
    let session = HeaderValue::from_str(&format!("bench-{id}")).expect("header value");
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut opened = 0u64;
    loop {
        if end.is_some_and(|e| Instant::now() >= e) {
            break;
        }
        // Counted runs share one budget of requests between the workers.
        if budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            break;
        }
        let t0 = Instant::now();
        s.sent += 1;
        let result = tokio::time::timeout(timeout, one(&target, &mut sender, &mut opened, &session, t0)).await.unwrap_or_else(|_| Err("timeout".into()));
        let t1 = Instant::now();
        // Every request that starts inside the window is recorded, also when it ends after it
        // (a stall longer than the window must show in the percentiles, not vanish).
        let measured = t0 >= measure_from && end.is_none_or(|e| t0 < e);
        if measured && end.is_some_and(|e| t1 > e) {
            s.late += 1;
        }
        match result {
            Ok(ok) => {
                if measured {
                    s.ok += 1;
                    let _ = s.latency.record(nanos(t1 - t0));
                    if let Some(t) = ok.ttfc {
                        let _ = s.ttfc.record(nanos(t));
                    }
                    for g in ok.gaps {
                        let _ = s.gaps.record(nanos(g).max(1));
                    }
                }
            }
            Err(kind) => {
                // A failed exchange leaves the connection in an unknown state.
                sender = None;
                if measured {
                    *s.errors.entry(kind).or_default() += 1;
                } else if t0 < measure_from {
                    s.warmup_errors += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    s.reconnects = opened.saturating_sub(1);
    s
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// One exchange on the worker's connection (opened again if the server closed it; the
/// time to reconnect counts in the request's latency, as a client would feel it).
async fn one(target: &Target, sender: &mut Option<SendRequest<Full<Bytes>>>, opened: &mut u64, session: &HeaderValue, t0: Instant) -> Result<Success, String> {
    let reusable = match sender.as_mut() {
        Some(s) => s.ready().await.is_ok(),
        None => false,
    };
    if !reusable {
        *sender = Some(connect(target.addr).await?);
        *opened += 1;
    }
    let s = sender.as_mut().expect("connected");
    let mut b = Request::builder().method(target.method.clone()).uri(target.path.as_str()).header(http::header::HOST, target.addr.to_string());
    for (k, v) in &target.headers {
        b = b.header(k, v);
    }
    if target.session {
        b = b.header("x-session-id", session.clone());
    }
    let req = b.body(Full::new(target.body.clone())).map_err(|_| "request".to_string())?;
    let res = s.send_request(req).await.map_err(|e| if e.is_canceled() || e.is_closed() { "closed".to_string() } else { "send".to_string() })?;
    let status = res.status();
    let mut body = res.into_body();
    match &target.expect {
        Expect::Status(want) => {
            body.collect().await.map_err(|_| "body".to_string())?;
            if status.as_u16() != *want {
                return Err(format!("status_{}", status.as_u16()));
            }
            Ok(Success { ttfc: None, gaps: Vec::new() })
        }
        Expect::Contains(needle) => {
            let bytes = body.collect().await.map_err(|_| "body".to_string())?.to_bytes();
            if status != 200 {
                return Err(format!("status_{}", status.as_u16()));
            }
            if !contains(&bytes, needle.as_bytes()) {
                return Err("unexpected_body".into());
            }
            Ok(Success { ttfc: None, gaps: Vec::new() })
        }
        Expect::Stream { chunks } => {
            let mut buf: Vec<u8> = Vec::new();
            let mut scanned = 0usize;
            let mut event_start = 0usize;
            let mut content_at: Vec<Instant> = Vec::with_capacity(*chunks);
            let mut done = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| "body".to_string())?;
                let Ok(data) = frame.into_data() else { continue };
                let t = Instant::now();
                buf.extend_from_slice(&data);
                // Split into SSE events at blank lines (`\n\n`, or `\r\n\r\n`).
                while let Some(rel) = find_event_end(&buf[scanned..]) {
                    let (at, sep) = rel;
                    let end = scanned + at;
                    let event = &buf[event_start..end];
                    if contains(event, b"\"tok") {
                        content_at.push(t);
                    } else if contains(event, b"[DONE]") {
                        done = true;
                    }
                    event_start = end + sep;
                    scanned = event_start;
                }
                scanned = scanned.max(buf.len().saturating_sub(3)).max(event_start);
            }
            if status != 200 {
                return Err(format!("status_{}", status.as_u16()));
            }
            if content_at.len() != *chunks {
                return Err(format!("stream_{}_of_{}_chunks", content_at.len().min(999), chunks));
            }
            if !done {
                return Err("stream_without_done".into());
            }
            let gaps = content_at.windows(2).map(|w| w[1] - w[0]).collect();
            Ok(Success { ttfc: content_at.first().map(|t| *t - t0), gaps })
        }
    }
}

fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some((i, 2));
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines() {
        assert_eq!(find_event_end(b"data: a\n\ndata: b"), Some((7, 2)));
        assert_eq!(find_event_end(b"data: a\r\n\r\ndata: b"), Some((8, 3)));
        assert_eq!(find_event_end(b"data: a\n"), None);
    }
}
