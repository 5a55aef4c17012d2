//! Metrics (JSON and Prometheus) and on-demand health probes.

use super::*;

/// The metrics as of `now`, from the store's counters and health records.
async fn metrics_snapshot<S: Store>(store: &S, now: u64) -> Result<crate::metrics::Snapshot> {
    let counters = store.counters(now).await?;
    let health = store.health().await?;
    let tokens = store.list_tokens().await?;
    let mut b = crate::metrics::SnapshotBuilder::new(now);
    for (k, v) in counters {
        b.counter(k.as_ref(), v);
    }
    for (route, endpoint, h) in &health {
        b.health(route, endpoint, h);
    }
    b.tokens(&tokens);
    for route in store.list_routes().await? {
        b.loads(&route.name, &store.loads(&route.name).await?);
    }
    Ok(b.build())
}

/// `GET /metrics`
pub(super) async fn metrics<S: Store>(store: &S, now: u64) -> Result<AdminReply> {
    let snap = metrics_snapshot(store, now).await?;
    Ok(AdminReply::ok(serde_json::to_value(snap).map_err(|e| Error::Internal(e.to_string()))?))
}

/// `GET /metrics/prometheus?per_token=1`: series per token only when asked for.
pub(super) async fn prometheus<S: Store>(store: &S, now: u64, per_token: bool) -> Result<AdminReply> {
    let snap = metrics_snapshot(store, now).await?;
    Ok(AdminReply::document(Document {
        content_type: crate::metrics::PROMETHEUS_CONTENT_TYPE,
        bytes: crate::metrics::render_prometheus(&snap, per_token).into_bytes(),
        headers: &[],
    }))
}

/// `POST /probes`: one round of health probes now.
pub(super) async fn run_probes<S: Store>(store: &S, now: u64) -> Result<AdminReply> {
    let report = crate::probe::run(store, now).await?;
    let loads = crate::probe::load_round(store, now).await?;
    let mut body = serde_json::to_value(report).map_err(|e| Error::Internal(e.to_string()))?;
    body["loads"] = serde_json::to_value(loads.loads).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(AdminReply::ok(body))
}
