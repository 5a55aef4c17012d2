//! Static routes, their leased endpoints, and ephemeral routes.

use super::*;

fn refuse_managed(route: &Route) -> Result<()> {
    if route.is_externally_managed() {
        Err(Error::Conflict(format!(
            "route `{}` is managed by {}; change it there",
            route.name,
            route.managed_by.as_deref().unwrap_or("another owner")
        )))
    } else {
        Ok(())
    }
}

/// `GET /routes?limit=&cursor=`
pub(super) async fn list_routes<S: AdminStore>(store: &S, page: Page) -> Result<AdminReply> {
    let (routes, next) = page.take(store.list_routes().await?, |r| r.name.as_str());
    Ok(AdminReply::ok(json!({ "routes": routes, "next_cursor": next })))
}

/// `GET /routes/{name}`
pub(super) async fn get_route<S: AdminStore>(store: &S, now: u64, name: String) -> Result<AdminReply> {
    let route = store.route(&name).await?.ok_or_else(|| Error::NotFound(format!("no route `{name}`")))?;
    let leases: Vec<Endpoint> = store.leases(&name).await?.into_iter().filter(|e| e.is_live(now)).collect();
    let mut v = serde_json::to_value(&route).map_err(|e| Error::Internal(e.to_string()))?;
    v["leased_endpoints"] = serde_json::to_value(leases).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(AdminReply::ok(v))
}

/// `PUT /routes/{name}`
pub(super) async fn put_route<S: AdminStore>(store: &S, mut route: Box<Route>) -> Result<AdminReply> {
    let previous = store.route(&route.name).await?;
    if let Some(p) = &previous {
        refuse_managed(p)?;
    }
    // Only Terraform writes managed routes; through this API a route is the API's own. (Checked
    // after the stored route, so writing back a Terraform route as read is its 409.)
    if route.managed_by.is_some() {
        return Err(Error::bad_request("managed_by", "is set by Terraform, not through the admin API"));
    }
    if let Some(host) = &route.host {
        if let Some(other) = store.route_for_host(host).await? {
            if other.name != route.name {
                return Err(Error::Conflict(format!("host `{host}` already belongs to route `{}`", other.name)));
            }
        }
    }
    // A model name routes one way: to one route (model routing under `/v1/`).
    for (i, model) in route.models.iter().enumerate() {
        let Some(other) = store.model_route(model).await?.filter(|o| *o != route.name) else { continue };
        // An index entry left by a route since changed or removed does not count.
        if store.route(&other).await?.is_some_and(|o| o.models.contains(model)) {
            return Err(Error::Conflict(format!("`models[{i}]`: model `{model}` is already served by route `{other}`")));
        }
    }
    route.expires_at = None;
    store.put_route(&route, previous.as_ref()).await?;
    let status = if previous.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok(AdminReply::with_status(status, serde_json::to_value(&*route).map_err(|e| Error::Internal(e.to_string()))?))
}

/// `DELETE /routes/{name}`
pub(super) async fn delete_route<S: AdminStore>(store: &S, name: String) -> Result<AdminReply> {
    let route = store.route(&name).await?.ok_or_else(|| Error::NotFound(format!("no route `{name}`")))?;
    refuse_managed(&route)?;
    store.delete_route(&route).await?;
    Ok(AdminReply::ok(json!({ "deleted": name })))
}

/// `PUT /routes/{name}/endpoints/{id}`
/// `scope` is a registrar caller's, on this route, its hosts and caps checked (`caller_may`).
pub(super) async fn put_endpoint<S: AdminStore>(store: &S, now: u64, who: &Principal, scope: Option<&registrar::RegistrarScope>, route: String, mut endpoint: Endpoint, lease_seconds: u64) -> Result<AdminReply> {
    let as_registrar = scope.is_some();
    // A registrar's lease is recorded as its own. An admin's write clears the record, so the
    // lease is the admins' from then on.
    if as_registrar {
        endpoint.registered_by = Some(who.subject.clone());
    }
    // Leases are the instances' own, so they may join Terraform-managed routes too.
    let r = store.route(&route).await?.ok_or_else(|| Error::NotFound(format!("no route `{route}`")))?;
    if r.endpoints.iter().any(|e| e.id == endpoint.id) {
        let why = format!("endpoint `{}` is defined by the route itself", endpoint.id);
        return Err(if as_registrar { Error::Forbidden(why) } else { Error::Conflict(why) });
    }
    let leases = store.leases(&route).await?;
    if let Some(scope) = scope {
        if leases.iter().any(|e| e.id == endpoint.id && !registrar::may_replace(&who.subject, e, now)) {
            return Err(Error::Forbidden(format!("lease `{}` on route `{route}` was registered by someone else", endpoint.id)));
        }
        let held = leases.iter().filter(|e| e.is_live(now) && e.id != endpoint.id && e.registered_by.as_deref() == Some(who.subject.as_str())).count();
        if held >= scope.max_endpoints as usize {
            return Err(Error::Forbidden(format!(
                "this registrar already holds {held} live endpoint(s) on route `{route}`, its most (registrar.max_endpoints)"
            )));
        }
    }
    let live = leases.iter().filter(|e| e.is_live(now) && e.id != endpoint.id).count();
    if r.endpoints.len() + live + 1 > crate::route::MAX_ENDPOINTS {
        return Err(Error::bad_request("id", "the route has too many endpoints"));
    }
    endpoint.lease_expires_at = Some(now + lease_seconds);
    store.put_lease(&route, &endpoint).await?;
    Ok(AdminReply::ok(json!({ "route": route, "endpoint": endpoint.id, "lease_expires_at": now + lease_seconds })))
}

/// `DELETE /routes/{name}/endpoints/{id}`
/// `scope` is a registrar caller's, on this route (`caller_may`).
pub(super) async fn delete_endpoint<S: AdminStore>(store: &S, who: &Principal, scope: Option<&registrar::RegistrarScope>, route: String, id: String) -> Result<AdminReply> {
    if scope.is_some() {
        // Someone else's lease is refused; one that does not exist answers 404 below, as for admins.
        if store.leases(&route).await?.iter().any(|e| e.id == id && !registrar::may_remove(&who.subject, e)) {
            return Err(Error::Forbidden(format!("lease `{id}` on route `{route}` was registered by someone else")));
        }
    }
    if store.delete_lease(&route, &id).await? {
        Ok(AdminReply::ok(json!({ "route": route, "deregistered": id })))
    } else {
        Err(Error::NotFound(format!("no leased endpoint `{id}` on route `{route}`")))
    }
}

/// `POST /ephemeral`
/// (Its content was checked by [`AdminCommand::validate`].)
pub(super) async fn create_ephemeral<S: AdminStore>(store: &S, now: u64, ids: &dyn IdSource, req: EphemeralRequest) -> Result<AdminReply> {
    let ttl = req.ttl_seconds.ok_or_else(|| Error::bad_request("ttl_seconds", "is required"))?;
    let id = ids.base32(10)?;
    debug_assert!(is_valid_ephemeral_id(&id));
    let route = req.route(id.clone(), now + ttl);
    store.put_ephemeral(&route).await?;
    Ok(AdminReply::with_status(StatusCode::CREATED, json!({ "id": id, "path": format!("/e/{id}/"), "expires_at": now + ttl })))
}
