//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the gateway joins
//! the caller's trace when it sends a valid `traceparent`, or starts one, and
//! passes it on to vLLM (which can export OTLP spans under it). The trace id is
//! in every log line and in the audit entry of an admin call.
//!
//! The gateway records no spans of its own; it is a participant that forwards
//! the context with its own parent id. The `sampled` flag is passed on as the
//! caller set it; a trace the gateway starts is marked sampled, so a vLLM that
//! exports traces records it (its sampler follows the parent).

use http::{HeaderMap, HeaderName, HeaderValue};

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header (vendor data, passed on only with a valid `traceparent`).
pub const TRACESTATE: &str = "tracestate";
/// Longest `tracestate` passed on; W3C asks participants to keep at least 512 bytes.
pub const MAX_TRACESTATE: usize = 4096;

/// Random bytes an adapter draws for each request: 16 for a trace id the gateway
/// starts, 8 for its own span (parent) id. Core draws no randomness itself.
pub type Fresh = [u8; 24];

/// Fresh random bytes for [`Trace::from_headers`] (all zeros if the platform has no
/// randomness: the ids are still valid, only not unique).
pub fn fresh() -> Fresh {
    let mut f = [0u8; 24];
    let _ = getrandom::getrandom(&mut f);
    f
}

/// The trace id of a `traceparent` value, if it is valid.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    parse_traceparent(traceparent).map(|(trace_id, _, _)| trace_id)
}

/// The trace a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The gateway's span: 16 lowercase hex digits, the parent id vLLM sees.
    pub span_id: String,
    /// The caller's span, when it sent one.
    pub parent_id: Option<String>,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
    /// The caller's `tracestate`, passed on unchanged.
    pub state: Option<HeaderValue>,
}

impl Trace {
    /// The caller's trace when its `traceparent` is valid (then its `tracestate`
    /// too), else a new one from `fresh`.
    pub fn from_headers(headers: &HeaderMap, fresh: &Fresh) -> Trace {
        let span_id = hex(&nonzero(&fresh[16..]));
        let mut parents = headers.get_all(TRACEPARENT).iter();
        // More than one `traceparent` is as invalid as a malformed one.
        let parent = match (parents.next(), parents.next()) {
            (Some(v), None) => v.to_str().ok().and_then(parse_traceparent),
            _ => None,
        };
        match parent {
            Some((trace_id, parent_id, flags)) => Trace {
                trace_id,
                span_id,
                parent_id: Some(parent_id),
                flags,
                state: joined_state(headers),
            },
            None => Trace {
                trace_id: hex(&nonzero(&fresh[..16])),
                span_id,
                parent_id: None,
                flags: 0x01,
                state: None,
            },
        }
    }

    /// The `traceparent` to send upstream: this trace, the gateway's span as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }

    /// Sets `traceparent` (and the caller's `tracestate`) on a request going upstream.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.traceparent()) {
            headers.insert(HeaderName::from_static(TRACEPARENT), v);
        }
        headers.remove(TRACESTATE);
        if let Some(state) = &self.state {
            headers.insert(HeaderName::from_static(TRACESTATE), state.clone());
        }
    }
}

/// `(trace_id, parent_id, flags)` of a valid `traceparent`. Versions above 00 are
/// read as 00 (their first four fields, then `-` or the end); `ff` is invalid.
fn parse_traceparent(v: &str) -> Option<(String, String, u8)> {
    let v = v.trim_matches([' ', '\t']);
    let b = v.as_bytes();
    let version = v.get(..2).filter(|s| is_hex(s))?;
    if version == "ff"
        || b.len() < 55
        || (version == "00" && b.len() != 55)
        || (b.len() > 55 && b[55] != b'-')
    {
        return None;
    }
    if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (&v[3..35], &v[36..52], &v[53..55]);
    if !is_hex(trace_id)
        || !is_hex(parent_id)
        || !is_hex(flags)
        || is_zero(trace_id)
        || is_zero(parent_id)
    {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id.to_string(), parent_id.to_string(), flags))
}

/// The caller's `tracestate` lines joined with commas, if short enough to keep whole.
fn joined_state(headers: &HeaderMap) -> Option<HeaderValue> {
    let parts: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let joined = parts.join(",");
    if joined.is_empty() || joined.len() > MAX_TRACESTATE {
        return None;
    }
    HeaderValue::from_str(&joined).ok()
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|c| c == b'0')
}

/// The bytes, with the last set to 1 if all were zero (an all-zero id is invalid).
fn nonzero(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    if v.iter().all(|&b| b == 0) {
        if let Some(last) = v.last_mut() {
            *last = 1;
        }
    }
    v
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FRESH: Fresh = [0xab; 24];
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_valid_traceparent_is_joined_with_the_gateways_own_span() {
        let t = Trace::from_headers(
            &headers(&[
                (TRACEPARENT, PARENT),
                (TRACESTATE, "congo=t61rcWkgMzE"),
                (TRACESTATE, "rojo=00f067aa0ba902b7"),
            ]),
            &FRESH,
        );
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(t.span_id, "abababababababab");
        assert_eq!(
            t.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01"
        );
        let mut up = headers(&[(TRACESTATE, "forged=1")]);
        t.inject(&mut up);
        assert_eq!(
            up[TRACEPARENT],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01"
        );
        assert_eq!(up[TRACESTATE], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert_eq!(up.get_all(TRACESTATE).iter().count(), 1);
    }

    #[test]
    fn the_callers_sampling_decision_is_kept() {
        let t = Trace::from_headers(
            &headers(&[(
                TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )]),
            &FRESH,
        );
        assert!(t.traceparent().ends_with("-00"));
    }

    #[test]
    fn without_a_valid_traceparent_a_sampled_trace_starts_and_tracestate_is_dropped() {
        let mut fresh = [0u8; 24];
        fresh[..16].copy_from_slice(&[0x11; 16]);
        fresh[16..].copy_from_slice(&[0x22; 8]);
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        ];
        for v in invalid {
            let t = Trace::from_headers(
                &headers(&[(TRACEPARENT, v), (TRACESTATE, "congo=1")]),
                &fresh,
            );
            assert_eq!(t.trace_id, "11".repeat(16), "{v}");
            assert_eq!((t.parent_id, t.flags, t.state), (None, 1, None), "{v}");
        }
        let two = Trace::from_headers(
            &headers(&[(TRACEPARENT, PARENT), (TRACEPARENT, PARENT)]),
            &fresh,
        );
        assert_eq!(
            two.trace_id,
            "11".repeat(16),
            "two traceparents are invalid"
        );
        let none = Trace::from_headers(&HeaderMap::new(), &fresh);
        assert_eq!(
            none.traceparent(),
            format!("00-{}-{}-01", "11".repeat(16), "22".repeat(8))
        );
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let t = Trace::from_headers(
            &headers(&[(
                TRACEPARENT,
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
            )]),
            &FRESH,
        );
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.traceparent().starts_with("00-"));
    }

    #[test]
    fn all_zero_randomness_still_makes_valid_ids() {
        let t = Trace::from_headers(&HeaderMap::new(), &[0; 24]);
        assert!(
            parse_traceparent(&t.traceparent()).is_some(),
            "{}",
            t.traceparent()
        );
    }

    proptest! {
        #[test]
        fn what_the_gateway_sends_is_always_a_valid_traceparent(v in "\\PC{0,80}", fresh in prop::array::uniform24(any::<u8>())) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(TRACEPARENT, v);
            }
            let t = Trace::from_headers(&h, &fresh);
            let sent = t.traceparent();
            let (trace_id, parent_id, _) = parse_traceparent(&sent).expect("valid");
            prop_assert_eq!(trace_id, t.trace_id);
            prop_assert_eq!(parent_id, t.span_id);
        }
    }
}
