//! A builder for the route JSON the admin API takes (`PUT /_gateway/routes/{name}`), so a
//! test says only what its route changes: `RouteJson::new().endpoint("a", url)` is a route
//! over one endpoint that needs group `ml-team`, as most cases want.

use serde_json::{json, Value};

/// A route's JSON body, built field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteJson(Value);

impl Default for RouteJson {
    fn default() -> Self {
        RouteJson::new()
    }
}

impl RouteJson {
    /// No endpoints yet; auth required, group `ml-team`.
    pub fn new() -> RouteJson {
        RouteJson(json!({"endpoints": [], "auth": {"required": true, "groups": ["ml-team"]}}))
    }

    /// Adds endpoint `id` at `url` (weight 1).
    pub fn endpoint(mut self, id: &str, url: impl std::fmt::Display) -> RouteJson {
        self.push(json!({"id": id, "url": url.to_string(), "weight": 1}));
        self
    }

    /// Adds an endpoint given whole (a weight, `via`…).
    pub fn endpoint_json(mut self, endpoint: Value) -> RouteJson {
        self.push(endpoint);
        self
    }

    /// Open to anyone: `auth.required` false, no groups.
    pub fn public(mut self) -> RouteJson {
        self.0["auth"] = json!({"required": false});
        self
    }

    /// Callers need one of `groups` instead of `ml-team`.
    pub fn groups(mut self, groups: &[&str]) -> RouteJson {
        self.0["auth"] = json!({"required": true, "groups": groups});
        self
    }

    /// Sets any other field (`models`, `affinity`, `timeouts`, `host`…).
    pub fn with(mut self, field: &str, value: Value) -> RouteJson {
        self.0[field] = value;
        self
    }

    /// The JSON body.
    pub fn json(self) -> Value {
        self.0
    }

    fn push(&mut self, endpoint: Value) {
        // `new` made the array; nothing else replaces it.
        if let Some(a) = self.0["endpoints"].as_array_mut() {
            a.push(endpoint);
        }
    }
}

impl From<RouteJson> for Value {
    fn from(r: RouteJson) -> Value {
        r.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_says_only_what_it_changes() {
        let r = RouteJson::new().endpoint("a", "http://127.0.0.1:9").with("models", json!(["m"])).json();
        assert_eq!(r, json!({"endpoints": [{"id": "a", "url": "http://127.0.0.1:9", "weight": 1}], "auth": {"required": true, "groups": ["ml-team"]}, "models": ["m"]}));
        let p = RouteJson::new().public().endpoint_json(json!({"id": "v", "url": "http://h", "via": "VPC"})).json();
        assert_eq!(p, json!({"endpoints": [{"id": "v", "url": "http://h", "via": "VPC"}], "auth": {"required": false}}));
        assert_eq!(RouteJson::new().groups(&["other-team"]).json()["auth"], json!({"required": true, "groups": ["other-team"]}));
        // Parsed by the gateway's own route type, it is the route meant.
        let route: gateway_core::route::Route = serde_json::from_value(RouteJson::new().endpoint("a", "http://10.0.0.1:8000").with("name", json!("r")).json()).unwrap();
        assert_eq!((route.endpoints.len(), route.auth.groups.clone()), (1, vec!["ml-team".to_string()]));
    }
}
