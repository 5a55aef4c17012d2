//! The proxied response body on its way back: passed through chunk by chunk
//! untouched, with an idle timeout between chunks, and a clean, explained end
//! when the upstream fails mid-stream.
//!
//! Both deployments wrap the upstream's body in [`Guarded`]; only the timer
//! (`worker::Delay`, `tokio::time::sleep`) and the chunk type differ.
//! When a stream of server-sent events breaks, the client gets one last event
//! in OpenAI's error shape (the OpenAI SDKs raise it as an `APIError`) and a
//! normal end, instead of a truncated stream that looks finished; any other
//! body ends with an error, so the client sees an incomplete response.

use bytes::Bytes;
use futures_core::Stream;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why a response stream was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// No chunk arrived for this long.
    Idle { after_ms: u64 },
    /// The upstream's body failed (connection reset, protocol error).
    Upstream(String),
}

impl Fault {
    /// Stable code, as in the JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::Idle { .. } => "upstream_idle",
            Fault::Upstream(_) => "upstream_stream_error",
        }
    }

    /// What the client is told (never the upstream's address or error text).
    pub fn message(&self) -> String {
        match self {
            Fault::Idle { after_ms } => format!("the upstream sent nothing for {after_ms} ms; the stream was closed"),
            Fault::Upstream(_) => "the upstream's stream failed before it was complete".to_string(),
        }
    }

    /// The last server-sent event of a broken stream, in OpenAI's error shape.
    pub fn sse_event(&self) -> Bytes {
        let body = serde_json::json!({"error": {"message": self.message(), "type": "api_error", "code": self.code()}});
        Bytes::from(format!("data: {body}\n\n"))
    }
}

impl Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Idle { after_ms } => write!(f, "upstream idle for {after_ms} ms"),
            Fault::Upstream(detail) => write!(f, "upstream stream failed: {detail}"),
        }
    }
}

impl std::error::Error for Fault {}

/// True when a response's `Content-Type` is `text/event-stream`.
pub fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// A response body stream with an idle timeout and an explained end.
///
/// `S` yields the upstream's chunks; `sleep(ms)` makes the platform's timer;
/// `to_chunk` turns the closing SSE event into the platform's chunk type;
/// `on_fault` is called once when the stream is cut short (to log it).
pub struct Guarded<S, T, D, F, L> {
    inner: Option<S>,
    sleep: F,
    idle_ms: u64,
    timer: Option<Pin<Box<D>>>,
    sse: bool,
    to_chunk: fn(Bytes) -> T,
    on_fault: L,
}

impl<S, T, D, F, L> Guarded<S, T, D, F, L> {
    /// Wraps `inner`.
    pub fn new(inner: S, idle_ms: u64, sse: bool, sleep: F, to_chunk: fn(Bytes) -> T, on_fault: L) -> Self {
        Guarded { inner: Some(inner), sleep, idle_ms, timer: None, sse, to_chunk, on_fault }
    }
}

impl<S, T, D, F, L> Guarded<S, T, D, F, L>
where
    L: FnMut(&Fault),
{
    /// Drops the upstream (which cancels it) and ends the stream as `fault` requires.
    fn fail(&mut self, fault: Fault) -> Poll<Option<Result<T, Fault>>> {
        self.inner = None;
        self.timer = None;
        (self.on_fault)(&fault);
        if self.sse {
            Poll::Ready(Some(Ok((self.to_chunk)(fault.sse_event()))))
        } else {
            Poll::Ready(Some(Err(fault)))
        }
    }
}

impl<S, T, E, D, F, L> Stream for Guarded<S, T, D, F, L>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: Display,
    D: Future<Output = ()>,
    F: FnMut(u64) -> D + Unpin,
    L: FnMut(&Fault) + Unpin,
    T: Unpin,
{
    type Item = Result<T, Fault>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.timer = None;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                this.timer = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => this.fail(Fault::Upstream(e.to_string())),
            Poll::Pending => {
                if this.timer.is_none() {
                    this.timer = Some(Box::pin((this.sleep)(this.idle_ms)));
                }
                match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        let idle = Fault::Idle { after_ms: this.idle_ms };
                        this.fail(idle)
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_executor::block_on;
    use futures_util::stream::{self, StreamExt};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A timer that fires only when the test says so.
    #[derive(Clone, Default)]
    struct Clock(Rc<RefCell<bool>>);
    struct Tick(Rc<RefCell<bool>>);
    impl Future for Tick {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if *self.0.borrow() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn chunks(items: Vec<Result<&'static str, &'static str>>) -> impl Stream<Item = Result<Bytes, &'static str>> + Unpin {
        stream::iter(items.into_iter().map(|r| r.map(|s| Bytes::from_static(s.as_bytes()))))
    }

    #[test]
    fn chunks_pass_through_untouched() {
        let s = Guarded::new(chunks(vec![Ok("a"), Ok("b")]), 1000, true, |_| Tick(Rc::default()), |b| b, |_: &Fault| panic!("no fault"));
        let out: Vec<_> = block_on(s.collect::<Vec<_>>());
        assert_eq!(out, vec![Ok(Bytes::from("a")), Ok(Bytes::from("b"))]);
    }

    #[test]
    fn broken_event_stream_ends_with_an_openai_error_event() {
        let faults = Rc::new(RefCell::new(vec![]));
        let seen = faults.clone();
        let s = Guarded::new(chunks(vec![Ok("data: 1\n\n"), Err("connection reset by 10.0.0.5")]), 1000, true, |_| Tick(Rc::default()), |b| b, move |f: &Fault| seen.borrow_mut().push(f.clone()));
        let out: Vec<_> = block_on(s.collect::<Vec<_>>());
        assert_eq!(out.len(), 2);
        let last = String::from_utf8(out[1].clone().unwrap().to_vec()).unwrap();
        assert!(last.starts_with("data: {") && last.ends_with("\n\n"));
        let v: serde_json::Value = serde_json::from_str(last.trim_start_matches("data: ").trim()).unwrap();
        assert_eq!(v["error"]["code"], "upstream_stream_error");
        // The upstream's error text (and its address) stays in the log.
        assert!(!last.contains("10.0.0.5"));
        assert_eq!(faults.borrow().len(), 1);
    }

    #[test]
    fn broken_plain_body_ends_with_an_error() {
        let s = Guarded::new(chunks(vec![Ok("{\"a\":"), Err("reset")]), 1000, false, |_| Tick(Rc::default()), |b| b, |_: &Fault| {});
        let out: Vec<_> = block_on(s.collect::<Vec<_>>());
        assert!(matches!(out.as_slice(), [Ok(_), Err(Fault::Upstream(_))]));
    }

    #[test]
    fn silence_longer_than_idle_ends_the_stream() {
        let clock = Clock::default();
        let fire = clock.0.clone();
        let (tx, rx) = futures_channel_like();
        let mut s = Guarded::new(rx, 50, true, move |ms| {
            assert_eq!(ms, 50);
            Tick(clock.0.clone())
        }, |b| b, |_: &Fault| {});
        tx.borrow_mut().push(Bytes::from_static(b"data: 1\n\n"));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(Pin::new(&mut s).poll_next(&mut cx), Poll::Ready(Some(Ok(_)))));
        // Nothing more and the timer not yet fired: pending.
        assert!(Pin::new(&mut s).poll_next(&mut cx).is_pending());
        *fire.borrow_mut() = true;
        match Pin::new(&mut s).poll_next(&mut cx) {
            Poll::Ready(Some(Ok(ev))) => assert!(String::from_utf8_lossy(&ev).contains("upstream_idle")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Pin::new(&mut s).poll_next(&mut cx), Poll::Ready(None)));
    }

    /// A stream fed by the test, pending when empty.
    fn futures_channel_like() -> (Rc<RefCell<Vec<Bytes>>>, impl Stream<Item = Result<Bytes, &'static str>> + Unpin) {
        let q: Rc<RefCell<Vec<Bytes>>> = Rc::default();
        let r = q.clone();
        let s = stream::poll_fn(move |_| match r.borrow_mut().pop() {
            Some(b) => Poll::Ready(Some(Ok(b))),
            None => Poll::Pending,
        });
        (q, s)
    }

    #[test]
    fn event_stream_content_type() {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "text/event-stream; charset=utf-8".parse().unwrap());
        assert!(is_event_stream(&h));
        h.insert("content-type", "application/json".parse().unwrap());
        assert!(!is_event_stream(&h));
    }
}
