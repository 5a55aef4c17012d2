//! What only Rust can check in `infra/`: the routes module renders routes into store entries that
//! `gateway-core` decodes and accepts (the examples' routes among them), and its variable
//! validations refuse what the core refuses, each with its own rule. Plus a few conventions read
//! straight from the files (descriptions, sensitive inputs, pinned providers).
//!
//! The rest is checked by HashiCorp's tools (`scripts/check-terraform.sh`): `terraform test` of each
//! module (`infra/modules/*/tests/*.tftest.hcl`: the rendered entries, every validation, the Lambda's
//! and the edge's resources with mock providers), `terraform fmt`/`validate`, every argument against
//! the providers' schemas, and the module READMEs' generated Inputs/Outputs tables.

use gateway_core::route::Route;
use gateway_infra_check::{attr, evaluate_module, label, nested, parse_file, tf_files, Evaluation, Failure, Module, Options};
use hcl::{Block, Map, Value};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn infra() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn dir(rel: &str) -> PathBuf {
    infra().join(rel)
}

/// Every Terraform module and example, relative to infra/.
const MODULE_DIRS: &[&str] = &[
    "modules/edge",
    "modules/lambda",
    "modules/routes",
    "modules/routes/edge",
    "modules/routes/lambda",
    "examples/edge",
    "examples/lambda",
];

/// JSON literal → HCL value (module inputs).
fn hv(v: serde_json::Value) -> Value {
    serde_json::from_value(v).unwrap()
}

/// HCL value → JSON (assertions).
fn js(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn inputs(v: serde_json::Value) -> Map<String, Value> {
    match hv(v) {
        Value::Object(o) => o,
        other => panic!("inputs must be an object, got {other}"),
    }
}

fn load(rel: &str) -> Module {
    Module::load(&dir(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn eval_ok(rel: &str, inp: serde_json::Value, opts: Options) -> Evaluation {
    evaluate_module(&dir(rel), &inputs(inp), opts).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

const STRICT: Options = Options { strict_types: true, skip_validation: false };

// ---------------------------------------------------------------------------------------------
// 1. conventions, read from the files
// ---------------------------------------------------------------------------------------------

fn all_variables() -> Vec<(PathBuf, Block)> {
    let mut out = Vec::new();
    for f in tf_files(&infra()).into_iter().filter(|f| !f.starts_with(infra().join("check"))) {
        let body = parse_file(&f).unwrap_or_else(|e| panic!("{e}"));
        for b in body.blocks().filter(|b| b.identifier() == "variable") {
            out.push((f.clone(), b.clone()));
        }
    }
    out
}

#[test]
fn every_variable_has_a_description() {
    let vars = all_variables();
    assert!(vars.len() >= 40, "expected the modules' variables, found {}", vars.len());
    let missing: Vec<String> = vars
        .iter()
        .filter(|(_, b)| {
            let d = attr(b.body(), "description").and_then(|e| gateway_infra_check::eval_const(e).ok());
            d.as_ref().and_then(Value::as_str).is_none_or(|s| s.trim().len() < 10)
        })
        .map(|(f, b)| format!("{}: variable {}", f.display(), label(b, 0)))
        .collect();
    assert!(missing.is_empty(), "variables without a real description:\n{}", missing.join("\n"));
}

#[test]
fn secret_looking_variables_are_sensitive_and_have_no_default_value() {
    // Names of secret values (`signing_keys`, `vllm_api_key`, `origin_secret`); not names of where
    // a secret is or of its version (`secrets_arn`, `kms_key_arn`, `secrets_version`).
    let re = regex::Regex::new("(?i)(^|_)(keys?|secrets?|tokens?|passwords?)$").unwrap();
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    for (f, b) in all_variables() {
        let name = label(&b, 0).to_string();
        let sensitive = matches!(attr(b.body(), "sensitive"), Some(hcl::Expression::Bool(true)));
        if re.is_match(&name) {
            checked.insert(name.clone());
            if !sensitive {
                problems.push(format!("{}: variable {name} must be sensitive = true", f.display()));
            }
        }
        if sensitive {
            if let Some(d) = attr(b.body(), "default") {
                let d = gateway_infra_check::eval_const(d).unwrap();
                let empty = match &d {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if !empty {
                    problems.push(format!("{}: sensitive variable {name} has a default value", f.display()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for expected in ["signing_keys", "upstream_api_keys", "vllm_api_key"] {
        assert!(checked.contains(expected), "variable {expected} was not seen by the check");
    }
}

#[test]
fn versions_pin_provider_majors_with_pessimistic_constraints() {
    let majors = [("cloudflare", "~> 5."), ("aws", "~> 6.")];
    for d in MODULE_DIRS {
        let m = load(d);
        let tf = m.blocks("terraform").next().unwrap_or_else(|| panic!("{d}: no terraform block"));
        let rv = attr(tf.body(), "required_version").and_then(|e| gateway_infra_check::eval_const(e).ok());
        assert!(rv.as_ref().and_then(Value::as_str).is_some_and(|s| s.starts_with(">= 1.")), "{d}: required_version {rv:?}");
        for rp in nested(tf.body(), "required_providers") {
            for a in rp.body().attributes() {
                let spec = js(&gateway_infra_check::eval_const(a.expr()).unwrap());
                let version = spec["version"].as_str().unwrap_or_else(|| panic!("{d}: provider {} unpinned", a.key()));
                assert!(version.starts_with("~> "), "{d}: provider {} must be pinned with ~>, is {version}", a.key());
                for (p, major) in majors {
                    if a.key() == p {
                        assert!(version.starts_with(major), "{d}: {p} must stay on {major}x, is {version}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_infra_readme_shows_every_step() {
    let top = std::fs::read_to_string(infra().join("README.md")).expect("infra/README.md");
    for step in [
        "cargo lambda build --release",
        "terraform init",
        "terraform apply",
        "wrangler deploy",
        "gatewayctl token mint --subject ops --groups admin --ttl 1h",
        "GATEWAY_SIGNING_KEYS",
        "kv_namespace_id",
    ] {
        assert!(top.contains(step), "infra/README.md does not show `{step}`");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. the routes module's store entries, from the examples, through gateway-core
// ---------------------------------------------------------------------------------------------

/// API.md's route object fields, exactly.
const ROUTE_FIELDS: [&str; 12] = [
    "affinity",
    "auth",
    "enabled",
    "endpoints",
    "forward_set_cookie",
    "host",
    "managed_by",
    "max_body_bytes",
    "name",
    "sandbox",
    "timeouts",
    "upstream_api_key_secret",
];

/// Decodes a stored route JSON with the core and checks it: valid, Terraform-managed, named
/// `name`, exactly API.md's fields, and nothing lost in the round trip.
fn check_route_json(text: &str, name: &str) -> Route {
    let route: Route = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: core cannot decode {text}: {e}"));
    route.validate().unwrap_or_else(|e| panic!("{name}: core refuses {text}: {e:?}"));
    assert_eq!(route.name, name);
    assert_eq!(route.managed_by.as_deref(), Some("terraform"));
    assert!(route.is_externally_managed());
    let raw: serde_json::Value = serde_json::from_str(text).unwrap();
    let fields: Vec<&str> = raw.as_object().unwrap().keys().map(String::as_str).collect();
    // `rate_limit_rpm` is optional and written only when set.
    let mut sorted: Vec<&str> = fields.iter().copied().filter(|f| *f != "rate_limit_rpm").collect();
    sorted.sort();
    assert_eq!(sorted, ROUTE_FIELDS, "{name}: fields of the stored route");
    for e in raw["endpoints"].as_array().unwrap() {
        for k in e.as_object().unwrap().keys() {
            assert!(["id", "url", "weight", "via"].contains(&k.as_str()), "endpoint field {k}");
        }
        assert!(e.get("via").is_none_or(|v| v.is_string()), "via is left out when unset, not null");
    }
    // Numbers compare as numbers: Terraform writes a factor of 0 as `0`, the core as `0.0`.
    fn numbers_as_floats(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Number(n) => json!(n.as_f64()),
            serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(numbers_as_floats).collect()),
            serde_json::Value::Object(o) => serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_floats(v))).collect()),
            other => other,
        }
    }
    assert_eq!(numbers_as_floats(serde_json::to_value(&route).unwrap()), numbers_as_floats(raw), "{name}: core re-encodes the route differently");
    route
}

/// The example route: a vLLM pool of two endpoints, session affinity by header, an internal
/// group and a partner group, and an upstream key by name.
fn check_example_route(route: &Route) {
    assert_eq!(route.endpoints.len(), 2);
    assert!(route.endpoints.iter().all(|e| e.url.starts_with("http://10.")), "private vLLM hosts");
    assert_eq!(route.affinity.header.as_deref(), Some("x-session-id"));
    assert!(route.auth.required);
    assert!(route.auth.groups.iter().any(|g| g == "ml-team"), "internal group");
    assert!(route.auth.groups.iter().any(|g| g.starts_with("partner-")), "partner group");
    assert_eq!(route.upstream_api_key_secret.as_deref(), Some("VLLM_API_KEY"));
}

/// A local of an example's main.tf (`routes`, `vllm_pools`), as JSON, evaluated with the example's
/// variable defaults and `given` for its required variables.
fn example_local(example: &str, name: &str, given: serde_json::Value) -> serde_json::Value {
    let m = load(example);
    let mut vars = Map::new();
    for v in m.blocks("variable") {
        if let Some(d) = attr(v.body(), "default").and_then(|d| gateway_infra_check::eval_const(d).ok()) {
            vars.insert(label(v, 0).to_string(), d);
        }
    }
    vars.extend(inputs(given));
    let mut ctx = gateway_infra_check::context();
    ctx.declare_var("var", Value::Object(vars));
    let e = m.blocks("locals").find_map(|b| attr(b.body(), name)).unwrap_or_else(|| panic!("{example}: no local {name}"));
    js(&gateway_infra_check::eval(e, &ctx).unwrap_or_else(|err| panic!("{example}: local.{name} did not evaluate: {err}")))
}

#[test]
fn edge_example_routes_become_kv_entries_the_core_accepts() {
    let example_routes = example_local("examples/edge", "routes", json!({"model_hostname": "llama.models.example.com"}));
    let ev = eval_ok("modules/routes", json!({"routes": example_routes}), STRICT);
    let kv = js(&ev.outputs["kv_entries"]);
    let mut seen_routes = BTreeSet::new();
    let mut hosts = 0;
    for (key, value) in kv.as_object().unwrap() {
        let value = value.as_str().unwrap();
        if let Some(name) = key.strip_prefix("route:") {
            let route = check_route_json(value, name);
            check_example_route(&route);
            assert!(route.endpoints.iter().all(|e| e.via.is_some()));
            assert_eq!(route.endpoints.iter().map(|e| e.weight).collect::<Vec<_>>(), vec![2, 1]);
            seen_routes.insert(name.to_string());
        } else if let Some(host) = key.strip_prefix("host:") {
            assert_eq!(example_routes[value]["host"], host, "host:{host} names the route that has that host");
            hosts += 1;
        } else {
            panic!("unexpected KV key {key}");
        }
    }
    let expected: BTreeSet<String> = example_routes.as_object().unwrap().keys().cloned().collect();
    assert_eq!(seen_routes, expected);
    assert_eq!(hosts, 1);

    // Each endpoint goes through a VPC service the example creates.
    let bindings: BTreeSet<String> = example_local("examples/edge", "vllm_pools", json!({}))
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["services"].as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .collect();
    let mut vias = 0;
    for r in example_routes.as_object().unwrap().values() {
        for e in r["endpoints"].as_array().unwrap() {
            let via = e["via"].as_str().expect("edge example endpoints go through a VPC service");
            assert!(bindings.contains(via), "via {via} names no VPC service");
            vias += 1;
        }
    }
    assert_eq!(vias, 2);
}

#[test]
fn lambda_example_routes_become_table_items_the_core_accepts() {
    let example_routes = example_local("examples/lambda", "routes", json!({}));
    let ev = eval_ok("modules/routes", json!({"routes": example_routes}), STRICT);
    let items = js(&ev.outputs["dynamodb_items"]);
    assert_eq!(items.as_object().unwrap().len(), 1);
    for (key, item) in items.as_object().unwrap() {
        let item: serde_json::Value = serde_json::from_str(item.as_str().unwrap()).unwrap();
        assert_eq!(item["entity"]["S"], key.as_str(), "for_each is keyed by the partition key, so a rename replaces the item");
        assert_eq!(item["item"]["S"], "def");
        let name = key.strip_prefix("route#").expect("only route items: the Lambda example has no host route");
        let route = check_route_json(item["route"]["S"].as_str().unwrap(), name);
        check_example_route(&route);
        assert!(route.endpoints.iter().all(|e| e.via.is_none()), "the Lambda ignores via; the example sets none");
        assert_eq!(item.as_object().unwrap().len(), 3, "entity, item, route");
    }
}

/// What the routes module writes, with the values (route and budget JSON) as placeholders and
/// DynamoDB's `{"S": …}` unwrapped: the shape of `layout.golden.json`.
fn rendered_layout(ev: &Evaluation) -> serde_json::Value {
    let mut kv = js(&ev.outputs["kv_entries"]);
    for (key, value) in kv.as_object_mut().unwrap() {
        if key.starts_with(gateway_core::schema::kv::ROUTE_PREFIX) {
            *value = json!("<route JSON>");
        } else if key.starts_with(gateway_core::schema::kv::BUDGET_PREFIX) {
            *value = json!("<budget JSON>");
        }
    }
    let mut items = serde_json::Map::new();
    for (key, raw) in js(&ev.outputs["dynamodb_items"]).as_object().unwrap() {
        let item: serde_json::Value = serde_json::from_str(raw.as_str().unwrap()).unwrap();
        let mut flat = serde_json::Map::new();
        for (attr, v) in item.as_object().unwrap() {
            let v = v["S"].as_str().unwrap_or_else(|| panic!("{key}.{attr} is a string attribute"));
            let v = match attr.as_str() {
                gateway_core::schema::dynamo::ROUTE_ATTR => "<route JSON>",
                gateway_core::schema::dynamo::BUDGET_ATTR => "<budget JSON>",
                _ => v,
            };
            flat.insert(attr.clone(), json!(v));
        }
        items.insert(key.clone(), serde_json::Value::Object(flat));
    }
    json!({ "kv_entries": kv, "dynamodb_items": items })
}

#[test]
fn the_routes_module_writes_the_layout_the_core_owns() {
    use gateway_core::schema::{GOLDEN_BUDGETS, GOLDEN_ROUTES};
    let mut routes = serde_json::Map::new();
    for r in GOLDEN_ROUTES {
        routes.insert(r.name.into(), json!({"host": r.host, "models": r.models, "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}]}));
    }
    let budgets: serde_json::Map<String, serde_json::Value> = GOLDEN_BUDGETS.iter().map(|b| (b.to_string(), json!({"tokens_per_day": 1000}))).collect();
    let ev = eval_ok("modules/routes", json!({"routes": routes, "budgets": budgets}), STRICT);
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("modules/routes/tests/layout.golden.json")).expect("the golden layout core writes")).unwrap();
    assert_eq!(rendered_layout(&ev), golden, "infra/modules/routes and gateway_core::schema disagree on the storage layout");
}

#[test]
fn host_routes_become_host_items_for_the_lambda() {
    let routes = json!({
        "llama": {"host": "llama.models.example.com", "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}]},
        "qwen": {"endpoints": [{"id": "a", "url": "https://qwen.internal:8443/v1", "weight": 1000}]},
    });
    let ev = eval_ok("modules/routes", json!({"routes": routes}), STRICT);
    let items = js(&ev.outputs["dynamodb_items"]);
    let keys: BTreeSet<&str> = items.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["host#llama.models.example.com", "route#llama", "route#qwen"].into_iter().collect());
    let host: serde_json::Value = serde_json::from_str(items["host#llama.models.example.com"].as_str().unwrap()).unwrap();
    assert_eq!(host, json!({"entity": {"S": "host#llama.models.example.com"}, "item": {"S": "def"}, "route_name": {"S": "llama"}}));
    let kv = js(&ev.outputs["kv_entries"]);
    assert_eq!(kv["host:llama.models.example.com"], "llama");
    let llama = check_route_json(kv["route:llama"].as_str().unwrap(), "llama");
    assert_eq!(llama.host.as_deref(), Some("llama.models.example.com"));
    // Defaults match the core's: auth required, x-session-id, weight 1, 2 s / 300 s, 10 MiB.
    assert_eq!(llama, {
        let mut r = Route::new("llama", vec![gateway_core::route::Endpoint::new("a", "http://10.0.1.5:8000")]);
        r.host = Some("llama.models.example.com".into());
        r.managed_by = Some("terraform".into());
        r
    });
    check_route_json(kv["route:qwen"].as_str().unwrap(), "qwen");

    // Renaming a route changes every key the for_each uses: the old entries are destroyed.
    let renamed = json!({"routes": {"llama-v2": {"host": "llama.models.example.com", "endpoints": []}}});
    let ev2 = eval_ok("modules/routes", renamed, STRICT);
    let kv2 = js(&ev2.outputs["kv_entries"]);
    assert!(kv2.get("route:llama").is_none() && kv2.get("route:llama-v2").is_some());
    assert_eq!(kv2["host:llama.models.example.com"], "llama-v2");
}

// ---------------------------------------------------------------------------------------------
// 3. the routes module's validations against the core's
// ---------------------------------------------------------------------------------------------

fn render(routes: &serde_json::Value, skip_validation: bool) -> Result<Evaluation, Failure> {
    evaluate_module(
        &dir("modules/routes"),
        &inputs(json!({"routes": routes})),
        Options { strict_types: true, skip_validation },
    )
}

fn one_route(name: &str, route: serde_json::Value) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert(name.to_string(), route);
    serde_json::Value::Object(m)
}

fn pool() -> serde_json::Value {
    json!([
        {"id": "gpu-a", "url": "http://10.0.1.5:8000", "weight": 2},
        {"id": "gpu-b", "url": "http://10.0.1.6:8000", "weight": 1},
    ])
}

#[test]
fn good_routes_pass_both_terraform_and_core_validation() {
    let long = "a".repeat(63);
    let cases = vec![
        ("llama-prod", json!({"endpoints": pool(), "auth": {"groups": ["ml-team", "partner-acme"]}})),
        ("a", json!({})),
        ("0", json!({"endpoints": [{"id": "x", "url": "https://vllm.internal/prefix/v1"}]})),
        (long.as_str(), json!({"enabled": false})),
        ("public", json!({"auth": {"required": false}, "endpoints": [{"id": "v6", "url": "http://[fd00::1]:8000"}]})),
        ("cookie", json!({"affinity": {"header": "X-Conversation", "cookie": "sid"}, "endpoints": pool()})),
        ("balanced", json!({"affinity": {"fallback": "prefix", "balance_factor": 1.5}, "endpoints": pool()})),
        ("unbounded", json!({"affinity": {"fallback": "none", "balance_factor": 0}, "endpoints": pool()})),
        ("hosted", json!({"host": "llama.models.example.com", "endpoints": pool(), "upstream_api_key_secret": "VLLM_API_KEY_2"})),
        ("limits", json!({"timeouts": {"connect_ms": 60000, "response_ms": 3600000}, "max_body_bytes": 1073741824})),
        ("via", json!({"endpoints": [{"id": "a", "url": "http://10.0.0.1:65535", "weight": 1000, "via": "VLLM_A"}]})),
        ("partner-group", json!({"auth": {"groups": ["partner:acme.corp", "desk-infrastructure-team-members"]}})),
    ];
    for (name, route) in cases {
        let routes = one_route(name, route);
        let ev = render(&routes, false).unwrap_or_else(|e| panic!("{name}: Terraform refuses a good route: {e}"));
        let json = js(&ev.outputs["route_json"]);
        check_route_json(json[name].as_str().unwrap(), name);
    }
}

#[test]
fn routes_the_core_refuses_are_refused_by_the_module_validation() {
    let long = "a".repeat(64);
    let ep = |e: serde_json::Value| json!({"endpoints": [e]});
    // (what, route name, route, a fragment of the error message of the rule that must refuse it)
    let cases: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        ("bad name", "Bad_Name", json!({}), "Route names"),
        ("reserved e", "e", json!({}), "Route names"),
        ("reserved _ prefix", "_x", json!({}), "Route names"),
        ("leading dash", "-a", json!({}), "Route names"),
        ("64 characters", long.as_str(), json!({}), "Route names"),
        ("zero weight", "w0", ep(json!({"id": "a", "url": "http://10.0.0.1:8000", "weight": 0})), "weights"),
        ("weight over 1000", "w1001", ep(json!({"id": "a", "url": "http://10.0.0.1:8000", "weight": 1001})), "weights"),
        ("gateway's own key", "own", json!({"upstream_api_key_secret": "GATEWAY_SIGNING_KEYS"}), "upstream_api_key_secret must NAME"),
        ("the Lambda role's credentials", "aws", json!({"upstream_api_key_secret": "AWS_SECRET_ACCESS_KEY"}), "upstream_api_key_secret must NAME"),
        ("key value instead of name", "val", json!({"upstream_api_key_secret": "sk-live-0123456789abcdef"}), "upstream_api_key_secret must NAME"),
        ("ftp url", "ftp", ep(json!({"id": "a", "url": "ftp://10.0.0.1/"})), "Endpoint urls"),
        ("credentials in url", "creds", ep(json!({"id": "a", "url": "http://user:pw@10.0.0.1:8000"})), "Endpoint urls"),
        ("query in url", "query", ep(json!({"id": "a", "url": "http://10.0.0.1:8000/v1?api_key=abc"})), "Endpoint urls"),
        ("no host in url", "nohost", ep(json!({"id": "a", "url": "http:///v1"})), "Endpoint urls"),
        ("bad endpoint id", "epid", ep(json!({"id": "a b", "url": "http://10.0.0.1:8000"})), "Endpoint ids must match"),
        (
            "duplicate endpoint ids",
            "dup",
            json!({"endpoints": [{"id": "a", "url": "http://10.0.0.1:8000"}, {"id": "a", "url": "http://10.0.0.2:8000"}]}),
            "unique within a route",
        ),
        ("uppercase host", "host", json!({"host": "Llama.example.com"}), "lowercase DNS name"),
        ("bad via", "via", ep(json!({"id": "a", "url": "http://10.0.0.1:8000", "via": "vllm-a"})), "`via`"),
        ("bad group", "group", json!({"auth": {"groups": ["ml team"]}}), "Groups must match"),
        ("bad cookie", "cookie", json!({"affinity": {"cookie": "a;b"}}), "affinity cookie"),
        ("bad fallback", "fb", json!({"affinity": {"fallback": "sometimes"}}), "affinity.fallback"),
        ("factor under one", "bf", json!({"affinity": {"balance_factor": 0.5}}), "affinity.balance_factor"),
        ("zero connect timeout", "t0", json!({"timeouts": {"connect_ms": 0}}), "timeouts.connect_ms"),
        ("response timeout over an hour", "t1", json!({"timeouts": {"response_ms": 3600001}}), "timeouts.connect_ms"),
        ("idle timeout under a second", "i0", json!({"timeouts": {"idle_ms": 999}}), "timeouts.idle_ms"),
        ("zero rate limit", "r0", json!({"rate_limit_rpm": 0}), "rate_limit_rpm"),
        ("fractional rate limit", "r1", json!({"rate_limit_rpm": 1.5}), "rate_limit_rpm"),
        ("zero body limit", "b0", json!({"max_body_bytes": 0}), "max_body_bytes"),
        ("body limit over 1 GiB", "b1", json!({"max_body_bytes": 1073741825}), "max_body_bytes"),
    ];
    let mut checked = 0;
    for (what, name, route, rule) in cases {
        let routes = one_route(name, route);
        match render(&routes, false) {
            Err(Failure::Validation(v)) => {
                assert!(v.iter().all(|(_, var, _)| var == "routes"), "{what}: {v:?}");
                assert!(v.iter().any(|(_, _, msg)| msg.contains(rule)), "{what}: not refused by the {rule:?} rule but {v:?}");
            }
            Err(Failure::Error(e)) => panic!("{what}: a validation did not evaluate: {e}"),
            Ok(_) => panic!("{what}: Terraform accepts a route the core refuses"),
        }
        // The same input, rendered without validation, is refused by the core.
        let ev = render(&routes, true).unwrap_or_else(|e| panic!("{what}: {e}"));
        let text = js(&ev.outputs["route_json"])[name].as_str().unwrap().to_string();
        // Refused when decoded (a fractional count) or when validated.
        let refused = serde_json::from_str::<Route>(&text).map_or(true, |route| route.validate().is_err());
        assert!(refused, "{what}: the core accepts {text}");
        checked += 1;
    }
    assert_eq!(checked, 29);
}
