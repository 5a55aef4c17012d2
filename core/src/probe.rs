//! Health probes: which endpoints to probe, and what a round of probes
//! changes. A scheduled job (a Worker Cron Trigger; an EventBridge schedule
//! on Lambda) and `POST /_gateway/probes` both call [`run`]; the adapter's
//! [`Fetcher`] makes the HTTP calls ([`probe`], [`read_metrics`]).
//!
//! Each endpoint's [`Health`] takes one observation per round. A route's set
//! of down endpoints is written only when it changes, and the data plane
//! reads it (cached, like routes) to keep traffic away from them
//! ([`crate::metrics::exclude_down`]).

use crate::error::Result;
use crate::fetch::{Fetcher, Get};
use crate::forward::upstream_url;
use crate::load::{parse_vllm_metrics, EndpointLoad, Loads, MAX_METRICS_BYTES, METRICS_PATH};
use crate::health::{probe_ok, Health, HealthState, PROBE_PATH};
use crate::route::{Endpoint, Route};
use crate::store::Store;
use futures_util::future::join_all;
use serde::Serialize;
use std::collections::BTreeMap;

/// How long a probe waits for an answer.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// One endpoint to probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeTarget {
    /// Route key.
    pub route: String,
    /// Endpoint id.
    pub endpoint: String,
    /// `{endpoint url}/health`.
    pub url: String,
    /// At the edge, the Workers VPC binding to fetch through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Deadline for the answer, ms.
    pub timeout_ms: u64,
}

impl ProbeTarget {
    /// The GET of this target, its body read up to `max_bytes` (0: the status only).
    pub fn get(&self, max_bytes: usize) -> Get<'_> {
        Get { url: &self.url, via: self.via.as_deref(), timeout_ms: self.timeout_ms, max_bytes }
    }
}

/// One health probe (`GET {endpoint}/health`): the status, if it answered in time.
pub async fn probe(web: &impl Fetcher, target: &ProbeTarget) -> Option<u16> {
    web.get(&target.get(0)).await.ok().map(|a| a.status)
}

/// One `/metrics` read: the body of a 2xx answer, at most [`MAX_METRICS_BYTES`] of UTF-8,
/// all within the target's timeout; otherwise `None`.
pub async fn read_metrics(web: &impl Fetcher, target: &ProbeTarget) -> Option<String> {
    let answer = web.get(&target.get(MAX_METRICS_BYTES)).await.ok()?;
    (200..300).contains(&answer.status).then(|| String::from_utf8(answer.body).ok()).flatten()
}

/// The endpoints of `route` (its own and its live `leases`) to probe.
pub fn targets(route: &Route, leases: &[Endpoint], now: u64) -> Vec<ProbeTarget> {
    targets_at(route, leases, now, PROBE_PATH)
}

/// The endpoints of `route` to probe, at `path` (`health`, or vLLM's `metrics`).
fn targets_at(route: &Route, leases: &[Endpoint], now: u64, path: &str) -> Vec<ProbeTarget> {
    let mut seen = std::collections::BTreeSet::new();
    route
        .endpoints
        .iter()
        .chain(leases.iter().filter(|e| e.is_live(now)))
        .filter(|e| seen.insert(e.id.clone()))
        .map(|e| ProbeTarget {
            route: route.name.clone(),
            endpoint: e.id.clone(),
            url: upstream_url(&e.url, path, None),
            via: e.via.clone(),
            timeout_ms: PROBE_TIMEOUT_MS.min(route.timeouts.response_ms),
        })
        .collect()
}

/// The active static routes' names, and every endpoint of theirs to probe at `path`.
/// Ephemeral routes (one endpoint, minutes to days of life) are not probed.
async fn every_target<S: Store>(store: &S, now: u64, path: &str) -> Result<(Vec<String>, Vec<ProbeTarget>)> {
    let (mut routes, mut all) = (Vec::new(), Vec::new());
    for route in store.list_routes().await?.into_iter().filter(|r| r.is_active(now) && r.expires_at.is_none()) {
        let leases = store.leases(&route.name).await?;
        all.extend(targets_at(&route, &leases, now, path));
        routes.push(route.name);
    }
    Ok((routes, all))
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeOutcome {
    /// Route key.
    pub route: String,
    /// Endpoint id.
    pub endpoint: String,
    /// The status `/health` answered, if it answered in time.
    pub status: Option<u16>,
    /// The endpoint's state after this probe.
    pub health: HealthState,
    /// True when this probe changed the state.
    pub changed: bool,
}

/// The result of one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// Unix seconds.
    pub at: u64,
    /// One per endpoint probed.
    pub probes: Vec<ProbeOutcome>,
}

/// Probes every endpoint of every active static route once, concurrently,
/// records each result in the endpoint's [`Health`] and rewrites the down
/// sets that changed. Ephemeral routes (one endpoint, minutes to days of
/// life) are not probed.
pub async fn run<S: Store>(store: &S, now: u64) -> Result<ProbeReport> {
    // Terraform's route changes are audited within a round even when no admin calls.
    let _ = crate::managed::sync(store, now, None).await;
    let (_, all) = every_target(store, now, PROBE_PATH).await?;
    let statuses = join_all(all.iter().map(|t| probe(store, t))).await;
    let mut health: BTreeMap<(String, String), Health> = store.health().await?.into_iter().map(|(r, e, h)| ((r, e), h)).collect();
    let mut down: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut probes = Vec::with_capacity(all.len());
    for (t, status) in all.iter().zip(statuses) {
        let h = health.entry((t.route.clone(), t.endpoint.clone())).or_default();
        let changed = h.observe(now, probe_ok(status)).is_some();
        store.put_health(&t.route, &t.endpoint, h).await?;
        let ids = down.entry(t.route.clone()).or_default();
        if h.is_down(now) {
            ids.push(t.endpoint.clone());
        }
        probes.push(ProbeOutcome { route: t.route.clone(), endpoint: t.endpoint.clone(), status, health: h.state(now), changed });
    }
    for (route, ids) in down {
        let mut before = store.down_endpoints(&route).await?;
        before.sort();
        if before != ids {
            store.put_down(&route, &ids).await?;
        }
    }
    Ok(ProbeReport { at: now, probes })
}

/// How often the load readings are refreshed: a Durable Object alarm at the edge, a loop
/// in the prober invocation on AWS. Readings count for [`crate::load::LOAD_STALE_SECS`].
pub const LOAD_INTERVAL_SECS: u64 = 10;

/// What one round of load readings found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Unix seconds.
    pub at: u64,
    /// Endpoints asked.
    pub asked: usize,
    /// The readings taken, by route key then endpoint id (endpoints that did not answer
    /// `/metrics`, or are not vLLM, have none: only this instance's own count steers them).
    pub loads: BTreeMap<String, Loads>,
}

/// Reads vLLM's `/metrics` of every endpoint of every active static route, concurrently,
/// and writes each route's readings (one write per route). A reading that did not come is
/// left out, so a route's stale readings are replaced, never kept.
pub async fn load_round<S: Store>(store: &S, now: u64) -> Result<LoadReport> {
    let (routes, all) = every_target(store, now, METRICS_PATH).await?;
    let texts = join_all(all.iter().map(|t| read_metrics(store, t))).await;
    let mut loads: BTreeMap<String, Loads> = routes.into_iter().map(|r| (r, Loads::new())).collect();
    for (t, text) in all.iter().zip(texts) {
        let Some(text) = text else { continue };
        let reading = EndpointLoad { at: now, ..parse_vllm_metrics(&text) };
        // A 2xx `/metrics` with none of vLLM's series is not a vLLM: no reading.
        if reading.running.is_some() || reading.waiting.is_some() || reading.kv_cache_usage.is_some() {
            loads.entry(t.route.clone()).or_default().insert(t.endpoint.clone(), reading);
        }
    }
    for (route, l) in &loads {
        store.put_loads(route, l).await?;
    }
    Ok(LoadReport { at: now, asked: all.len(), loads })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AdminStore, MemoryStore, MetricsSink, RouteSource};
    use futures_executor::block_on;

    fn route_with(urls: &[(&str, &str)]) -> Route {
        Route::new("llama", urls.iter().map(|(id, url)| Endpoint::new(*id, *url)).collect())
    }

    #[test]
    fn targets_are_each_endpoint_once_with_the_health_path() {
        let r = route_with(&[("a", "http://10.0.0.1:8000"), ("b", "http://10.0.0.2:8000/prefix")]);
        let mut lease = Endpoint::new("c", "http://10.0.0.3:8000");
        lease.lease_expires_at = Some(2_000);
        let mut dead = Endpoint::new("d", "http://10.0.0.4:8000");
        dead.lease_expires_at = Some(500);
        let shadow = Endpoint::new("a", "http://10.9.9.9:8000");
        let t = targets(&r, &[lease, dead, shadow], 1_000);
        let urls: Vec<(&str, &str)> = t.iter().map(|t| (t.endpoint.as_str(), t.url.as_str())).collect();
        assert_eq!(
            urls,
            vec![("a", "http://10.0.0.1:8000/health"), ("b", "http://10.0.0.2:8000/prefix/health"), ("c", "http://10.0.0.3:8000/health")]
        );
        assert!(t.iter().all(|t| t.timeout_ms == PROBE_TIMEOUT_MS && t.route == "llama"));
    }

    #[test]
    fn two_failed_rounds_mark_down_and_one_success_brings_it_back() {
        let store = MemoryStore::default();
        block_on(store.put_route(&route_with(&[("a", "http://a:1"), ("b", "http://b:1")]), None)).unwrap();
        store.set_probe_status("http://a:1/health", Some(200));
        store.set_probe_status("http://b:1/health", Some(503));

        let first = block_on(run(&store, 1_000)).unwrap();
        assert_eq!(first.probes.len(), 2);
        assert_eq!(first.probes[0].health, HealthState::Up);
        assert_eq!(first.probes[1].health, HealthState::Unknown, "one failure decides nothing");
        assert!(block_on(store.down_endpoints("llama")).unwrap().is_empty());

        let second = block_on(run(&store, 1_060)).unwrap();
        assert_eq!(second.probes[1].health, HealthState::Down);
        assert!(second.probes[1].changed);
        assert_eq!(block_on(store.down_endpoints("llama")).unwrap(), vec!["b".to_string()]);

        store.set_probe_status("http://b:1/health", None);
        block_on(run(&store, 1_120)).unwrap();
        assert_eq!(block_on(store.down_endpoints("llama")).unwrap(), vec!["b".to_string()], "no answer is a failure");

        store.set_probe_status("http://b:1/health", Some(200));
        let back = block_on(run(&store, 1_180)).unwrap();
        assert_eq!(back.probes[1].health, HealthState::Up);
        assert!(back.probes[1].changed);
        assert!(block_on(store.down_endpoints("llama")).unwrap().is_empty());

        let h = block_on(store.health()).unwrap();
        let b = &h.iter().find(|(_, e, _)| e == "b").unwrap().2;
        // Down from 1060 to 1180 out of a known window starting at the first decision (1000 for a, 1060 for b).
        assert_eq!(b.transitions().len(), 2);
    }

    #[test]
    fn ephemeral_and_disabled_routes_are_not_probed() {
        let store = MemoryStore::default();
        let mut off = route_with(&[("a", "http://a:1")]);
        off.name = "off".into();
        off.enabled = false;
        block_on(store.put_route(&off, None)).unwrap();
        assert!(block_on(run(&store, 1_000)).unwrap().probes.is_empty());
    }

    #[test]
    fn a_load_round_reads_each_endpoints_metrics_and_replaces_the_routes_readings() {
        let store = MemoryStore::default();
        block_on(store.put_route(&route_with(&[("a", "http://a:1"), ("b", "http://b:1"), ("c", "http://c:1")]), None)).unwrap();
        store.set_metrics(
            "http://a:1/metrics",
            Some("vllm:num_requests_running{engine=\"0\"} 3\nvllm:num_requests_running{engine=\"1\"} 1\nvllm:num_requests_waiting 7\nvllm:kv_cache_usage_perc 0.25\n"),
        );
        store.set_metrics("http://b:1/metrics", Some("# not vLLM\nprocess_cpu_seconds_total 3\n"));
        let report = block_on(load_round(&store, 1_000)).unwrap();
        assert_eq!(report.asked, 3);
        let l = block_on(store.loads("llama")).unwrap();
        assert_eq!(l.keys().collect::<Vec<_>>(), ["a"], "b is not a vLLM, c did not answer");
        assert_eq!((l["a"].at, l["a"].running, l["a"].waiting, l["a"].kv_cache_usage), (1_000, Some(4.0), Some(7.0), Some(0.25)));
        assert_eq!(crate::load::estimate(l.get("a"), 2, 1_005), 9.0, "two in flight here, seven queued");
        // The next round replaces the readings: a stopped answering.
        store.set_metrics("http://a:1/metrics", None);
        block_on(load_round(&store, 1_010)).unwrap();
        assert!(block_on(store.loads("llama")).unwrap().is_empty());
    }
}
