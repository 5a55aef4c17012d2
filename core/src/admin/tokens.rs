//! Tokens: issuing, listing, revoking (one token or a whole subject), keeping records, the signing keys.

use super::*;

/// True for a token record past keeping: expired beyond [`TOKEN_RECORD_GRACE`], or revoked
/// beyond [`REVOKED_RECORD_KEEP`]. Revocations themselves live on until their token expires.
pub fn record_expired(t: &TokenRecord, now: u64) -> bool {
    t.expires_at + TOKEN_RECORD_GRACE < now || t.revoked_at.is_some_and(|r| r + REVOKED_RECORD_KEEP < now)
}

/// Removes the token records past keeping ([`record_expired`]); returns how many. Run by
/// each deployment's scheduled job, so records never pile up in the state.
pub async fn prune_tokens<S: AdminStore>(store: &S, now: u64) -> Result<usize> {
    let mut n = 0;
    for t in store.list_tokens().await?.into_iter().filter(|t| record_expired(t, now)) {
        store.delete_token(&t.id).await?;
        n += 1;
    }
    Ok(n)
}

/// Mints a token, keeps its record (never the token), and answers with the token once.
pub(super) async fn issue<S: AdminStore>(cfg: &Config, store: &S, now: u64, ids: &dyn IdSource, who: &Principal, req: TokenRequest, owner: Option<String>) -> Result<AdminReply> {
    let jti = ids.token_id()?;
    let (token, claims) = TokenIssuer::new(cfg).issue(&req, now, jti)?;
    let record = TokenRecord {
        rate_limit_rpm: claims.rpm,
        id: claims.jti.clone(),
        subject: claims.sub,
        kind: claims.kind,
        groups: claims.groups,
        routes: claims.routes,
        description: req.description,
        metadata: req.metadata,
        created_by: who.subject.clone(),
        created_at: now,
        expires_at: claims.exp,
        revoked_at: None,
        last_used_at: None,
        request_count: 0,
        owner,
        kid: Some(cfg.keys.signing_kid().to_string()),
        registrar: claims.reg,
    };
    store.put_token(&record).await?;
    Ok(AdminReply::with_status(StatusCode::CREATED, json!({ "id": record.id, "token": token, "expires_at": record.expires_at })))
}

/// Revokes a token by its record.
pub(super) async fn revoke<S: AdminStore>(store: &S, now: u64, mut record: TokenRecord) -> Result<AdminReply> {
    if record.revoked_at.is_some() {
        return Err(Error::Conflict(format!("token `{}` is already revoked", record.id)));
    }
    record.revoked_at = Some(now);
    store.revoke(&record).await?;
    Ok(AdminReply::ok(json!({ "id": record.id, "revoked": true, "revoked_at": now })))
}

/// A token the caller owns; 404 for any other, so others' tokens are not even confirmed to exist.
pub(super) async fn own_token<S: AdminStore>(store: &S, who: &Principal, id: &str) -> Result<TokenRecord> {
    let me = owner_of(who);
    store.token(id).await?.filter(|t| t.owner.as_deref() == Some(me.as_str())).ok_or_else(|| Error::NotFound(format!("no token `{id}`")))
}

/// Token records as listed: newest first, with `revoked` and `expired` flags, and
/// `request_count` / `last_used_at` from the metric counters (`tok:{id}`), which the
/// data plane keeps per request; the record itself is not rewritten per request.
pub(super) async fn token_list<S: AdminStore + MetricsSink>(store: &S, mut tokens: Vec<TokenRecord>, now: u64) -> Result<Vec<Value>> {
    let usage = crate::metrics::snapshot(now, store.counters(now).await?, std::iter::empty()).tokens;
    for t in &mut tokens {
        if let Some(u) = usage.get(&t.id) {
            // Records from before the counters existed keep what they had counted.
            t.request_count = t.request_count.max(u.requests);
            t.last_used_at = t.last_used_at.max(u.last_seen);
        }
    }
    tokens.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
    Ok(tokens
        .into_iter()
        .map(|t| {
            let expired = now >= t.expires_at;
            let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
            v["revoked"] = Value::Bool(t.revoked_at.is_some());
            v["expired"] = Value::Bool(expired);
            v
        })
        .collect())
}

/// `GET /tokens?q=&limit=&cursor=`
pub(super) async fn list_tokens<S: AdminStore + MetricsSink>(store: &S, now: u64, q: Option<String>, page: Page) -> Result<AdminReply> {
    let mut tokens = store.list_tokens().await?;
    if let Some(q) = q {
        let q = q.to_lowercase();
        tokens.retain(|t| t.subject.to_lowercase().contains(&q) || t.description.to_lowercase().contains(&q));
    }
    let (tokens, next) = page.take(tokens, |t| t.id.as_str());
    Ok(AdminReply::ok(json!({ "tokens": token_list(store, tokens, now).await?, "next_cursor": next })))
}

/// `POST /subjects/{subject}/revoke`: every token the subject holds now, IdP sign-ins and
/// self-service tokens included.
pub(super) async fn revoke_subject<S: AdminStore>(store: &S, now: u64, subject: String) -> Result<AdminReply> {
    // The subject's own record first: from now on no token it held is accepted, also
    // ones the gateway has no record of (IdP sign-ins, tokens minted offline).
    store.revoke_subject(&subject, now).await?;
    // Then its token records, so listings show them revoked: those issued to the subject
    // and those it owns (an IdP user's self-service tokens, by `oidc:{provider}:{sub}`).
    let mut revoked = Vec::new();
    for mut t in store.list_tokens().await? {
        let held = t.subject == subject || t.owner.as_deref() == Some(subject.as_str());
        if held && t.revoked_at.is_none() && t.expires_at > now {
            t.revoked_at = Some(now);
            store.revoke(&t).await?;
            revoked.push(t.id);
        }
    }
    Ok(AdminReply::ok(json!({ "subject": subject, "revoked_at": now, "tokens_revoked": revoked })))
}

/// `DELETE /tokens/{id}`
pub(super) async fn revoke_token<S: AdminStore>(cfg: &Config, store: &S, now: u64, who: &Principal, id: String) -> Result<AdminReply> {
    if !id.starts_with("tok_") || id.len() > 64 || !id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(Error::NotFound(format!("no token `{id}`")));
    }
    // Tokens minted offline (gatewayctl bootstrap) have no record; they must still be revocable,
    // so the revocation outlives any token the gateway would accept.
    let record = match store.token(&id).await? {
        Some(r) => r,
        None => TokenRecord {
            rate_limit_rpm: None,
            id: id.clone(),
            subject: "(minted offline)".into(),
            kind: crate::token::TokenKind::User,
            groups: Vec::new(),
            routes: None,
            description: "revoked without a record".into(),
            metadata: Default::default(),
            created_by: who.subject.clone(),
            created_at: now,
            expires_at: now + cfg.max_token_ttl,
            revoked_at: None,
            last_used_at: None,
            request_count: 0,
            owner: None,
            kid: None,
            registrar: None,
        },
    };
    revoke(store, now, record).await
}

/// `GET /keys`: the signing keys and what each still has to verify.
pub(super) async fn keys<S: AdminStore>(cfg: &Config, store: &S, now: u64) -> Result<AdminReply> {
    let tokens = store.list_tokens().await?;
    let keys: Vec<Value> = cfg
        .keys
        .describe()
        .into_iter()
        .map(|(kid, alg, signing)| {
            let live: Vec<&TokenRecord> =
                tokens.iter().filter(|t| t.kid.as_deref() == Some(kid) && t.revoked_at.is_none() && t.expires_at > now).collect();
            json!({ "kid": kid, "alg": alg, "signing": signing, "tokens_outstanding": live.len(), "last_expiry": live.iter().map(|t| t.expires_at).max() })
        })
        .collect();
    Ok(AdminReply::ok(json!({ "signing_kid": cfg.keys.signing_kid(), "keys": keys, "max_token_ttl_seconds": cfg.max_token_ttl })))
}
