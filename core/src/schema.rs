//! The storage layout, owned here: every key the gateway reads or writes in Workers KV
//! ([`kv`]) and in the DynamoDB table ([`dynamo`]), and what Terraform's routes module
//! writes into each ([`terraform_layout`]). The adapters build keys only through these
//! functions; `infra/modules/routes/tests/layout.golden.json` is [`terraform_layout`] of a
//! fixture, and the infra checks compare what the module renders against it, so the
//! module and the gateway cannot drift apart.

use serde_json::{json, Value};

/// Workers KV keys (the edge).
pub mod kv {
    /// A static route's JSON. Terraform writes these too.
    pub fn route_key(name: &str) -> String {
        format!("{ROUTE_PREFIX}{name}")
    }
    /// Prefix of every static route's key.
    pub const ROUTE_PREFIX: &str = "route:";
    /// A host binding: the name of the route that host serves. Terraform writes these too.
    pub fn host_key(host: &str) -> String {
        format!("host:{host}")
    }
    /// A route's leased endpoints (JSON map by endpoint id).
    pub fn leases_key(name: &str) -> String {
        format!("leases:{name}")
    }
    /// An ephemeral route's JSON.
    pub fn ephemeral_key(id: &str) -> String {
        format!("eph:{id}")
    }
    /// A token's revocation.
    pub fn revoked_key(jti: &str) -> String {
        format!("revoked:{jti}")
    }
    /// A subject's revocation (its value: when, in unix seconds).
    pub fn revoked_subject_key(subject: &str) -> String {
        format!("revoked-subject:{subject}")
    }
    /// A route's endpoints that health probes found down (JSON list).
    pub fn down_key(route: &str) -> String {
        format!("down:{route}")
    }
    /// A route's endpoint load readings (vLLM's `/metrics`, every few seconds).
    pub fn load_key(route: &str) -> String {
        format!("load:{route}")
    }
    /// A token budget (`{kind}/{id}`, [`crate::budget`]). Terraform writes these too.
    pub fn budget_key(key: &str) -> String {
        format!("{BUDGET_PREFIX}{key}")
    }
    /// Prefix of every budget's key.
    pub const BUDGET_PREFIX: &str = "budget:";
    /// The name of the route serving a model under `/v1/`. Terraform writes these too.
    pub fn model_key(model: &str) -> String {
        format!("{MODEL_PREFIX}{model}")
    }
    /// Prefix of every model's key.
    pub const MODEL_PREFIX: &str = "model:";
    /// An identity provider's keys as an isolate fetched them ([`crate::jwks::Shelved`]), shared
    /// with the other isolates.
    pub fn jwks_key(provider: &str) -> String {
        format!("jwks:{provider}")
    }
}

/// DynamoDB items (the Lambda): partition key `entity`, sort key `item`, TTL attribute `ttl`.
pub mod dynamo {
    /// The partition key.
    pub const PK: &str = "entity";
    /// The sort key.
    pub const SK: &str = "item";
    /// The TTL attribute.
    pub const TTL: &str = "ttl";
    /// The sort key of an entity's one definition item.
    pub const DEF: &str = "def";
    /// A static route: `route#{name}` / [`DEF`] with `route` (JSON). Terraform writes these too.
    pub fn route_entity(name: &str) -> String {
        format!("{ROUTE_PREFIX}{name}")
    }
    /// Prefix of every static route's partition.
    pub const ROUTE_PREFIX: &str = "route#";
    /// A leased endpoint's sort key under its route's partition.
    pub fn lease_item(id: &str) -> String {
        format!("lease#{id}")
    }
    /// A host binding: `host#{host}` / [`DEF`] with `route_name`. Terraform writes these too.
    pub fn host_entity(host: &str) -> String {
        format!("host#{host}")
    }
    /// An ephemeral route: `eph#{id}` / [`DEF`] with `route` (JSON) and `ttl`.
    pub fn ephemeral_entity(id: &str) -> String {
        format!("eph#{id}")
    }
    /// A token: `token#{id}` / [`DEF`] (its record) and / `revoked`.
    pub fn token_entity(id: &str) -> String {
        format!("token#{id}")
    }
    /// A subject's revocation: `subject#{subject}` / `revoked`.
    pub fn subject_entity(subject: &str) -> String {
        format!("subject#{subject}")
    }
    /// The counts of a budget's windows.
    pub fn budget_use_entity(key: &str) -> String {
        format!("bused#{key}")
    }
    /// Model routing's index: `models` / `{model}` with `route_name`, one partition. Terraform writes these too.
    pub const MODELS: &str = "models";
    /// Token budgets: `budgets` / `{kind}/{id}` with `budget` (JSON), one partition. Terraform writes these too.
    pub const BUDGETS: &str = "budgets";
    /// Service accounts: `svc` / `{name}`.
    pub const SERVICE_ACCOUNT: &str = "svc";
    /// What [`crate::managed::sync`] last saw of each route: `seen` / `{route}`.
    pub const SEEN: &str = "seen";
    /// Metric totals (`route:…`, `ep:…`, `tok:…`).
    pub const METRIC: &str = "metric";
    /// Metric minute buckets (`m:…`), which expire.
    pub const METRIC_MINUTE: &str = "metric-m";
    /// Attribute holding a route's JSON.
    pub const ROUTE_ATTR: &str = "route";
    /// Attribute holding a route's name.
    pub const ROUTE_NAME_ATTR: &str = "route_name";
    /// Attribute holding a budget's JSON.
    pub const BUDGET_ATTR: &str = "budget";
}

/// A route as Terraform's routes module takes it, as far as the layout goes.
#[derive(Debug, Clone, Copy)]
pub struct ManagedRoute<'a> {
    /// Route name.
    pub name: &'a str,
    /// Its host, if bound to one.
    pub host: Option<&'a str>,
    /// The models it serves under `/v1/`.
    pub models: &'a [&'a str],
}

/// Where Terraform's routes module puts `routes` and `budgets` (by `{kind}/{id}` key): the
/// Workers KV keys with what each holds, and the DynamoDB items by their `for_each` key with
/// their key attributes and the one attribute that holds the value. `"<route JSON>"` and
/// `"<budget JSON>"` stand for the values, which the infra checks test against the core's types.
pub fn terraform_layout(routes: &[ManagedRoute<'_>], budgets: &[&str]) -> Value {
    let mut kv_entries = serde_json::Map::new();
    let mut items = serde_json::Map::new();
    let item = |entity: &str, sort: &str, attr: &str, value: &str| json!({ dynamo::PK: entity, dynamo::SK: sort, attr: value });
    for r in routes {
        kv_entries.insert(kv::route_key(r.name), json!("<route JSON>"));
        let e = dynamo::route_entity(r.name);
        items.insert(e.clone(), item(&e, dynamo::DEF, dynamo::ROUTE_ATTR, "<route JSON>"));
        if let Some(host) = r.host {
            kv_entries.insert(kv::host_key(host), json!(r.name));
            let e = dynamo::host_entity(host);
            items.insert(e.clone(), item(&e, dynamo::DEF, dynamo::ROUTE_NAME_ATTR, r.name));
        }
        for m in r.models {
            kv_entries.insert(kv::model_key(m), json!(r.name));
            items.insert(format!("{}#{m}", dynamo::MODELS), item(dynamo::MODELS, m, dynamo::ROUTE_NAME_ATTR, r.name));
        }
    }
    for b in budgets {
        kv_entries.insert(kv::budget_key(b), json!("<budget JSON>"));
        items.insert(format!("{}#{b}", dynamo::BUDGETS), item(dynamo::BUDGETS, b, dynamo::BUDGET_ATTR, "<budget JSON>"));
    }
    json!({ "kv_entries": kv_entries, "dynamodb_items": items })
}

/// The fixture of `infra/modules/routes/tests/layout.golden.json`.
pub const GOLDEN_ROUTES: [ManagedRoute<'static>; 2] = [
    ManagedRoute { name: "llama", host: Some("llama.models.example.com"), models: &["meta-llama/Llama-3.1-8B-Instruct"] },
    ManagedRoute { name: "qwen", host: None, models: &[] },
];
/// The budgets of the golden fixture.
pub const GOLDEN_BUDGETS: [&str; 1] = ["contracts/acme-2026"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_layout_is_the_schemas() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/modules/routes/tests/layout.golden.json");
        let want = serde_json::to_string_pretty(&terraform_layout(&GOLDEN_ROUTES, &GOLDEN_BUDGETS)).unwrap() + "\n";
        if std::env::var_os("GATEWAY_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(have, want, "the storage layout changed: rerun with GATEWAY_BLESS=1, then make infra/modules/routes write the same");
    }

    #[test]
    fn keys_keep_their_shape() {
        assert_eq!(kv::route_key("a"), "route:a");
        assert_eq!(kv::model_key("m/x"), "model:m/x");
        assert_eq!(dynamo::route_entity("a"), "route#a");
        assert_eq!(dynamo::lease_item("e1"), "lease#e1");
        assert!(kv::route_key("a").starts_with(kv::ROUTE_PREFIX) && kv::budget_key("t/x").starts_with(kv::BUDGET_PREFIX));
    }
}
