//! The audit log: writing an entry for every admin write, and reading it back a page at a time.

use super::*;

pub(super) async fn write<S: AdminStore>(
    store: &S,
    now: u64,
    trace_id: Option<&str>,
    who: Option<&Principal>,
    action: &str,
    object: String,
    outcome: &str,
) {
    let entry = AuditEntry {
        seq: 0,
        at: now,
        actor: who.map_or_else(|| "anonymous".to_string(), |p| p.subject.clone()),
        actor_token: who.map(|p| p.token_id.clone()),
        action: action.to_string(),
        object,
        outcome: outcome.to_string(),
        trace_id: trace_id.map(str::to_string),
        old_version: None,
        new_version: None,
    };
    // The write already happened or was refused; a lost audit line must not undo or fail it,
    // but the adapter's store logs the failure.
    let _ = store.append_audit(entry).await;
}

/// `GET /audit?before=&limit=`
pub(super) async fn page<S: AdminStore>(store: &S, before: Option<u64>, limit: usize) -> Result<AdminReply> {
    let entries = store.audit(before, limit).await?;
    let next = if entries.len() == limit { entries.last().map(|e| e.seq) } else { None };
    Ok(AdminReply::ok(json!({ "entries": entries, "next_before": next })))
}
