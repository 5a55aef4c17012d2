//! Who is calling: one bearer token, checked the same way on the data plane
//! and the admin API. A token whose issuer is a configured identity provider
//! is an internal user's access token ([`crate::oidc`]); anything else must be
//! one of the gateway's own tokens, not revoked.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::RouteSource;
use crate::token::{bearer, Principal, TokenVerifier};

/// The principal behind an `Authorization` header.
pub async fn authenticate<S: RouteSource>(cfg: &Config, store: &S, authorization: Option<&http::HeaderValue>, now: u64) -> Result<Principal> {
    let token = bearer(authorization)?;
    if let Some(p) = crate::oidc::verify(cfg, store, token, now).await? {
        return Ok(p);
    }
    let p = TokenVerifier::new(cfg).verify(token, now)?;
    if store.is_revoked(&p.token_id).await? {
        return Err(Error::TokenRevoked);
    }
    Ok(p)
}

/// The identity that owns self-service tokens: for a user signed in through a
/// provider, `oidc:{provider}:{sub}` (the provider's stable id, never the
/// e-mail or other display claim a user might change); `gateway:{subject}`
/// for a principal holding one of the gateway's own tokens.
pub fn owner_of(p: &Principal) -> String {
    match p.provider {
        Some(_) => p.token_id.clone(),
        None => format!("gateway:{}", p.subject),
    }
}
