//! Service accounts and the tokens issued for them.

use super::*;
use super::tokens::{issue, token_list};

/// The tokens issued for a service account.
async fn account_tokens<S: AdminStore>(store: &S, name: &str) -> Result<Vec<TokenRecord>> {
    Ok(store
        .list_tokens()
        .await?
        .into_iter()
        .filter(|t| t.kind == TokenKind::Service && t.metadata.get("service_account").map(String::as_str) == Some(name))
        .collect())
}

/// `POST /service-accounts`
/// (Its name, groups and owner were checked by [`AdminCommand::validate`].)
pub(super) async fn create<S: AdminStore>(store: &S, now: u64, who: &Principal, req: ServiceAccountRequest) -> Result<AdminReply> {
    let account = ServiceAccount {
        name: req.name,
        groups: req.groups,
        owner: req.owner,
        description: req.description,
        created_at: now,
        created_by: who.subject.clone(),
    };
    store.create_service_account(&account).await?;
    Ok(AdminReply::with_status(StatusCode::CREATED, serde_json::to_value(&account).map_err(|e| Error::Internal(e.to_string()))?))
}

/// `GET /service-accounts?limit=&cursor=`
pub(super) async fn list<S: AdminStore>(store: &S, page: Page) -> Result<AdminReply> {
    let (accounts, next) = page.take(store.list_service_accounts().await?, |a| a.name.as_str());
    Ok(AdminReply::ok(json!({ "service_accounts": accounts, "next_cursor": next })))
}

/// `GET /service-accounts/{name}`
pub(super) async fn get<S: AdminStore + MetricsSink>(store: &S, now: u64, name: String) -> Result<AdminReply> {
    let account = store.service_account(&name).await?.ok_or_else(|| Error::NotFound(format!("no service account `{name}`")))?;
    let tokens = account_tokens(store, &name).await?;
    let mut v = serde_json::to_value(&account).map_err(|e| Error::Internal(e.to_string()))?;
    v["tokens"] = Value::Array(token_list(store, tokens, now).await?);
    Ok(AdminReply::ok(v))
}

/// `DELETE /service-accounts/{name}`
pub(super) async fn delete<S: AdminStore>(store: &S, now: u64, name: String) -> Result<AdminReply> {
    store.service_account(&name).await?.ok_or_else(|| Error::NotFound(format!("no service account `{name}`")))?;
    // Tokens first: a failure part-way leaves the account, so deleting again finishes the job.
    let mut revoked = 0;
    for mut t in account_tokens(store, &name).await?.into_iter().filter(|t| t.revoked_at.is_none()) {
        t.revoked_at = Some(now);
        store.revoke(&t).await?;
        revoked += 1;
    }
    store.delete_service_account(&name).await?;
    Ok(AdminReply::ok(json!({ "deleted": name, "revoked_tokens": revoked })))
}

/// `POST /service-accounts/{name}/tokens`
pub(super) async fn issue_token<S: AdminStore>(cfg: &Config, store: &S, now: u64, ids: &dyn IdSource, who: &Principal, account: String, req: ScopedTokenRequest) -> Result<AdminReply> {
    let acct = store.service_account(&account).await?.ok_or_else(|| Error::NotFound(format!("no service account `{account}`")))?;
    let treq = TokenRequest {
        subject: acct.name.clone(),
        kind: TokenKind::Service,
        groups: acct.groups,
        routes: req.routes,
        ttl_seconds: req.ttl_seconds,
        description: req.description,
        metadata: [("service_account".to_string(), acct.name)].into(),
        rate_limit_rpm: req.rate_limit_rpm,
        registrar: None,
    };
    issue(cfg, store, now, ids, who, treq, None).await
}
