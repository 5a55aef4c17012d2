//! Per-token request-rate limits: which limit applies, and the sliding-window
//! decision both deployments make over their own counters (a Durable Object at
//! the edge, DynamoDB conditional counters on Lambda).
//!
//! The window is a sliding-window counter, as Cloudflare's own rate limiting:
//! counts are kept per fixed minute, and a request is admitted when
//! `previous × (1 − elapsed/60 s) + current < limit`. That bounds the requests
//! in any 60 s span to the limit under steady traffic, unlike a fixed window,
//! which lets a client send twice the limit across a minute boundary. Refused
//! requests are not counted, so a client that backs off is not punished for
//! the requests it was refused.

use crate::error::Error;
use crate::route::Route;
use crate::token::Principal;

/// Length of one counting window.
pub const WINDOW_MS: u64 = 60_000;
/// Highest limit a token or route may set.
pub const MAX_RPM: u32 = 1_000_000;

/// The limit that applies to one request, and the counter it is kept in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Counter name: the token id when the token carries its own limit, else token id and route.
    pub key: String,
    /// Requests per minute.
    pub per_minute: u32,
}

/// The limit for a request: the token's own (counted across routes) or else
/// the route's default, counted per subject on that route: every token of one
/// subject (an IdP user's sign-in and all their self-service tokens, or all the
/// tokens an admin issued to one service) shares one count, so holding 25
/// tokens does not give 25 times the limit. Requests without a token (public
/// routes) are not limited here.
pub fn limit_for(route: &Route, principal: Option<&Principal>) -> Option<RateLimit> {
    let p = principal?;
    match (p.rate_limit_rpm, route.rate_limit_rpm) {
        (Some(n), _) => Some(RateLimit { key: p.token_id.clone(), per_minute: n }),
        // Route names hold no `@`, so the last `@` ends the subject, whatever it holds.
        (None, Some(n)) => Some(RateLimit { key: format!("sub:{}@{}", p.subject, route.name), per_minute: n }),
        (None, None) => None,
    }
}

/// The start of the window holding `now_ms`, and how far into it `now_ms` is.
pub fn window_of(now_ms: u64) -> (u64, u64) {
    (now_ms - now_ms % WINDOW_MS, now_ms % WINDOW_MS)
}

/// True when the weighted estimate of the last 60 s, `previous × (1 − elapsed/60 s) + current`,
/// is under `limit`; in integers (scaled by the window length), so both deployments agree exactly.
fn under(limit: u32, previous: u64, current: u64, elapsed_ms: u64) -> bool {
    let w = WINDOW_MS as u128;
    let e = elapsed_ms.min(WINDOW_MS) as u128;
    previous as u128 * (w - e) + current as u128 * w < limit as u128 * w
}

/// The count the current window must stay under for one more request to be
/// admitted: admitted exactly when `current < threshold`. DynamoDB uses it as
/// the condition of its atomic increment.
pub fn threshold(limit: u32, previous: u64, elapsed_ms: u64) -> u64 {
    let w = WINDOW_MS as u128;
    let e = elapsed_ms.min(WINDOW_MS) as u128;
    let room = (limit as u128 * w).saturating_sub(previous as u128 * (w - e));
    // current·w < room  ⇔  current < ⌈room / w⌉
    room.div_ceil(w) as u64
}

/// Whole seconds until a request would be admitted if nothing else arrives
/// (at least 1): what `Retry-After` says.
pub fn retry_after(limit: u32, previous: u64, current: u64, now_ms: u64) -> u64 {
    let (start, _) = window_of(now_ms);
    for s in 1..=2 * WINDOW_MS / 1000 {
        let t = now_ms + s * 1000;
        let (t_start, t_elapsed) = window_of(t);
        let (prev, curr) = match (t_start - start) / WINDOW_MS {
            0 => (previous, current),
            1 => (current, 0),
            _ => (0, 0),
        };
        if under(limit, prev, curr, t_elapsed) {
            return s;
        }
    }
    2 * WINDOW_MS / 1000
}

/// What a limited route's answers tell the caller about its limit, as OpenAI's
/// `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
/// `x-ratelimit-reset-requests` do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allowance {
    /// Requests per minute.
    pub limit: u32,
    /// Requests that would still be admitted right now.
    pub remaining: u64,
    /// Milliseconds until the window holds none of the requests counted so far (the limit's
    /// initial state).
    pub reset_ms: u64,
}

impl Allowance {
    /// The allowance once `current` requests (this one included) are counted in the window
    /// starting at [`window_of`]`(now_ms)`, with `previous` in the one before.
    pub fn after(limit: u32, previous: u64, current: u64, now_ms: u64) -> Allowance {
        let (start, elapsed) = window_of(now_ms);
        let remaining = threshold(limit, previous, elapsed).saturating_sub(current);
        let reset_ms = if current > 0 {
            start + 2 * WINDOW_MS - now_ms
        } else if previous > 0 {
            start + WINDOW_MS - now_ms
        } else {
            0
        };
        Allowance { limit, remaining, reset_ms }
    }

    /// The three headers, in OpenAI's format (`reset` as a duration like `1m30s` or `250ms`).
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("x-ratelimit-limit-requests", self.limit.to_string()),
            ("x-ratelimit-remaining-requests", self.remaining.to_string()),
            ("x-ratelimit-reset-requests", duration(self.reset_ms)),
        ]
    }

    /// Adds [`Allowance::headers`] to a response's headers.
    pub fn insert_into(&self, headers: &mut http::HeaderMap) {
        for (name, value) in self.headers() {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `250ms`, `7s`, `1m30s`, `2h0m0s`.
pub fn duration(ms: u64) -> String {
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1_000);
    match (secs / 3600, secs % 3600 / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Admits or refuses one request given the window counts (before counting it).
pub fn admit(limit: u32, previous: u64, current: u64, now_ms: u64) -> Result<(), Error> {
    let (_, elapsed) = window_of(now_ms);
    if under(limit, previous, current, elapsed) {
        Ok(())
    } else {
        Err(Error::RateLimited { limit, retry_after: retry_after(limit, previous, current, now_ms) })
    }
}

/// Counts of one limiter, rolled forward as time passes. The edge's Durable
/// Object keeps one of these per key; tests use it as the reference model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    /// Start of the current window (unix ms).
    pub window_start: u64,
    /// Requests admitted in the previous window.
    pub previous: u64,
    /// Requests admitted in the current window.
    pub current: u64,
}

impl Counter {
    /// Rolls the windows forward to `now_ms`.
    fn roll(&mut self, now_ms: u64) {
        let (start, _) = window_of(now_ms);
        if start == self.window_start {
            return;
        }
        self.previous = if start == self.window_start + WINDOW_MS { self.current } else { 0 };
        self.current = 0;
        self.window_start = start;
    }

    /// Admits (and counts) or refuses one request at `now_ms`; what is left when admitted.
    pub fn hit(&mut self, limit: u32, now_ms: u64) -> Result<Allowance, Error> {
        self.roll(now_ms);
        admit(limit, self.previous, self.current, now_ms)?;
        self.current += 1;
        Ok(Allowance::after(limit, self.previous, self.current, now_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_counts_down_and_says_when_it_resets() {
        let mut c = Counter::default();
        let first = c.hit(3, T0 + 10_000).unwrap();
        assert_eq!((first.limit, first.remaining, first.reset_ms), (3, 2, 110_000));
        assert_eq!(c.hit(3, T0 + 10_000).unwrap().remaining, 1);
        assert_eq!(c.hit(3, T0 + 10_000).unwrap().remaining, 0);
        assert!(c.hit(3, T0 + 10_000).is_err());
        // Half a minute into the next window, half of the previous one still weighs in.
        let later = c.hit(3, T0 + 90_000).unwrap();
        assert_eq!((later.remaining, later.reset_ms), (1, 90_000));
        assert_eq!(Allowance::after(5, 0, 0, T0).reset_ms, 0);
        let h = first.headers();
        assert_eq!(h[0], ("x-ratelimit-limit-requests", "3".to_string()));
        assert_eq!(h[1], ("x-ratelimit-remaining-requests", "2".to_string()));
        assert_eq!(h[2], ("x-ratelimit-reset-requests", "1m50s".to_string()));
    }

    #[test]
    fn durations_are_written_as_openai_writes_them() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(250), "250ms");
        assert_eq!(duration(1_000), "1s");
        assert_eq!(duration(1_001), "2s");
        assert_eq!(duration(59_000), "59s");
        assert_eq!(duration(90_000), "1m30s");
        assert_eq!(duration(3_600_000), "1h0m0s");
    }

    proptest::proptest! {
        /// The remaining count is exactly how many more requests would be admitted now.
        #[test]
        fn remaining_is_what_would_still_be_admitted(limit in 1u32..50, previous in 0u64..60, used in 0u64..60, at in 0u64..60_000) {
            let now = T0 + at;
            let mut c = Counter { window_start: T0, previous, current: 0 };
            let mut last = None;
            for _ in 0..used {
                match c.hit(limit, now) {
                    Ok(a) => last = Some(a),
                    Err(_) => break,
                }
            }
            if let Some(a) = last {
                let mut more = 0;
                while c.hit(limit, now).is_ok() {
                    more += 1;
                }
                proptest::prop_assert_eq!(a.remaining, more);
            }
        }
    }
    use crate::route::Route;
    use crate::token::TokenKind;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000_000; // a window boundary

    fn principal(rpm: Option<u32>) -> Principal {
        Principal {
            token_id: "tok_a".into(),
            subject: "alice".into(),
            kind: TokenKind::User,
            groups: vec![],
            routes: None,
            expires_at: 0,
            issued_at: 0,
            rate_limit_rpm: rpm,
            provider: None,
            partner: None,
            contract: None,
            registrar: None,
        }
    }

    #[test]
    fn token_limit_wins_over_route_default() {
        let mut route = Route::new("llama", vec![]);
        assert_eq!(limit_for(&route, Some(&principal(None))), None);
        route.rate_limit_rpm = Some(100);
        assert_eq!(limit_for(&route, Some(&principal(None))), Some(RateLimit { key: "sub:alice@llama".into(), per_minute: 100 }));
        assert_eq!(limit_for(&route, Some(&principal(Some(5)))), Some(RateLimit { key: "tok_a".into(), per_minute: 5 }));
        assert_eq!(limit_for(&route, None), None);
    }

    #[test]
    fn a_routes_default_counts_per_subject_not_per_token() {
        let mut route = Route::new("llama", vec![]);
        route.rate_limit_rpm = Some(10);
        let (a, mut b) = (principal(None), principal(None));
        b.token_id = "tok_b".into();
        assert_eq!(limit_for(&route, Some(&a)).map(|l| l.key), limit_for(&route, Some(&b)).map(|l| l.key), "two tokens of one subject share a count");
        b.subject = "bob".into();
        assert_ne!(limit_for(&route, Some(&a)).map(|l| l.key), limit_for(&route, Some(&b)).map(|l| l.key), "another subject counts apart");
        // A token's own limit stays its own.
        let mut own = principal(Some(5));
        own.token_id = "tok_c".into();
        assert_eq!(limit_for(&route, Some(&own)).map(|l| l.key), Some("tok_c".to_string()));
    }

    #[test]
    fn exactly_the_limit_is_admitted_in_a_fresh_minute() {
        let mut c = Counter::default();
        for i in 0..10 {
            assert!(c.hit(10, T0 + i * 100).is_ok(), "request {i}");
        }
        match c.hit(10, T0 + 1_000) {
            Err(Error::RateLimited { limit: 10, retry_after }) => assert!((1..=120).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
        // Refused requests are not counted.
        assert_eq!(c.current, 10);
    }

    #[test]
    fn previous_minute_weighs_in_and_decays() {
        let mut c = Counter::default();
        for _ in 0..10 {
            c.hit(10, T0 + 59_000).unwrap();
        }
        // Just after the boundary the previous minute still counts almost fully (9.92 of 10).
        assert!(c.hit(10, T0 + 60_500).is_ok());
        assert!(c.hit(10, T0 + 60_600).is_err());
        // Half way through, half of it: 5 fit in the window, one is already used.
        let mut admitted = 0;
        for _ in 0..10 {
            if c.hit(10, T0 + 90_000).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 4);
        // Two windows later everything is forgotten.
        assert!(c.hit(10, T0 + 180_000).is_ok());
        assert_eq!(c.previous, 0);
    }

    #[test]
    fn retry_after_is_when_a_request_would_pass() {
        let mut c = Counter::default();
        for _ in 0..10 {
            c.hit(10, T0).unwrap();
        }
        let Err(Error::RateLimited { retry_after, .. }) = c.hit(10, T0 + 30_000) else { panic!() };
        // Full until the boundary, then the previous minute decays: 10 × (1 − t/60) < 10 right after it.
        assert_eq!(retry_after, 31);
        let later = T0 + 30_000 + retry_after * 1000;
        assert!(c.hit(10, later).is_ok());
    }

    proptest! {
        /// In any 60 s span, admitted requests never exceed twice the limit
        /// (the sliding estimate's worst case), and within one fixed minute never exceed the limit.
        #[test]
        fn never_over_the_limit_within_a_minute(limit in 1u32..50, gaps in proptest::collection::vec(0u64..5_000, 1..400)) {
            let mut c = Counter::default();
            let mut t = T0;
            let mut admitted: Vec<u64> = vec![];
            for g in gaps {
                t += g;
                if c.hit(limit, t).is_ok() {
                    admitted.push(t);
                }
            }
            for (i, &start) in admitted.iter().enumerate() {
                let in_span = admitted[i..].iter().take_while(|&&x| x < start + WINDOW_MS).count();
                prop_assert!(in_span as u64 <= 2 * limit as u64);
            }
            let mut per_window = std::collections::HashMap::new();
            for a in &admitted {
                *per_window.entry(window_of(*a).0).or_insert(0u64) += 1;
            }
            prop_assert!(per_window.values().all(|&n| n <= limit as u64));
        }

        /// `threshold` and `admit` agree, so DynamoDB's conditional increment makes the same decision.
        #[test]
        fn threshold_matches_admit(limit in 1u32..1000, prev in 0u64..2000, curr in 0u64..2000, elapsed in 0u64..60_000) {
            let admitted = admit(limit, prev, curr, T0 + elapsed).is_ok();
            prop_assert_eq!(admitted, curr < threshold(limit, prev, elapsed));
        }
    }
}
