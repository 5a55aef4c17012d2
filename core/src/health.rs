//! Endpoint health and uptime: probe results, the up/down state machine and its
//! transitions, and which endpoints the data plane avoids.

use crate::metrics::{decode_part, key_part, RETENTION_SECS};
use crate::route::Endpoint;
use serde::{Deserialize, Serialize};

/// Consecutive failed probes after which an endpoint is down. One successful
/// probe makes it up again: a single lost probe never takes an endpoint out,
/// and a recovered one is back at once.
pub const DOWN_AFTER_FAILURES: u32 = 2;

/// With no probe for this long, an endpoint's state is unknown again (the prober stopped).
pub const HEALTH_STALE_SECS: u64 = 600;

/// Most state changes kept per endpoint; the oldest go first.
pub const MAX_TRANSITIONS: usize = 4096;

/// The path an adapter probes on an endpoint (vLLM's liveness endpoint).
pub const PROBE_PATH: &str = "health";

/// True when a probe's outcome counts as healthy: a 2xx answer in time (`None`: no answer).
pub fn probe_ok(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// Where an endpoint's [`Health`] is kept: `health:{route}:{endpoint}`
/// (outside the counter keys; [`SnapshotBuilder::counter`] ignores it).
pub fn health_key(route: &str, endpoint: &str) -> String {
    format!("health:{}:{}", key_part(route), key_part(endpoint))
}

/// The route and endpoint of a [`health_key`]; `None` for any other key.
pub fn parse_health_key(key: &str) -> Option<(String, String)> {
    match key.split(':').collect::<Vec<_>>().as_slice() {
        ["health", r, e] => Some((decode_part(r)?, decode_part(e)?)),
        _ => None,
    }
}

/// One health probe of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Route key.
    pub route: String,
    /// Endpoint id.
    pub endpoint: String,
    /// When the probe was made, unix seconds.
    pub at: u64,
    /// Whether it succeeded ([`probe_ok`]).
    pub ok: bool,
}

/// An endpoint's state as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// The last decisive probe succeeded.
    Up,
    /// The last [`DOWN_AFTER_FAILURES`] probes failed.
    Down,
    /// Not probed yet, not decided yet, or not probed for [`HEALTH_STALE_SECS`].
    #[default]
    Unknown,
}

/// A change of an endpoint's state, at the probe that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Unix seconds.
    pub at: u64,
    /// The new state: up (`true`) or down.
    pub up: bool,
}

/// What is kept about one endpoint's health (the adapter stores it as JSON
/// under e.g. `health:{route}:{endpoint}` and updates it one probe at a time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Failed probes since the last success.
    #[serde(default)]
    failures: u32,
    /// Time of the latest probe applied.
    #[serde(default)]
    last_probe_at: Option<u64>,
    /// State changes, oldest first.
    #[serde(default)]
    transitions: Vec<Transition>,
}

impl Health {
    /// Applies a probe made at `at`; returns the state change it caused, if
    /// any. Probes older than the latest one applied are ignored, so the
    /// transitions stay in order. The downtime starts at the probe that
    /// decided it (the second failure): downtime is undercounted by at most
    /// one probe interval. Transitions older than [`RETENTION_SECS`] are
    /// dropped, except the last one before that, which gives the state at
    /// the start of the window.
    pub fn observe(&mut self, at: u64, ok: bool) -> Option<Transition> {
        if self.last_probe_at.is_some_and(|last| at < last) {
            return None;
        }
        self.last_probe_at = Some(at);
        let current = self.transitions.last().map(|t| t.up);
        let change = if ok {
            self.failures = 0;
            (current != Some(true)).then_some(Transition { at, up: true })
        } else {
            self.failures = self.failures.saturating_add(1);
            (self.failures >= DOWN_AFTER_FAILURES && current != Some(false)).then_some(Transition { at, up: false })
        };
        if let Some(t) = change {
            self.transitions.push(t);
        }
        self.prune(at.saturating_sub(RETENTION_SECS));
        change
    }

    /// Drops transitions before `cutoff` but the last of them, and the oldest past [`MAX_TRANSITIONS`].
    fn prune(&mut self, cutoff: u64) {
        let old = self.transitions.iter().take_while(|t| t.at < cutoff).count();
        if old > 1 {
            self.transitions.drain(..old - 1);
        }
        if self.transitions.len() > MAX_TRANSITIONS {
            let extra = self.transitions.len() - MAX_TRANSITIONS;
            self.transitions.drain(..extra);
        }
    }

    /// The state changes kept, oldest first.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// When the latest probe was made.
    pub fn last_probe_at(&self) -> Option<u64> {
        self.last_probe_at
    }

    /// The state at `now`: unknown before the first decision and once probes
    /// have stopped for [`HEALTH_STALE_SECS`].
    pub fn state(&self, now: u64) -> HealthState {
        match (self.last_probe_at, self.transitions.last()) {
            (Some(last), Some(t)) if now <= last.saturating_add(HEALTH_STALE_SECS) => {
                if t.up {
                    HealthState::Up
                } else {
                    HealthState::Down
                }
            }
            _ => HealthState::Unknown,
        }
    }

    /// True when the endpoint is down at `now` (unknown is not down).
    pub fn is_down(&self, now: u64) -> bool {
        self.state(now) == HealthState::Down
    }

    /// The fraction of `[from, to)` the endpoint was up, over the time its
    /// state was known ([`uptime`]); time after probes stopped for
    /// [`HEALTH_STALE_SECS`] is unknown. A gap in probing between two
    /// probes counts as the state before it.
    pub fn uptime(&self, from: u64, to: u64) -> Option<f64> {
        let known_until = self.last_probe_at?.saturating_add(HEALTH_STALE_SECS);
        uptime(&self.transitions, from, to.min(known_until))
    }
}

/// The fraction of `[from, to)` spent up, given state changes oldest first.
/// Time before the first transition is unknown and left out of the
/// denominator; each state lasts until the next transition (the last until
/// `to`). `None` when no part of the window has a known state.
pub fn uptime(transitions: &[Transition], from: u64, to: u64) -> Option<f64> {
    let (mut up, mut known) = (0u64, 0u64);
    for (i, t) in transitions.iter().enumerate() {
        let end = transitions.get(i + 1).map_or(to, |next| next.at);
        let (a, b) = (t.at.max(from), end.min(to));
        if b > a {
            known += b - a;
            if t.up {
                up += b - a;
            }
        }
    }
    (known > 0).then(|| up as f64 / known as f64)
}

/// The live endpoints minus those `is_down` says are down, for
/// [`crate::balance::Balancer::rank`]. When every live endpoint is down they
/// are all kept: probes can be wrong or late, and trying a "down" endpoint
/// (then answering 502 if it fails) beats a certain 503. Removing an endpoint
/// from the set moves only the sessions pinned to it.
pub fn exclude_down(endpoints: &[Endpoint], now: u64, is_down: impl Fn(&str) -> bool) -> Vec<Endpoint> {
    let live: Vec<&Endpoint> = endpoints.iter().filter(|e| e.is_live(now)).collect();
    let healthy: Vec<Endpoint> = live.iter().filter(|e| !is_down(&e.id)).map(|e| (*e).clone()).collect();
    if healthy.is_empty() {
        live.into_iter().cloned().collect()
    } else {
        healthy
    }
}
