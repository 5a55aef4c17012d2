//! What one forwarded request adds up to, collected as it happens: the
//! adapters tell a [`Meter`] about each attempt and each response chunk it
//! passes on, and hand the finished [`RequestSample`] to the store off the
//! response path ([`crate::metrics::updates`]).

use crate::forward::ForwardPlan;
use crate::metrics::{RequestSample, MAX_FAILED_ENDPOINTS};
use crate::usage::{Keep, UsageTap};

/// Collects one request's [`RequestSample`].
#[derive(Debug)]
pub struct Meter {
    sample: RequestSample,
    tap: Option<UsageTap>,
}

impl Meter {
    /// A meter for a request forwarded along `plan`, arrived at `at` (unix seconds).
    pub fn new(plan: &ForwardPlan, at: u64) -> Self {
        let budget_keys = plan.budgets.iter().map(|(k, _)| k.clone()).collect();
        Meter { sample: RequestSample { route: plan.route.clone(), token_id: plan.token_id.clone(), partner: plan.partner.clone(), at, budget_keys, ..RequestSample::default() }, tap: None }
    }

    /// An endpoint that could not be reached.
    pub fn failed(&mut self, endpoint: &str) {
        if self.sample.failed_endpoints.len() < MAX_FAILED_ENDPOINTS {
            self.sample.failed_endpoints.push(endpoint.to_string());
        }
    }

    /// The upstream answered with `status` and `headers` (after the gateway's
    /// own `gateway_ms`, and `first_byte_ms` after the answering attempt went out); the
    /// body's usage is read when it is JSON or an event stream.
    pub fn answered(
        &mut self,
        endpoint: &str,
        status: u16,
        headers: &http::HeaderMap,
        gateway_ms: f64,
        first_byte_ms: f64,
    ) {
        self.sample.endpoint = Some(endpoint.to_string());
        self.sample.status = status;
        self.sample.gateway_ms = Some(gateway_ms);
        self.sample.first_byte_ms = Some(first_byte_ms);
        self.tap = UsageTap::for_response(headers);
    }

    /// The gateway answered itself (429, 413, 502, 504…).
    pub fn refused(&mut self, status: u16) {
        self.sample.status = status;
    }

    /// Request body bytes sent upstream.
    pub fn sent(&mut self, bytes: u64) {
        self.sample.request_bytes = bytes;
    }

    /// True while the usage tap needs the chunks' bytes; otherwise [`Meter::count`] is enough.
    pub fn wants_bytes(&self) -> bool {
        self.tap.as_ref().is_some_and(UsageTap::wants_more)
    }

    /// A response chunk passed on to the client.
    pub fn chunk(&mut self, bytes: &[u8]) {
        self.count(bytes.len() as u64);
        if let Some(tap) = self.tap.as_mut().filter(|t| t.wants_more()) {
            tap.feed(bytes);
        }
    }

    /// A response chunk of `len` bytes whose content the meter does not need.
    pub fn count(&mut self, len: u64) {
        self.sample.response_bytes = self.sample.response_bytes.saturating_add(len);
    }

    /// What an adapter that does not pass each chunk to [`Meter::chunk`] keeps of the body
    /// for [`Meter::ended`]; `None` when no usage is read from it.
    pub fn keep(&self) -> Option<Keep> {
        self.tap.as_ref().map(UsageTap::keep)
    }

    /// The body ended (or the client went) after `bytes` were passed on, counted by the
    /// adapter; `kept` is what [`Meter::keep`] asked for and `cut` says bytes went by before
    /// it ([`UsageTap::feed_kept`]). Instead of [`Meter::chunk`] and [`Meter::count`], once.
    pub fn ended(&mut self, bytes: u64, kept: &[u8], cut: bool) {
        self.count(bytes);
        if let Some(tap) = self.tap.as_mut() {
            tap.feed_kept(kept, cut);
        }
    }

    /// The sample, `latency_ms` after the request arrived.
    pub fn finish(mut self, latency_ms: f64) -> RequestSample {
        if let Some(usage) = self.tap.take().and_then(UsageTap::finish) {
            self.sample.prompt_tokens = Some(usage.prompt_tokens);
            self.sample.completion_tokens = Some(usage.completion_tokens);
        }
        self.sample.latency_ms = latency_ms;
        self.sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn plan() -> ForwardPlan {
        ForwardPlan { token_id: Some("tok_a".into()), ..crate::fixtures::plan("llama") }
    }

    #[test]
    fn a_streamed_answer_counts_bytes_and_reads_usage_from_the_last_event() {
        let mut m = Meter::new(&plan(), 1_000);
        m.failed("a");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            "text/event-stream".parse().unwrap(),
        );
        m.answered("b", 200, &h, 1.5, 4.0);
        let chunks = [
            "data: {\"choices\":[]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,",
            "\"completion_tokens\":7}}\n\ndata: [DONE]\n\n",
        ];
        for c in chunks {
            m.chunk(c.as_bytes());
        }
        let s = m.finish(20.0);
        assert_eq!(s.route, "llama");
        assert_eq!(s.endpoint.as_deref(), Some("b"));
        assert_eq!(s.failed_endpoints, vec!["a".to_string()]);
        assert_eq!(s.status, 200);
        assert_eq!(s.token_id.as_deref(), Some("tok_a"));
        assert_eq!((s.prompt_tokens, s.completion_tokens), (Some(5), Some(7)));
        assert_eq!(
            s.response_bytes,
            chunks.iter().map(|c| c.len() as u64).sum::<u64>()
        );
        assert_eq!(
            (s.latency_ms, s.gateway_ms, s.first_byte_ms, s.at),
            (20.0, Some(1.5), Some(4.0), 1_000)
        );
    }

    #[test]
    fn a_body_counted_elsewhere_is_read_once_from_what_was_kept() {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let mut m = Meter::new(&plan(), 1);
        m.answered("b", 200, &h, 1.0, 2.0);
        assert_eq!(m.keep(), Some(Keep::Tail(crate::usage::SSE_TAIL_BYTES)));
        let tail = b"\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        m.ended(90_000, tail, true);
        let s = m.finish(3.0);
        assert_eq!((s.response_bytes, s.prompt_tokens, s.completion_tokens), (90_000, Some(5), Some(7)));

        h.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
        let mut m = Meter::new(&plan(), 1);
        m.answered("b", 200, &h, 1.0, 2.0);
        assert_eq!(m.keep(), Some(Keep::Whole(crate::usage::MAX_JSON_BODY)));
        let body = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1}}"#;
        m.ended(body.len() as u64, body, false);
        let s = m.finish(3.0);
        assert_eq!((s.response_bytes, s.prompt_tokens, s.completion_tokens), (body.len() as u64, Some(2), Some(1)));

        // No tap (not JSON or an event stream): only the bytes count.
        h.insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let mut m = Meter::new(&plan(), 1);
        m.answered("b", 200, &h, 1.0, 2.0);
        assert_eq!(m.keep(), None);
        m.ended(12, &[], false);
        let s = m.finish(3.0);
        assert_eq!((s.response_bytes, s.prompt_tokens), (12, None));
    }

    #[test]
    fn a_refusal_has_no_endpoint_and_no_usage() {
        let mut m = Meter::new(&plan(), 5);
        m.refused(429);
        assert!(!m.wants_bytes());
        let s = m.finish(1.0);
        assert_eq!((s.status, s.endpoint, s.prompt_tokens), (429, None, None));
    }
}
