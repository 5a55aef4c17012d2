//! `endpoints register` without `--once`: what a model server runs beside
//! `vllm serve`. Registers the lease, renews it every third of its length,
//! retries failures with backoff, and when asked to stop (SIGINT, SIGTERM)
//! deregisters and returns. Messages go to the log; never the token.

use crate::api::Failure;
use crate::api::HttpCall;
use crate::duration::format_unix;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often to renew and how to back off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between two successful renewals.
    pub renew_every: Duration,
    /// The first wait after a failure; it doubles up to `max_retry`.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry: Duration,
    /// How often a wait looks at the stop flag.
    pub tick: Duration,
}

impl Timing {
    /// Renew every third of the lease, so two renewals may fail before it ends.
    pub fn for_lease(lease_seconds: u64) -> Timing {
        let renew_every = Duration::from_secs((lease_seconds / 3).max(1));
        Timing { renew_every, first_retry: Duration::from_secs(1), max_retry: renew_every, tick: Duration::from_millis(100) }
    }
}

/// How many times deregistration is tried when stopping.
const DEREGISTER_ATTEMPTS: u32 = 3;

/// A mistake a retry cannot fix (a 4xx other than 408 and 429): registration gives up on it.
fn is_permanent(f: &Failure) -> bool {
    matches!(f, Failure::Status { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
}

/// Waits until `until`; true when `stop` was set meanwhile.
fn wait(until: Instant, stop: &AtomicBool, tick: Duration) -> bool {
    loop {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep(tick.min(until - now));
    }
}

fn lease_end(reply: &Value) -> String {
    reply.get("lease_expires_at").and_then(Value::as_u64).map(|t| format!(", lease ends {}", format_unix(t))).unwrap_or_default()
}

/// Registers with `register`, renews with it until `stop` is set, then sends `deregister`.
/// `Err` when registration was refused (a 4xx) or deregistration failed every attempt.
pub fn run(
    register: &HttpCall,
    deregister: &HttpCall,
    timing: Timing,
    stop: &AtomicBool,
    send: &mut dyn FnMut(&HttpCall) -> Result<Value, Failure>,
    log: &mut dyn FnMut(String),
) -> Result<(), String> {
    // Register: a refusal ends the run (nothing to renew); anything else may pass, so retry.
    let mut retry = timing.first_retry;
    loop {
        if stop.load(Ordering::SeqCst) {
            log("stopped before the endpoint was registered".into());
            return Ok(());
        }
        match send(register) {
            Ok(reply) => {
                log(format!("registered {}{}; renewing every {} s", register.path, lease_end(&reply), timing.renew_every.as_secs_f32()));
                break;
            }
            Err(f) if is_permanent(&f) => return Err(format!("could not register: {f}")),
            Err(f) => {
                log(format!("registering failed, retrying in {} s: {f}", retry.as_secs_f32()));
                if wait(Instant::now() + retry, stop, timing.tick) {
                    log("stopped before the endpoint was registered".into());
                    return Ok(());
                }
                retry = (retry * 2).min(timing.max_retry);
            }
        }
    }
    // Renew until stopped. Every failure is retried: the gateway may come back, an admin may
    // widen the token's scope, and a rotated --token-file is read on the next attempt.
    let (mut next, mut retry, mut failures) = (Instant::now() + timing.renew_every, timing.first_retry, 0u32);
    while !wait(next, stop, timing.tick) {
        match send(register) {
            Ok(reply) => {
                if failures > 0 {
                    log(format!("renewed after {failures} failed attempt(s){}", lease_end(&reply)));
                }
                (next, retry, failures) = (Instant::now() + timing.renew_every, timing.first_retry, 0);
            }
            Err(f) => {
                failures += 1;
                log(format!("renewing failed (attempt {failures}), retrying in {} s: {f}", retry.as_secs_f32()));
                next = Instant::now() + retry;
                retry = (retry * 2).min(timing.max_retry);
            }
        }
    }
    // Stopped: leave the route now rather than when the lease ends.
    for attempt in 1..=DEREGISTER_ATTEMPTS {
        match send(deregister) {
            Ok(_) => {
                log(format!("deregistered {}", deregister.path));
                return Ok(());
            }
            Err(Failure::Status { status: 404, .. }) => {
                log(format!("{} was already gone", deregister.path));
                return Ok(());
            }
            Err(f) if attempt < DEREGISTER_ATTEMPTS => {
                log(format!("deregistering failed, retrying: {f}"));
                std::thread::sleep(timing.first_retry);
            }
            Err(f) => return Err(format!("could not deregister (the lease still ends by itself): {f}")),
        }
    }
    Ok(())
}

/// Set by SIGINT or SIGTERM once [`stop_on_signals`] has run.
static STOP: AtomicBool = AtomicBool::new(false);

/// Installs handlers that set a flag on SIGINT and SIGTERM, and returns the flag.
#[cfg(unix)]
pub fn stop_on_signals() -> Result<&'static AtomicBool, String> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { signal_hook_registry::register(signal, || STOP.store(true, Ordering::SeqCst)) }
            .map_err(|e| format!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(&STOP)
}

/// Elsewhere the default handlers stay: Ctrl-C ends the process and the lease ends by itself.
#[cfg(not(unix))]
pub fn stop_on_signals() -> Result<&'static AtomicBool, String> {
    Ok(&STOP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    fn call(method: &'static str) -> HttpCall {
        HttpCall { method, path: "/_gateway/routes/llama/endpoints/gpu-1".into(), body: (method == "PUT").then(|| json!({"url": "http://10.0.1.7:8000", "lease_seconds": 60})) }
    }

    fn fast() -> Timing {
        Timing { renew_every: Duration::from_millis(30), first_retry: Duration::from_millis(5), max_retry: Duration::from_millis(20), tick: Duration::from_millis(1) }
    }

    fn status(status: u16) -> Failure {
        Failure::Status { status, message: "no".into(), param: None }
    }

    /// Runs against scripted answers (`None`: 200); stops after `stop_after` calls.
    fn scripted(answers: &[Option<Failure>], stop_after: usize) -> (Result<(), String>, Vec<&'static str>, Vec<String>) {
        let stop = AtomicBool::new(false);
        let seen = RefCell::new(Vec::new());
        let mut logs = Vec::new();
        let mut answers = answers.iter();
        let mut send = |c: &HttpCall| {
            seen.borrow_mut().push(c.method);
            if seen.borrow().len() >= stop_after {
                stop.store(true, Ordering::SeqCst);
            }
            match answers.next() {
                Some(Some(Failure::Status { status: s, .. })) => Err(status(*s)),
                Some(Some(Failure::Other(m))) => Err(Failure::Other(m.clone())),
                _ => Ok(json!({"lease_expires_at": 1_800_000_060u64})),
            }
        };
        let r = run(&call("PUT"), &call("DELETE"), fast(), &stop, &mut send, &mut |m| logs.push(m));
        (r, seen.into_inner(), logs)
    }

    #[test]
    fn registers_renews_then_deregisters_when_stopped() {
        let (r, seen, logs) = scripted(&[], 3);
        assert_eq!(r, Ok(()));
        assert_eq!(seen, ["PUT", "PUT", "PUT", "DELETE"]);
        assert!(logs[0].starts_with("registered /_gateway/routes/llama/endpoints/gpu-1, lease ends 2027-"), "{logs:?}");
        assert!(logs.last().unwrap().starts_with("deregistered"));
    }

    #[test]
    fn failed_renewals_are_retried_and_logged() {
        let (r, seen, logs) = scripted(&[None, Some(status(503)), Some(Failure::Other("cannot reach the gateway".into())), Some(status(403)), None], 5);
        assert_eq!(r, Ok(()));
        assert_eq!(seen, ["PUT", "PUT", "PUT", "PUT", "PUT", "DELETE"]);
        assert!(logs.iter().any(|l| l.contains("renewing failed (attempt 3)") && l.contains("403")), "{logs:?}");
        assert!(logs.iter().any(|l| l.starts_with("renewed after 3 failed attempt(s)")), "{logs:?}");
    }

    #[test]
    fn a_refused_registration_ends_the_run_and_a_busy_gateway_is_retried() {
        let (r, seen, _) = scripted(&[Some(status(403))], 99);
        assert!(r.unwrap_err().starts_with("could not register: the gateway answered 403"));
        assert_eq!(seen, ["PUT"], "nothing to deregister");
        let (r, seen, logs) = scripted(&[Some(status(503)), Some(status(429)), None], 4);
        assert_eq!((r, seen), (Ok(()), vec!["PUT", "PUT", "PUT", "PUT", "DELETE"]));
        assert!(logs[0].starts_with("registering failed, retrying in 0.005 s"), "{logs:?}");
    }

    #[test]
    fn deregistering_is_retried_and_a_gone_lease_is_fine() {
        let (r, seen, _) = scripted(&[None, None, Some(status(404))], 2);
        assert_eq!((r, seen), (Ok(()), vec!["PUT", "PUT", "DELETE"]));
        let (r, seen, _) = scripted(&[None, None, Some(status(502)), Some(status(502)), Some(status(502))], 2);
        assert!(r.unwrap_err().contains("could not deregister"));
        assert_eq!(seen, ["PUT", "PUT", "DELETE", "DELETE", "DELETE"]);
    }

    #[test]
    fn a_stop_before_registering_sends_nothing_more() {
        let (r, seen, logs) = scripted(&[Some(status(503))], 1);
        assert_eq!((r, seen), (Ok(()), vec!["PUT"]));
        assert_eq!(logs.last().map(String::as_str), Some("stopped before the endpoint was registered"));
    }

    #[test]
    fn renewals_come_every_third_of_the_lease() {
        let t = Timing::for_lease(60);
        assert_eq!((t.renew_every, t.max_retry), (Duration::from_secs(20), Duration::from_secs(20)));
        assert_eq!(Timing::for_lease(5).renew_every, Duration::from_secs(1));
    }
}
