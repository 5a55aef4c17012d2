//! Routes another owner writes straight into the store: Terraform (`infra/modules/routes`).
//!
//! Such a route is the only source of truth for its name: the admin API refuses to change it
//! (409), and where an adapter keeps an admin copy beside the owner's (the edge's Durable
//! Object beside Workers KV) the owner's copy wins and the admin copy is removed.
//!
//! Terraform's writes never pass through the admin API, so the gateway audits them itself
//! when it first sees them: [`sync`] compares every route with what it saw last (a version
//! per route, kept in the store) and writes one audit entry per change, with the owner as the
//! actor and the old and new versions. It runs before every admin call and every probe round,
//! so a change is in the audit log by the time anyone can ask for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::route::Route;
use crate::store::{AdminStore, AuditEntry};
use crate::Result;

/// What the gateway last saw of one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// [`version`] of the route then.
    pub version: String,
    /// Its `managed_by` then (`None`: the admin API's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// A route's version: the first 16 hex digits of the SHA-256 of its stored JSON. Two copies
/// with the same fields have the same version, whoever wrote them and in whatever key order.
pub fn version(route: &Route) -> String {
    let json = serde_json::to_vec(route).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// One change [`reconcile`] found: the new record of a route (`None`: forget it) and the audit
/// entry, when the change was another owner's.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub route: String,
    pub seen: Option<Seen>,
    pub audit: Option<AuditEntry>,
}

/// Compares the routes in the store with what was seen of them. Changes the admin API made
/// update the record silently (the admin API audited them); an outside owner's creation,
/// change, adoption of an admin route, or removal each yields an audit entry.
pub fn reconcile(seen: &BTreeMap<String, Seen>, routes: &[Route], now: u64, trace_id: Option<&str>) -> Vec<Change> {
    let entry = |owner: &str, action: &str, name: &str, old: Option<&str>, new: Option<&str>| AuditEntry {
        seq: 0,
        at: now,
        actor: owner.to_string(),
        actor_token: None,
        action: action.to_string(),
        object: format!("route/{name}"),
        outcome: "ok".to_string(),
        trace_id: trace_id.map(str::to_string),
        old_version: old.map(str::to_string),
        new_version: new.map(str::to_string),
    };
    let mut changes = Vec::new();
    let mut present = std::collections::BTreeSet::new();
    for r in routes {
        present.insert(r.name.as_str());
        let now_seen = Seen { version: version(r), managed_by: r.managed_by.clone() };
        let before = seen.get(&r.name);
        if before == Some(&now_seen) {
            continue;
        }
        let audit = match r.managed_by.as_deref() {
            Some(owner) if r.is_externally_managed() => {
                Some(entry(owner, "route.put", &r.name, before.map(|s| s.version.as_str()), Some(&now_seen.version)))
            }
            _ => None,
        };
        changes.push(Change { route: r.name.clone(), seen: Some(now_seen), audit });
    }
    for (name, before) in seen {
        if present.contains(name.as_str()) {
            continue;
        }
        let audit = match before.managed_by.as_deref() {
            Some(owner) if owner != "admin-api" => Some(entry(owner, "route.delete", name, Some(&before.version), None)),
            _ => None,
        };
        changes.push(Change { route: name.clone(), seen: None, audit });
    }
    changes
}

/// Audits every change another owner made since the last look, and records what was seen.
/// The audit entry goes first: a failure between the two repeats an entry rather than loses it.
/// Returns the number of audited changes.
pub async fn sync<S: AdminStore>(store: &S, now: u64, trace_id: Option<&str>) -> Result<usize> {
    let (routes, seen) = futures_util::future::try_join(store.list_routes(), store.seen_routes()).await?;
    let mut audited = 0;
    for change in reconcile(&seen, &routes, now, trace_id) {
        if let Some(entry) = change.audit {
            store.append_audit(entry).await?;
            audited += 1;
        }
        store.put_seen_route(&change.route, change.seen.as_ref()).await?;
    }
    Ok(audited)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AdminStore, MemoryStore};

    fn route(name: &str, url: &str, managed_by: Option<&str>) -> Route {
        let mut r: Route = serde_json::from_value(serde_json::json!({
            "name": name, "endpoints": [{"id": "a", "url": url, "weight": 1}], "auth": {"required": true, "groups": ["ml"]}
        }))
        .expect("route");
        r.managed_by = managed_by.map(str::to_string);
        r
    }

    #[test]
    fn the_version_follows_the_fields_not_the_key_order() {
        let a = route("r", "http://10.0.0.1:8000", None);
        let b: Route = serde_json::from_str(&format!(
            r#"{{"auth": {{"groups": ["ml"], "required": true}}, "endpoints": [{{"weight": 1, "url": "http://10.0.0.1:8000", "id": "a"}}], "name": "r"}}"#
        ))
        .expect("route");
        assert_eq!(version(&a), version(&b));
        assert_eq!(version(&a).len(), 16);
        assert_ne!(version(&a), version(&route("r", "http://10.0.0.2:8000", None)));
        assert_ne!(version(&a), version(&route("r", "http://10.0.0.1:8000", Some("terraform"))));
    }

    #[test]
    fn admin_changes_are_recorded_silently_and_terraforms_are_audited() {
        let admin = route("r", "http://10.0.0.1:8000", None);
        let first = reconcile(&BTreeMap::new(), std::slice::from_ref(&admin), 10, None);
        assert_eq!(first.len(), 1);
        assert!(first[0].audit.is_none(), "the admin API audits its own writes");
        let seen: BTreeMap<_, _> = first.into_iter().map(|c| (c.route, c.seen.expect("seen"))).collect();
        assert!(reconcile(&seen, std::slice::from_ref(&admin), 11, None).is_empty(), "nothing new, nothing done");

        // Terraform adopts the route: old version is the admin copy's.
        let tf = route("r", "http://10.0.0.9:8000", Some("terraform"));
        let adopted = reconcile(&seen, std::slice::from_ref(&tf), 12, Some("abc"));
        let e = adopted[0].audit.clone().expect("audited");
        assert_eq!((e.actor.as_str(), e.action.as_str(), e.object.as_str(), e.outcome.as_str()), ("terraform", "route.put", "route/r", "ok"));
        assert_eq!(e.old_version.as_deref(), Some(version(&admin).as_str()));
        assert_eq!(e.new_version.as_deref(), Some(version(&tf).as_str()));
        assert_eq!((e.at, e.trace_id.as_deref(), e.actor_token.as_deref()), (12, Some("abc"), None));

        // Terraform removes it.
        let seen: BTreeMap<_, _> = adopted.into_iter().map(|c| (c.route, c.seen.expect("seen"))).collect();
        let gone = reconcile(&seen, &[], 13, None);
        let e = gone[0].audit.clone().expect("removal audited");
        assert_eq!((e.action.as_str(), e.old_version.as_deref(), e.new_version.as_deref()), ("route.delete", Some(version(&tf).as_str()), None));
        assert!(gone[0].seen.is_none());

        // An admin route's removal is the admin API's to audit.
        let seen: BTreeMap<_, _> = [("r".to_string(), Seen { version: version(&admin), managed_by: None })].into();
        let gone = reconcile(&seen, &[], 14, None);
        assert!(gone.len() == 1 && gone[0].audit.is_none());
    }

    #[test]
    fn sync_audits_each_change_once() {
        futures_executor::block_on(async {
        let store = MemoryStore::default();
        let tf = route("tf", "http://10.0.0.1:8000", Some("terraform"));
        store.put_route(&tf, None).await.expect("put");
        assert_eq!(sync(&store, 100, None).await.expect("sync"), 1);
        assert_eq!(sync(&store, 101, None).await.expect("sync"), 0, "seen already");
        let changed = route("tf", "http://10.0.0.2:8000", Some("terraform"));
        store.put_route(&changed, Some(&tf)).await.expect("put");
        assert_eq!(sync(&store, 102, None).await.expect("sync"), 1);
        let log = store.audit(None, 10).await.expect("audit");
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].old_version.as_deref(), Some(version(&tf).as_str()));
        assert_eq!(log[0].new_version.as_deref(), Some(version(&changed).as_str()));
        assert_eq!(log[1].old_version, None);
        });
    }
}
