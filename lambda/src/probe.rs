//! The scheduled health prober (`GATEWAY_MODE=probe`): an EventBridge schedule invokes the
//! function, and each invocation runs one round of core's probes ([`gateway_core::probe::run`])
//! over the table: every endpoint's health is updated and the down sets the data plane avoids
//! are rewritten when they change.

use crate::store::DynamoStore;
use gateway_core::health::HealthState;
use gateway_core::probe::{load_round, ProbeReport, LOAD_INTERVAL_SECS, PROBE_TIMEOUT_MS};
use gateway_core::Result;

/// One round at `now`: logs a line per state change and a summary, and returns the report.
pub async fn round(store: &DynamoStore, now: u64) -> Result<ProbeReport> {
    let report = gateway_core::probe::run(store, now).await?;
    // Token records past keeping (DynamoDB's TTL takes expired ones; revoked ones go here).
    match gateway_core::admin::prune_tokens(store, now).await {
        Ok(n) if n > 0 => tracing::info!(removed = n, "token records pruned"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "token records not pruned"),
    }
    for p in report.probes.iter().filter(|p| p.changed) {
        tracing::info!(route = p.route.as_str(), endpoint = p.endpoint.as_str(), status = p.status, health = state(p.health), "endpoint health changed");
    }
    let count = |s: HealthState| report.probes.iter().filter(|p| p.health == s).count();
    tracing::info!(
        at = report.at,
        probed = report.probes.len(),
        up = count(HealthState::Up),
        down = count(HealthState::Down),
        unknown = count(HealthState::Unknown),
        changed = report.probes.iter().filter(|p| p.changed).count(),
        "probe round"
    );
    Ok(report)
}

/// Load readings (vLLM's `/metrics`) every [`LOAD_INTERVAL_SECS`], starting now, while the
/// next round would still end before `until_ms` (unix ms): one scheduled invocation a
/// minute keeps the readings fresh, each [`load_round`] taking at most the probe timeout.
/// Returns the rounds run.
pub async fn load_rounds(store: &DynamoStore, until_ms: u64, now_ms: impl Fn() -> u64) -> usize {
    let mut rounds = 0;
    loop {
        let started = now_ms();
        match load_round(store, started / 1000).await {
            Ok(r) => tracing::info!(asked = r.asked, read = r.loads.values().map(|l| l.len()).sum::<usize>(), "load round"),
            Err(e) => tracing::error!(error = %e, "load round failed"),
        }
        rounds += 1;
        let next = started + LOAD_INTERVAL_SECS * 1000;
        if next + PROBE_TIMEOUT_MS + 1_000 > until_ms {
            return rounds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(next.saturating_sub(now_ms()))).await;
    }
}

fn state(s: HealthState) -> &'static str {
    match s {
        HealthState::Up => "up",
        HealthState::Down => "down",
        HealthState::Unknown => "unknown",
    }
}
