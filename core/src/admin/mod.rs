//! The admin API: authenticate and authorise a call's caller, parse it and check its content
//! ([`AdminCommand::parse`], [`AdminCommand::validate`]), write through the `Store`, and
//! audit every write.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::rbac::authorize_admin;
use crate::registrar;
use crate::route::{is_valid_endpoint_id, is_valid_ephemeral_id, is_valid_route_name, Endpoint, Route};
use crate::identity::owner_of;
use crate::store::{AdminStore, AuditEntry, MetricsSink, ServiceAccount, Store, TokenRecord};
use crate::token::{IdSource, Principal, TokenIssuer, TokenKind, TokenRequest};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

mod accounts;
mod audit;
mod budgets;
mod command;
mod me;
mod observe;
mod routes;
mod tokens;
#[cfg(test)]
mod tests;

pub use command::*;
pub use tokens::{prune_tokens, record_expired};

/// Largest admin request body.
pub const MAX_ADMIN_BODY: usize = 1024 * 1024;
/// Shortest lease an endpoint may take.
pub const MIN_LEASE_SECONDS: u64 = 5;
/// Longest lease an endpoint may take.
pub const MAX_LEASE_SECONDS: u64 = 24 * 3600;
/// Longest life of a self-service token (and never more than `GATEWAY_MAX_TOKEN_TTL_SECONDS`).
pub const MAX_SELF_SERVICE_TTL: u64 = 30 * 24 * 3600;
/// Active self-service tokens one user may hold.
pub const MAX_SELF_SERVICE_TOKENS: usize = 25;

/// Self-service tokens one owner may be issued in any 24 hours, revoked ones included.
pub const MAX_SELF_SERVICE_ISSUES_PER_DAY: usize = 50;

const DAY: u64 = 24 * 3600;

/// How long a token record is kept after its token expired (listings show recent expiries).
pub const TOKEN_RECORD_GRACE: u64 = 30 * DAY;

/// How long a revoked token's record is kept (its revocation itself is kept until the token
/// expires): long enough to count against [`MAX_SELF_SERVICE_ISSUES_PER_DAY`].
pub const REVOKED_RECORD_KEEP: u64 = 2 * DAY;

/// Shortest life of an ephemeral route.
pub const MIN_EPHEMERAL_SECONDS: u64 = 5;
/// Longest life of an ephemeral route.
pub const MAX_EPHEMERAL_SECONDS: u64 = 7 * 24 * 3600;

/// True for `GET /_gateway/healthz`, which needs no token.
pub fn is_healthz(segments: &[String]) -> bool {
    segments.len() == 1 && segments[0] == "healthz"
}

/// The answer to a call that needs no token: the liveness check and the
/// dashboard's own files (the page asks for a token and sends it with each
/// data call); `None` for every other call.
pub fn public(method: &Method, segments: &[String]) -> Option<AdminReply> {
    if is_healthz(segments) {
        return Some(healthz());
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    crate::dashboard::file(&s).map(AdminReply::document)
}

/// The liveness answer.
pub fn healthz() -> AdminReply {
    AdminReply::ok(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Answers one admin call end to end. Every write, allowed or not, is audited.
pub async fn handle<S: Store>(cfg: &Config, store: &S, now: u64, req: AdminRequest<'_>) -> Result<AdminReply> {
    if let Some(reply) = public(req.method, req.segments) {
        return Ok(reply);
    }
    // Size before anything else, as the edge checks it while reading: the same answer on
    // both deployments, and no token check spent on a body that will be refused anyway.
    if req.body.len() > MAX_ADMIN_BODY {
        return Err(Error::PayloadTooLarge { limit: MAX_ADMIN_BODY as u64 });
    }
    // Authenticate first, so nobody learns the admin API's shape without a token.
    let principal = match crate::identity::authenticate(cfg, store, req.authorization, now).await {
        Ok(p) => p,
        Err(e) => {
            return Err(refused(store, now, &req, None, e).await);
        }
    };
    // `/me…` is each principal's own; a registrar's are its leases; everything else is the admins'.
    let own = req.segments.first().is_some_and(|s| s == "me");
    let allowed = if registrar::is_registrar(&principal) {
        registrar::authorize_call(req.method, req.segments)
    } else if own {
        Ok(())
    } else {
        authorize_admin(&principal)
    };
    if let Err(e) = allowed {
        return Err(refused(store, now, &req, Some(&principal), e).await);
    }
    // Terraform writes routes straight into the store: its changes reach the audit log before
    // an admin reads or changes anything (registrars' lease renewals and `/me` skip this).
    let admin_call = !own && !registrar::is_registrar(&principal);
    if admin_call {
        // A failure leaves the changes for the next call or probe round to find.
        let _ = crate::managed::sync(store, now, req.trace_id).await;
    }
    let cmd = match AdminCommand::parse(req.method, req.segments, req.query, req.body) {
        Ok(c) => c,
        Err(e) => {
            return Err(refused(store, now, &req, Some(&principal), e).await);
        }
    };
    let label = cmd.audit_label();
    let result = execute(cfg, store, now, req.ids, &principal, cmd).await;
    if admin_call && result.is_ok() && label.as_ref().is_some_and(|(a, _)| a.starts_with("route.")) {
        // The admin API's own change is recorded as seen, so a later Terraform change of the
        // same route is audited against this version.
        let _ = crate::managed::sync(store, now, req.trace_id).await;
    }
    if let Some((action, mut object)) = label {
        if let (Ok(reply), "ephemeral.create" | "token.issue") = (&result, action) {
            if let Some(id) = reply.body.get("id").and_then(Value::as_str) {
                object = if action == "token.issue" { format!("token/{id}") } else { format!("ephemeral/{id}") };
            }
        }
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        audit::write(store, now, req.trace_id, Some(&principal), action, object, outcome).await;
    }
    result
}

/// A call refused before it ran: audited when it was a write (allowed or not, every write is
/// in the log), then handed back.
async fn refused<S: Store>(store: &S, now: u64, req: &AdminRequest<'_>, who: Option<&Principal>, e: Error) -> Error {
    if !matches!(*req.method, Method::GET | Method::HEAD) {
        let object = format!("{} /_gateway/{}", req.method, req.segments.join("/"));
        audit::write(store, now, req.trace_id, who, "admin.write", object, e.code()).await;
    }
    e
}

/// What the caller may ask of this command, decided from its token alone, before the command's
/// content is checked: a registrar only its endpoint calls, within its scope; a self-service
/// token only for a user signed in through the identity provider, with groups the user holds
/// and never `admin`. A registrar's scope on the call's route is returned, for the executor.
fn caller_may<'a>(who: &'a Principal, cmd: &AdminCommand) -> Result<Option<&'a registrar::RegistrarScope>> {
    if registrar::is_registrar(who) {
        return match cmd {
            AdminCommand::PutEndpoint { route, endpoint, lease_seconds } => {
                let scope = registrar::scope_for(who, route)?;
                scope.check_lease(endpoint, *lease_seconds)?;
                Ok(Some(scope))
            }
            AdminCommand::DeleteEndpoint { route, .. } => registrar::scope_for(who, route).map(Some),
            _ => Err(Error::Forbidden("a registrar token may only register, renew and remove its own endpoints".into())),
        };
    }
    if let AdminCommand::IssueMyToken(req) = cmd {
        if who.provider.is_none() || who.kind != TokenKind::User {
            return Err(Error::Forbidden("self-service tokens are for users signed in through the identity provider".into()));
        }
        if let Some(asked) = &req.groups {
            if let Some(g) = asked.iter().find(|g| !who.has_group(g)) {
                return Err(Error::Forbidden(format!("you do not hold group `{g}`")));
            }
            if asked.iter().any(|g| g == crate::rbac::ADMIN_GROUP) {
                return Err(Error::Forbidden("self-service tokens cannot carry `admin`; ask an admin for one".into()));
            }
        }
    }
    Ok(None)
}

/// Executes a parsed command for an authorised caller: an admin, a principal on its own
/// `/me` calls, or a registrar on its endpoint calls (held to its scope here).
pub async fn execute<S: Store>(cfg: &Config, store: &S, now: u64, ids: &dyn IdSource, who: &Principal, cmd: AdminCommand) -> Result<AdminReply> {
    let scope = caller_may(who, &cmd)?;
    cmd.validate(cfg)?;
    match cmd {
        AdminCommand::ListRoutes(page) => routes::list_routes(store, page).await,
        AdminCommand::GetRoute(name) => routes::get_route(store, now, name).await,
        AdminCommand::PutRoute(route) => routes::put_route(store, route).await,
        AdminCommand::DeleteRoute(name) => routes::delete_route(store, name).await,
        AdminCommand::PutEndpoint { route, endpoint, lease_seconds } => routes::put_endpoint(store, now, who, scope, route, endpoint, lease_seconds).await,
        AdminCommand::DeleteEndpoint { route, id } => routes::delete_endpoint(store, who, scope, route, id).await,
        AdminCommand::CreateEphemeral(req) => routes::create_ephemeral(store, now, ids, req).await,
        AdminCommand::IssueToken(req) => tokens::issue(cfg, store, now, ids, who, req, None).await,
        AdminCommand::ListTokens { q, page } => tokens::list_tokens(store, now, q, page).await,
        AdminCommand::RevokeSubject(subject) => tokens::revoke_subject(store, now, subject).await,
        AdminCommand::RevokeToken(id) => tokens::revoke_token(cfg, store, now, who, id).await,
        AdminCommand::Keys => tokens::keys(cfg, store, now).await,
        AdminCommand::Me => me::me(who),
        AdminCommand::MyTokens(page) => me::my_tokens(store, now, who, page).await,
        AdminCommand::MyToken(id) => me::my_token(store, now, who, id).await,
        AdminCommand::RevokeMyToken(id) => me::revoke_my_token(store, now, who, id).await,
        AdminCommand::IssueMyToken(req) => me::issue_my_token(cfg, store, now, ids, who, req).await,
        AdminCommand::CreateServiceAccount(req) => accounts::create(store, now, who, req).await,
        AdminCommand::ListServiceAccounts(page) => accounts::list(store, page).await,
        AdminCommand::GetServiceAccount(name) => accounts::get(store, now, name).await,
        AdminCommand::DeleteServiceAccount(name) => accounts::delete(store, now, name).await,
        AdminCommand::IssueServiceToken { account, req } => accounts::issue_token(cfg, store, now, ids, who, account, req).await,
        AdminCommand::ListBudgets => budgets::list(store, now).await,
        AdminCommand::PutBudget { kind, id, budget } => budgets::put(store, kind, id, budget).await,
        AdminCommand::DeleteBudget { kind, id } => budgets::delete(store, kind, id).await,
        AdminCommand::Metrics => observe::metrics(store, now).await,
        AdminCommand::MetricsPrometheus { per_token } => observe::prometheus(store, now, per_token).await,
        AdminCommand::RunProbes => observe::run_probes(store, now).await,
        AdminCommand::Audit { before, limit } => audit::page(store, before, limit).await,
    }
}
