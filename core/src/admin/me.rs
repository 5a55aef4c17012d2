//! A principal's own calls (`/me`): who am I, and self-service tokens.

use super::*;
use super::tokens::{issue, own_token, revoke, token_list};

/// `GET /me`
pub(super) fn me(who: &Principal) -> Result<AdminReply> {
    Ok(AdminReply::ok(json!({
    "subject": who.subject,
    "kind": who.kind,
    "groups": who.groups,
    "provider": who.provider,
    "partner": who.partner,
    "token_id": who.token_id,
    "expires_at": who.expires_at,
})))
}

/// `GET /me/tokens?limit=&cursor=`
pub(super) async fn my_tokens<S: AdminStore + MetricsSink>(store: &S, now: u64, who: &Principal, page: Page) -> Result<AdminReply> {
    let me = owner_of(who);
    let tokens = store.list_tokens().await?.into_iter().filter(|t| t.owner.as_deref() == Some(me.as_str())).collect();
    let (tokens, next) = page.take(tokens, |t| t.id.as_str());
    Ok(AdminReply::ok(json!({ "tokens": token_list(store, tokens, now).await?, "next_cursor": next })))
}

/// `GET /me/tokens/{id}`
pub(super) async fn my_token<S: AdminStore + MetricsSink>(store: &S, now: u64, who: &Principal, id: String) -> Result<AdminReply> {
    let t = own_token(store, who, &id).await?;
    Ok(AdminReply::ok(token_list(store, vec![t], now).await?.pop().unwrap_or(Value::Null)))
}

/// `DELETE /me/tokens/{id}`
pub(super) async fn revoke_my_token<S: AdminStore>(store: &S, now: u64, who: &Principal, id: String) -> Result<AdminReply> {
    let t = own_token(store, who, &id).await?;
    revoke(store, now, t).await
}

/// `POST /me/tokens`
pub(super) async fn issue_my_token<S: AdminStore>(cfg: &Config, store: &S, now: u64, ids: &dyn IdSource, who: &Principal, req: ScopedTokenRequest) -> Result<AdminReply> {
    // Admin rights stay with the sign-in: a token that outlives it never carries them. (Asked
    // groups were held to the user's own, without `admin`, by `caller_may`.)
    let groups = match req.groups {
        None => who.groups.iter().filter(|g| *g != crate::rbac::ADMIN_GROUP).cloned().collect(),
        Some(asked) => asked,
    };
    let me = owner_of(who);
    let mine: Vec<TokenRecord> = store.list_tokens().await?.into_iter().filter(|t| t.owner.as_deref() == Some(me.as_str())).collect();
    let active = mine.iter().filter(|t| t.revoked_at.is_none() && t.expires_at > now).count();
    if active >= MAX_SELF_SERVICE_TOKENS {
        return Err(Error::Forbidden(format!("you hold {MAX_SELF_SERVICE_TOKENS} active self-service tokens; revoke one first")));
    }
    // Issuing and revoking in a loop is bounded too: revoked records count for a day.
    let today: Vec<u64> = mine.iter().map(|t| t.created_at).filter(|c| c + DAY > now).collect();
    if today.len() >= MAX_SELF_SERVICE_ISSUES_PER_DAY {
        let oldest = today.iter().min().copied().unwrap_or(now);
        return Err(Error::RateLimited { limit: MAX_SELF_SERVICE_ISSUES_PER_DAY as u32, retry_after: (oldest + DAY).saturating_sub(now).max(1) });
    }
    let treq = TokenRequest {
        subject: who.subject.clone(),
        kind: TokenKind::User,
        groups,
        routes: req.routes,
        ttl_seconds: req.ttl_seconds,
        description: req.description,
        metadata: [("issued_via".to_string(), "self-service".to_string())].into(),
        // Self-service tokens take the route's limit (`validate` refused one asked for).
        rate_limit_rpm: None,
        registrar: None,
    };
    issue(cfg, store, now, ids, who, treq, Some(me)).await
}
