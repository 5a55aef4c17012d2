//! Role-based access to routes, exactly as API.md states it.

use crate::error::{Error, Result};
use crate::route::Route;
use crate::token::{Principal, TokenKind};

/// The group that grants the admin API (and only the admin API).
pub const ADMIN_GROUP: &str = "admin";

/// Decides whether `principal` may call `route`. `route_key` is the name the
/// allow-list is matched against (the route name, or the ephemeral id).
///
/// Allowed when the route does not require auth; or the token's allow-list
/// (if any) names the route and its groups meet the route's; or it is a
/// partner token whose allow-list names the route. A registrar token is
/// refused everywhere, public routes included: it is not for the data plane.
pub fn authorize(route: &Route, route_key: &str, principal: Option<&Principal>) -> Result<()> {
    if let Some(p) = principal.filter(|p| p.kind == TokenKind::Registrar) {
        return Err(Error::Forbidden(format!("token `{}` is a registrar token: it registers endpoints and reaches no route", p.token_id)));
    }
    if !route.auth.required {
        return Ok(());
    }
    let p = principal.ok_or(Error::MissingToken)?;
    let listed = p.routes.as_ref().map(|r| r.iter().any(|n| n == route_key));
    let groups_meet = p.groups.iter().any(|g| g != ADMIN_GROUP && route.auth.groups.contains(g));
    let allowed = match (p.kind, listed) {
        (TokenKind::Partner, Some(true)) => true,
        (TokenKind::Partner, _) | (TokenKind::Registrar, _) => false,
        (_, Some(false)) => false,
        (_, _) => groups_meet,
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::Forbidden(format!("token `{}` has no access to this route", p.token_id)))
    }
}

/// Allows only principals holding the `admin` group.
pub fn authorize_admin(principal: &Principal) -> Result<()> {
    // A partner or a registrar is never an admin, whatever groups its token carries.
    if principal.has_group(ADMIN_GROUP) && !matches!(principal.kind, TokenKind::Partner | TokenKind::Registrar) {
        Ok(())
    } else {
        Err(Error::Forbidden("the admin API needs a token with group `admin`".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Endpoint;

    fn route(groups: &[&str]) -> Route {
        let mut r = Route::new("llama", vec![Endpoint::new("a", "http://h")]);
        r.auth.groups = groups.iter().map(|s| s.to_string()).collect();
        r
    }

    fn who(kind: TokenKind, groups: &[&str], routes: Option<&[&str]>) -> Principal {
        Principal {
            rate_limit_rpm: None,
            token_id: "tok_t".into(),
            subject: "s".into(),
            kind,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            routes: routes.map(|r| r.iter().map(|s| s.to_string()).collect()),
            expires_at: 0,
            issued_at: 0,
            provider: None,
            partner: None,
            contract: None,
            registrar: None,
        }
    }

    #[test]
    fn partners_are_never_admins() {
        assert!(authorize_admin(&who(TokenKind::User, &["admin"], None)).is_ok());
        assert!(authorize_admin(&who(TokenKind::Partner, &["admin"], Some(&["llama"]))).is_err());
    }

    #[test]
    fn registrars_reach_no_route_and_are_never_admins() {
        // Even a forged registrar principal with `admin` and matching groups.
        let reg = who(TokenKind::Registrar, &["admin", "ml-team"], Some(&["llama"]));
        assert!(matches!(authorize(&route(&["ml-team"]), "llama", Some(&reg)), Err(Error::Forbidden(_))));
        let mut public = route(&[]);
        public.auth.required = false;
        assert!(matches!(authorize(&public, "llama", Some(&reg)), Err(Error::Forbidden(_))), "public routes too");
        assert!(authorize(&public, "llama", None).is_ok());
        assert!(authorize_admin(&reg).is_err());
    }

    #[test]
    fn public_route_needs_nothing() {
        let mut r = route(&[]);
        r.auth.required = false;
        assert!(authorize(&r, "llama", None).is_ok());
    }

    #[test]
    fn groups_must_intersect() {
        let r = route(&["ml-team"]);
        assert!(authorize(&r, "llama", Some(&who(TokenKind::User, &["ml-team"], None))).is_ok());
        assert!(matches!(authorize(&r, "llama", Some(&who(TokenKind::User, &["other"], None))), Err(Error::Forbidden(_))));
        assert_eq!(authorize(&r, "llama", None), Err(Error::MissingToken));
    }

    #[test]
    fn allow_list_narrows_internal_tokens() {
        let r = route(&["ml-team"]);
        assert!(authorize(&r, "llama", Some(&who(TokenKind::Service, &["ml-team"], Some(&["llama"])))).is_ok());
        assert!(authorize(&r, "llama", Some(&who(TokenKind::Service, &["ml-team"], Some(&["other"])))).is_err());
    }

    #[test]
    fn partners_reach_exactly_their_routes() {
        let r = route(&["ml-team"]);
        assert!(authorize(&r, "llama", Some(&who(TokenKind::Partner, &[], Some(&["llama"])))).is_ok());
        assert!(authorize(&r, "llama", Some(&who(TokenKind::Partner, &["ml-team"], Some(&["other"])))).is_err());
    }

    #[test]
    fn admin_group_alone_does_not_grant_routes() {
        let r = route(&["admin", "ml-team"]);
        assert!(authorize(&r, "llama", Some(&who(TokenKind::User, &["admin"], None))).is_err());
        assert!(authorize_admin(&who(TokenKind::User, &["admin"], None)).is_ok());
        assert!(authorize_admin(&who(TokenKind::User, &["ml-team"], None)).is_err());
    }
}
