//! The forwarding machine: which upstream to try next, when to fail over, and
//! when to give up, as one sans-IO state machine both adapters drive. An adapter
//! performs the [`Step`] it is given (an HTTP attempt), reports what happened as
//! an [`Outcome`], and gets the next step. The rules live here once:
//!
//! - Upstreams are tried in the plan's order (the affinity key's order, endpoints
//!   that failed recently last).
//! - A failed attempt goes on to the next upstream only when the request cannot have
//!   reached the endpoint (the connection was never made, or no byte of its body left
//!   the gateway), or when its method is idempotent (`GET`, `HEAD`, `OPTIONS`): a
//!   request that may have reached a model server is **never sent twice**.
//! - No response headers within the plan's response timeout: `504`, no failover (the
//!   endpoint may be generating).
//! - A request body over the route's limit: `413`.
//! - Every upstream failed: `502`, naming no upstream.
//!
//! The response body's own events (chunk, idle timeout, end, client gone) are
//! [`crate::stream::Guarded`]'s and [`crate::meter::Meter`]'s.

use crate::error::Error;
use crate::forward::{FailureMemory, ForwardPlan};
use crate::meter::Meter;

/// What the adapter does next.
#[derive(Debug)]
pub enum Step {
    /// Send the request to `plan.upstreams[i]`.
    Try(usize),
    /// `plan.upstreams[i]` answered: pass its response on.
    Respond(usize),
    /// Answer the client with this error (the sample's status is set).
    Refuse(Error),
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers arrived.
    Answered,
    /// The attempt failed. `may_have_arrived` is false only when nothing of the request can
    /// have reached the endpoint (connection refused or unreachable; a body not one byte of
    /// which was read).
    Failed {
        /// The request may have reached the endpoint.
        may_have_arrived: bool,
    },
    /// No response headers within the plan's response timeout.
    TimedOut,
    /// The request body went over the route's limit while it was sent.
    BodyTooLarge,
}

/// One request's way through its plan's upstreams.
#[derive(Debug)]
pub struct Forwarding {
    route: String,
    endpoints: Vec<String>,
    max_body_bytes: u64,
    idempotent: bool,
    /// The upstream being tried.
    current: Option<usize>,
    meter: Meter,
}

impl Forwarding {
    /// The machine for `plan`, a request of `method`, metered by `meter`.
    pub fn new(plan: &ForwardPlan, method: &http::Method, meter: Meter) -> Self {
        Forwarding {
            route: plan.route.clone(),
            endpoints: plan.upstreams.iter().map(|u| u.endpoint_id.clone()).collect(),
            max_body_bytes: plan.max_body_bytes,
            idempotent: matches!(*method, http::Method::GET | http::Method::HEAD | http::Method::OPTIONS),
            current: None,
            meter,
        }
    }

    /// The first step.
    pub fn start(&mut self) -> Step {
        self.next_upstream(0)
    }

    /// The step after the current attempt ended with `outcome`; `failures` (the isolate's or
    /// instance's memory of endpoints that failed) is updated, at `now` (unix seconds).
    pub fn on(&mut self, outcome: Outcome, failures: &mut FailureMemory, now: u64) -> Step {
        let Some(i) = self.current else {
            // An outcome without an attempt: the adapter's mistake; never forward blindly.
            return self.refuse(Error::BadGateway);
        };
        let endpoint = &self.endpoints[i];
        match outcome {
            Outcome::Answered => {
                failures.mark_ok(&self.route, endpoint);
                Step::Respond(i)
            }
            Outcome::TimedOut => self.refuse(Error::GatewayTimeout),
            Outcome::BodyTooLarge => self.refuse(Error::PayloadTooLarge { limit: self.max_body_bytes }),
            Outcome::Failed { may_have_arrived } => {
                failures.mark_failed(&self.route, endpoint, now);
                self.meter.failed(endpoint);
                if may_have_arrived && !self.idempotent {
                    return self.refuse(Error::BadGateway);
                }
                self.next_upstream(i + 1)
            }
        }
    }

    /// The request's meter (to note what was sent, the answer, the response's chunks).
    pub fn meter_mut(&mut self) -> &mut Meter {
        &mut self.meter
    }

    /// The meter, once the machine is done.
    pub fn into_meter(self) -> Meter {
        self.meter
    }

    fn next_upstream(&mut self, from: usize) -> Step {
        if from < self.endpoints.len() {
            self.current = Some(from);
            Step::Try(from)
        } else {
            self.refuse(Error::BadGateway)
        }
    }

    fn refuse(&mut self, e: Error) -> Step {
        self.current = None;
        self.meter.refused(e.status().as_u16());
        Step::Refuse(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Upstream;
    use proptest::prelude::*;

    fn plan(n: usize) -> ForwardPlan {
        let mut p = crate::forward::tests_support::plan();
        p.upstreams = (0..n).map(|i| Upstream { endpoint_id: format!("ep{i}"), url: format!("http://10.0.0.{i}/v1"), base: format!("http://10.0.0.{i}"), via: None }).collect();
        p
    }

    fn machine(n: usize, method: http::Method) -> (ForwardPlan, Forwarding) {
        let p = plan(n);
        let m = Meter::new(&p, 100);
        let f = Forwarding::new(&p, &method, m);
        (p, f)
    }

    #[test]
    fn a_connect_failure_fails_over_and_is_remembered() {
        let (_, mut f) = machine(3, http::Method::POST);
        let mut mem = FailureMemory::default();
        assert!(matches!(f.start(), Step::Try(0)));
        assert!(matches!(f.on(Outcome::Failed { may_have_arrived: false }, &mut mem, 100), Step::Try(1)));
        assert!(mem.is_avoided("llama", "ep0", 100));
        assert!(matches!(f.on(Outcome::Answered, &mut mem, 100), Step::Respond(1)));
        let s = f.into_meter().finish(1.0);
        assert_eq!(s.failed_endpoints, vec!["ep0".to_string()]);
    }

    #[test]
    fn a_post_that_may_have_arrived_is_never_sent_twice() {
        let (_, mut f) = machine(3, http::Method::POST);
        let mut mem = FailureMemory::default();
        f.start();
        match f.on(Outcome::Failed { may_have_arrived: true }, &mut mem, 100) {
            Step::Refuse(Error::BadGateway) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(f.into_meter().finish(1.0).status, 502);
    }

    #[test]
    fn an_idempotent_request_fails_over_even_after_it_may_have_arrived() {
        let (_, mut f) = machine(2, http::Method::GET);
        let mut mem = FailureMemory::default();
        f.start();
        assert!(matches!(f.on(Outcome::Failed { may_have_arrived: true }, &mut mem, 100), Step::Try(1)));
    }

    #[test]
    fn a_timeout_is_a_504_without_failover_and_a_large_body_a_413() {
        let (_, mut f) = machine(3, http::Method::POST);
        let mut mem = FailureMemory::default();
        f.start();
        assert!(matches!(f.on(Outcome::TimedOut, &mut mem, 100), Step::Refuse(Error::GatewayTimeout)));
        assert!(!mem.is_avoided("llama", "ep0", 100));
        let (_, mut f) = machine(3, http::Method::POST);
        f.start();
        assert!(matches!(f.on(Outcome::BodyTooLarge, &mut mem, 100), Step::Refuse(Error::PayloadTooLarge { .. })));
    }

    #[test]
    fn no_upstream_or_all_failed_is_a_502() {
        let (_, mut f) = machine(0, http::Method::POST);
        assert!(matches!(f.start(), Step::Refuse(Error::BadGateway)));
        let (_, mut f) = machine(2, http::Method::POST);
        let mut mem = FailureMemory::default();
        f.start();
        f.on(Outcome::Failed { may_have_arrived: false }, &mut mem, 100);
        assert!(matches!(f.on(Outcome::Failed { may_have_arrived: false }, &mut mem, 100), Step::Refuse(Error::BadGateway)));
        // An outcome after the end is refused, never forwarded.
        assert!(matches!(f.on(Outcome::Answered, &mut mem, 100), Step::Refuse(Error::BadGateway)));
    }

    proptest! {
        /// Whatever the attempts' outcomes: upstreams are tried in order, each at most once;
        /// a non-idempotent request is sent again only after attempts that cannot have
        /// reached their endpoint; the machine always ends (respond or refuse) within
        /// `upstreams + 1` steps.
        #[test]
        fn the_machine_tries_in_order_at_most_once_and_never_resends_what_may_have_arrived(
            n in 0usize..5,
            outcomes in proptest::collection::vec(0u8..5, 0..8),
            get in any::<bool>(),
        ) {
            let method = if get { http::Method::GET } else { http::Method::POST };
            let (_, mut f) = machine(n, method);
            let mut mem = FailureMemory::default();
            let mut step = f.start();
            let mut tried = Vec::new();
            let mut arrived_before = false;
            let mut outcomes = outcomes.into_iter();
            let mut steps = 0;
            loop {
                steps += 1;
                prop_assert!(steps <= n + 2);
                match step {
                    Step::Try(i) => {
                        prop_assert_eq!(i, tried.len());
                        prop_assert!(get || !arrived_before, "a POST sent again after it may have arrived");
                        tried.push(i);
                        let o = match outcomes.next().unwrap_or(0) {
                            0 => Outcome::Answered,
                            1 => Outcome::Failed { may_have_arrived: false },
                            2 => Outcome::Failed { may_have_arrived: true },
                            3 => Outcome::TimedOut,
                            _ => Outcome::BodyTooLarge,
                        };
                        arrived_before |= o == (Outcome::Failed { may_have_arrived: true });
                        step = f.on(o, &mut mem, 100);
                    }
                    Step::Respond(i) => {
                        prop_assert_eq!(Some(&i), tried.last());
                        break;
                    }
                    Step::Refuse(_) => break,
                }
            }
        }
    }
}
