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
    // The gateway's own tokens verified before skip the signature and decoding (until
    // their expiry at most); revocation below is checked every time.
    let (p, own) = match cfg.verified.get(token, now) {
        Some(p) => (p, true),
        None => match crate::oidc::verify(cfg, store, token, now).await? {
            Some(p) => (p, false),
            None => {
                let p = TokenVerifier::new(cfg).verify(token, now)?;
                cfg.verified.put(token, &p, p.expires_at.saturating_add(cfg.leeway), now);
                (p, true)
            }
        },
    };
    // The gateway's own token by its id, and a revoked subject: every token it held when it
    // was revoked, a sign-in through the identity provider (by its subject or its stable
    // `oidc:{provider}:{sub}` id) included. The reads are independent: all at once.
    let revoked = async { if own { store.is_revoked(&p.token_id).await } else { Ok(false) } };
    let subjects = futures_util::future::try_join_all(revocable_ids(&p).map(|subject| store.subject_revoked_at(subject)));
    let (revoked, subjects) = futures_util::future::try_join(revoked, subjects).await?;
    if revoked || subjects.into_iter().flatten().any(|at| p.issued_at <= at) {
        return Err(Error::TokenRevoked);
    }
    Ok(p)
}

/// The names under which an admin may revoke a principal's subject.
fn revocable_ids(p: &Principal) -> impl Iterator<Item = &str> {
    std::iter::once(p.subject.as_str()).chain(p.provider.is_some().then_some(p.token_id.as_str()))
}

/// The subject an admin revokes: a gateway token's `sub`, an IdP user's subject (the
/// provider's `subject_claim`), or an IdP user's stable id `oidc:{provider}:{sub}`.
pub fn valid_subject(subject: &str) -> bool {
    !subject.is_empty() && subject.len() <= 256 && !subject.chars().any(char::is_control)
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
