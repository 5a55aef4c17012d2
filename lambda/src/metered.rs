//! The response body on its way to the client, metered: every chunk is counted (and read by
//! core's usage tap) as it passes, untouched and undelayed, and once the body is over the
//! request's [`RequestSample`] is recorded.
//!
//! When to record. Lambda may freeze the instance as soon as the invocation's response stream
//! ends, so work spawned after the end may only run at the next invocation, or never. So at the
//! normal end (the inner stream's `None`, or its final error) the recording is awaited *before*
//! the end is reported: every byte is already with the client, only the end of the stream waits,
//! and for at most [`RECORD_BUDGET`] (past it the recording is logged and given up). When the
//! body is dropped before its end (the client went away), there is nothing to hold back: the
//! recording is spawned and runs while the instance lives.

use bytes::Bytes;
use futures_util::Stream;
use gateway_core::meter::Meter;
use gateway_core::metrics::RequestSample;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Longest the end of a response waits for its recording.
pub const RECORD_BUDGET: Duration = Duration::from_secs(2);

/// Recording one sample (store writes, the EMF line).
pub type Recording = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Starts the recording of the finished sample.
pub type Record = Box<dyn FnOnce(RequestSample) -> Recording + Send>;
/// A recording under way at the end of the body, bounded by the budget.
type Bounded = Pin<Box<tokio::time::Timeout<Recording>>>;

/// A response body stream that meters what passes and records the sample at its end.
pub struct Metered<S, E> {
    inner: S,
    /// Until the body is over: the meter and what records its sample.
    meter: Option<(Meter, Record)>,
    /// From the request's arrival (the sample's latency).
    started: Instant,
    /// At the end: the recording under way, and the inner stream's final error to pass on after it.
    ending: Option<(Bounded, Option<E>)>,
    done: bool,
    budget: Duration,
    /// For the log line when the recording is given up.
    request_id: String,
    /// Takes out the usage-only event the gateway asked for ([`gateway_core::usage::UsageStrip`]).
    strip: Option<gateway_core::usage::UsageStrip>,
}

impl<S, E> Metered<S, E> {
    /// Meters `inner` (the response to `request_id`, which arrived at `started`) with `meter`;
    /// `record` gets the sample when the body is over.
    pub fn new(inner: S, meter: Meter, started: Instant, request_id: &str, record: Record) -> Self {
        Metered { inner, meter: Some((meter, record)), started, ending: None, done: false, budget: RECORD_BUDGET, request_id: request_id.to_string(), strip: None }
    }

    /// Removes the usage-only event from the stream (the gateway, not the client, asked for it).
    pub fn stripping_usage(mut self, strip: bool) -> Self {
        self.strip = strip.then(Default::default);
        self
    }

    /// Uses another bound for the wait at the end (tests).
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// The sample's recording, from the meter (once).
    fn recording(&mut self) -> Option<Recording> {
        let (meter, record) = self.meter.take()?;
        Some(record(meter.finish(self.started.elapsed().as_secs_f64() * 1000.0)))
    }
}

impl<S, E> Stream for Metered<S, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((recording, _)) = this.ending.as_mut() {
                let Poll::Ready(outcome) = recording.as_mut().poll(cx) else { return Poll::Pending };
                if outcome.is_err() {
                    let budget_ms = this.budget.as_millis() as u64;
                    tracing::warn!(request_id = this.request_id.as_str(), budget_ms, "metrics not recorded in time; given up");
                }
                let (_, fault) = this.ending.take().expect("ending is set");
                this.done = true;
                return Poll::Ready(fault.map(Err));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let end = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some((meter, _)) = this.meter.as_mut() {
                        meter.chunk(&chunk);
                    }
                    let Some(strip) = this.strip.as_mut() else { return Poll::Ready(Some(Ok(chunk))) };
                    let out = strip.feed(&chunk);
                    if out.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
                Poll::Ready(Some(Err(e))) => Some(e),
                Poll::Ready(None) => {
                    // What the strip still holds goes out before the end.
                    if let Some(rest) = this.strip.as_mut().map(|s| s.finish()).filter(|r| !r.is_empty()) {
                        return Poll::Ready(Some(Ok(Bytes::from(rest))));
                    }
                    None
                }
            };
            match this.recording() {
                Some(r) => this.ending = Some((Box::pin(tokio::time::timeout(this.budget, r)), end)),
                None => {
                    this.done = true;
                    return Poll::Ready(end.map(Err));
                }
            }
        }
    }
}

impl<S, E> Drop for Metered<S, E> {
    fn drop(&mut self) {
        // The client went away before the end (or during the wait at the end): nothing is held
        // back any more, so the recording runs on its own.
        let pending: Option<Recording> = match self.recording() {
            Some(r) => Some(r),
            // Still within the budget's bound.
            None => self.ending.take().map(|(r, _)| -> Recording {
                Box::pin(async move {
                    let _ = r.await;
                })
            }),
        };
        if let Some(r) = pending {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn(r);
                }
                Err(_) => tracing::warn!("response dropped outside the runtime; its metrics are not recorded"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, StreamExt};
    use gateway_core::forward::ForwardPlan;
    use std::sync::{Arc, Mutex};

    fn meter() -> Meter {
        let plan = ForwardPlan { token_id: Some("tok_a".into()), ..gateway_core::fixtures::plan("llama") };
        let mut m = Meter::new(&plan, 1_000);
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "text/event-stream".parse().unwrap(),
        );
        m.answered("a", 200, &h, 1.0, 2.0);
        m
    }

    type Log = Arc<Mutex<Vec<String>>>;

    /// A recorder that notes the sample, waits `delay`, then notes that it finished.
    fn recorder(log: &Log, delay: Duration) -> Record {
        let log = log.clone();
        Box::new(move |s: RequestSample| -> Recording {
            Box::pin(async move {
                log.lock().unwrap().push(format!("start {} {} {:?}", s.status, s.response_bytes, s.completion_tokens));
                tokio::time::sleep(delay).await;
                log.lock().unwrap().push("recorded".into());
            })
        })
    }

    const CHUNKS: [&str; 2] = ["data: {\"usage\":{\"prompt_tokens\":1,", "\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"];

    fn body() -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(CHUNKS.iter().map(|c| Ok(Bytes::from_static(c.as_bytes()))))
    }

    #[tokio::test]
    async fn chunks_pass_untouched_and_the_end_waits_for_the_recording() {
        let log = Log::default();
        let mut m = Metered::new(body(), meter(), Instant::now(), "req_1", recorder(&log, Duration::from_millis(100)));
        for c in CHUNKS {
            assert_eq!(m.next().await.unwrap().unwrap(), c.as_bytes());
        }
        assert!(log.lock().unwrap().is_empty(), "nothing recorded while the body streams");
        let before = Instant::now();
        assert!(m.next().await.is_none());
        assert!(before.elapsed() >= Duration::from_millis(100), "the end waited for the recording");
        let bytes = CHUNKS.iter().map(|c| c.len()).sum::<usize>();
        assert_eq!(*log.lock().unwrap(), vec![format!("start 200 {bytes} Some(2)"), "recorded".to_string()]);
        assert!(m.next().await.is_none(), "ended for good");
        drop(m);
        tokio::task::yield_now().await;
        assert_eq!(log.lock().unwrap().len(), 2, "recorded once");
    }

    #[tokio::test]
    async fn a_slow_recording_is_given_up_after_the_budget() {
        let log = Log::default();
        let mut m = Metered::new(body(), meter(), Instant::now(), "req_1", recorder(&log, Duration::from_millis(500))).with_budget(Duration::from_millis(50));
        let before = Instant::now();
        while let Some(Ok(_)) = m.next().await {}
        assert!(before.elapsed() < Duration::from_millis(400), "the end came at the budget");
        assert_eq!(log.lock().unwrap().len(), 1, "started, not finished");
        drop(m);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(log.lock().unwrap().len(), 1, "given up, not resumed");
    }

    #[tokio::test]
    async fn a_final_error_is_passed_on_after_the_recording() {
        let log = Log::default();
        let inner = stream::iter(vec![Ok(Bytes::from_static(b"{\"a\":")), Err("reset".to_string())]);
        let mut m = Metered::new(inner, meter(), Instant::now(), "req_1", recorder(&log, Duration::from_millis(10)));
        assert!(m.next().await.unwrap().is_ok());
        assert_eq!(m.next().await.unwrap().unwrap_err(), "reset");
        assert_eq!(log.lock().unwrap().len(), 2);
        assert!(m.next().await.is_none());
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_recorded_in_the_background() {
        let log = Log::default();
        let mut m = Metered::new(body(), meter(), Instant::now(), "req_1", recorder(&log, Duration::from_millis(10)));
        assert!(m.next().await.unwrap().is_ok());
        drop(m);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*log.lock().unwrap(), vec![format!("start 200 {} None", CHUNKS[0].len()), "recorded".to_string()]);
    }
}
