//! Token budgets.

use super::*;

/// A budget Terraform wrote is Terraform's to change (409), as a managed route is.
async fn refuse_managed_budget<S: AdminStore>(store: &S, key: &str) -> Result<()> {
    if store.budget(key).await?.is_some_and(|b| b.managed_by.is_some()) {
        return Err(Error::Conflict(format!("budget `{key}` is managed by terraform; change it there")));
    }
    Ok(())
}

/// `GET /budgets`: every token budget with its use in the current windows.
pub(super) async fn list<S: AdminStore>(store: &S, now: u64) -> Result<AdminReply> {
    let budgets = store.list_budgets().await?;
    let uses = futures_util::future::try_join_all(budgets.iter().map(|(k, _)| store.budget_use(k, now))).await?;
    let items: Vec<Value> = budgets
        .iter()
        .zip(uses)
        .map(|((key, b), used)| {
            let (kind, id) = key.split_once('/').unwrap_or((key.as_str(), ""));
            let mut v = serde_json::to_value(b).unwrap_or_default();
            v["kind"] = json!(kind);
            v["id"] = json!(id);
            v["used"] = json!({"minute": used.minute, "day": used.day, "month": used.month});
            v
        })
        .collect();
    Ok(AdminReply::ok(json!({ "budgets": items })))
}

/// `PUT /budgets/{tokens|service-accounts|contracts}/{id}`
pub(super) async fn put<S: AdminStore>(store: &S, kind: crate::budget::BudgetKind, id: String, budget: crate::budget::TokenBudget) -> Result<AdminReply> {
    refuse_managed_budget(store, &kind.key(&id)).await?;
    store.put_budget(&kind.key(&id), &budget).await?;
    let mut v = serde_json::to_value(budget).unwrap_or_default();
    v["kind"] = json!(kind.segment());
    v["id"] = json!(id);
    Ok(AdminReply::ok(v))
}

/// `DELETE /budgets/{kind}/{id}`
pub(super) async fn delete<S: AdminStore>(store: &S, kind: crate::budget::BudgetKind, id: String) -> Result<AdminReply> {
    refuse_managed_budget(store, &kind.key(&id)).await?;
    if !store.delete_budget(&kind.key(&id)).await? {
        return Err(Error::NotFound(format!("no budget for {} `{id}`", kind.segment())));
    }
    Ok(AdminReply::ok(json!({ "deleted": kind.key(&id) })))
}
