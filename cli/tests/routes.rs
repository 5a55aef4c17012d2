//! `routes diff -f DIR` and `routes apply -f DIR` against a gateway that holds
//! two routes: one the directory changes, one it does not hold.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A route as the gateway lists it: every default filled in by core's route type.
fn listed(name: &str, url: &str, groups: &[&str]) -> Value {
    let body = json!({"name": name, "endpoints": [{"id": "a", "url": url}], "auth": {"required": true, "groups": groups}});
    let route: gateway_core::route::Route = serde_json::from_value(body).expect("route");
    let v = serde_json::to_value(route).expect("json");
    assert!(v.get("timeouts").is_some() && v.get("enabled").is_some(), "defaults are filled in: {v}");
    v
}

fn gateway() -> Server {
    Server::start(Duration::from_secs(30), |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/_gateway/routes") => json(
            200,
            json!({"routes": [listed("llama", "http://10.0.1.5:8000", &["ml-team"]), listed("old", "http://10.0.1.9:8000", &[]), listed("same", "http://10.0.2.1:8000", &["g"])], "next_cursor": null}),
        ),
        ("PUT", _) => json(200, r.json()),
        ("DELETE", _) => (204, "application/json", String::new()),
        _ => json(404, json!({"error": {"message": "no", "type": "invalid_request_error", "code": "not_found"}})),
    })
}

/// A directory changing `llama`, adding `qwen`, repeating `same` as it is, and lacking `old`.
fn routes_dir() -> (TempDir, Value, Value) {
    let dir = TempDir::new("routes");
    let llama = json!({"name": "llama", "endpoints": [{"id": "a", "url": "http://10.0.1.6:8000"}], "auth": {"groups": ["ml-team", "partner"]}});
    let qwen = json!({"name": "qwen", "endpoints": [{"id": "q", "url": "http://10.0.3.1:8000", "weight": 2}], "auth": {"required": true, "groups": ["ml-team"]}});
    let same = json!({"name": "same", "endpoints": [{"id": "a", "url": "http://10.0.2.1:8000"}], "auth": {"groups": ["g"]}});
    std::fs::write(dir.path().join("llama.json"), serde_json::to_string_pretty(&llama).unwrap()).unwrap();
    std::fs::write(dir.path().join("qwen.json"), qwen.to_string()).unwrap();
    std::fs::write(dir.path().join("same.json"), same.to_string()).unwrap();
    std::fs::write(dir.path().join("README.md"), "not a route").unwrap();
    (dir, llama, qwen)
}

#[test]
fn diff_prints_field_level_changes_and_sends_nothing() {
    let s = gateway();
    let (dir, _, _) = routes_dir();
    let d = dir.path().to_str().unwrap();
    let o = run(&s.base, &["routes", "diff", "-f", d]);
    expect_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "~ route llama (changed)",
            r#"    - auth.groups: ["ml-team"]"#,
            r#"    + auth.groups: ["ml-team","partner"]"#,
            r#"    - endpoints[a].url: "http://10.0.1.5:8000""#,
            r#"    + endpoints[a].url: "http://10.0.1.6:8000""#,
            "  route old kept: not in the directory; --prune deletes it",
            "+ route qwen (new)",
            r#"    + auth.groups: ["ml-team"]"#,
            "    + auth.required: true",
            r#"    + endpoints[q].id: "q""#,
            r#"    + endpoints[q].url: "http://10.0.3.1:8000""#,
            "    + endpoints[q].weight: 2",
            r#"    + name: "qwen""#,
            "1 to create, 1 to change, 0 to delete, 1 unchanged",
        ],
        "{out}"
    );
    let o = run(&s.base, &["routes", "diff", "-f", d, "--prune", "--exit-code"]);
    expect_code(&o, 3);
    assert!(stdout(&o).contains("- route old (deleted: not in the directory)"), "{}", stdout(&o));
    assert!(s.calls().iter().all(|(m, _)| m == "GET"), "diff only reads: {:?}", s.calls());
}

#[test]
fn apply_puts_new_and_changed_routes_and_prunes_only_when_asked() {
    let s = gateway();
    let (dir, llama, qwen) = routes_dir();
    let d = dir.path().to_str().unwrap();
    let o = run(&s.base, &["routes", "apply", "-f", d]);
    expect_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("updated route llama\n") && out.contains("created route qwen\n") && out.contains("kept route old"), "{out}");
    assert!(out.ends_with("1 created, 1 updated, 0 deleted, 1 unchanged\n"), "{out}");
    let writes: Vec<Seen> = s.seen().into_iter().filter(|r| r.method != "GET").collect();
    assert_eq!(writes.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect::<Vec<_>>(), [("PUT", "/_gateway/routes/llama"), ("PUT", "/_gateway/routes/qwen")]);
    assert_eq!(writes[0].json(), llama, "the file's body, as written");
    assert_eq!(writes[1].json(), qwen);

    s.clear();
    let o = run(&s.base, &["routes", "apply", "-f", d, "--prune"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("deleted route old"), "{}", stdout(&o));
    let writes: Vec<(String, String)> = s.calls().into_iter().filter(|(m, _)| m != "GET").collect();
    assert!(writes.contains(&("DELETE".into(), "/_gateway/routes/old".into())), "{writes:?}");
    assert!(!writes.iter().any(|(m, p)| m == "DELETE" && p != "/_gateway/routes/old"), "{writes:?}");
}

#[test]
fn bad_directories_fail_before_any_write() {
    let s = gateway();
    let dir = TempDir::new("routes-bad");
    std::fs::write(dir.path().join("a.json"), r#"{"name": "Not A Name"}"#).unwrap();
    let o = run(&s.base, &["routes", "apply", "-f", dir.path().to_str().unwrap()]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("a.json") && stderr(&o).contains("invalid `name`"), "{}", stderr(&o));
    let empty = TempDir::new("routes-empty");
    let o = run(&s.base, &["routes", "apply", "-f", empty.path().to_str().unwrap(), "--prune"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("refusing to prune every route"), "{}", stderr(&o));
    let o = run(&s.base, &["routes", "diff", "-f", "/nonexistent/dir"]);
    expect_code(&o, 1);
    assert!(s.calls().iter().all(|(m, _)| m == "GET"), "{:?}", s.calls());
}

#[test]
fn put_from_options_carries_models_and_usage() {
    let s = gateway();
    let args = ["routes", "put", "llama", "--endpoint", "a=http://10.0.1.5:8000", "--groups", "ml-team", "--model", "meta-llama/Llama-3.1-8B-Instruct", "--model", "llama,v2", "--usage", "always"];
    let o = run(&s.base, &args);
    expect_code(&o, 0);
    let seen = s.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("PUT", "/_gateway/routes/llama"));
    let body = seen[0].json();
    assert_eq!(
        body,
        json!({"endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}], "auth": {"required": true, "groups": ["ml-team"]},
               "models": ["meta-llama/Llama-3.1-8B-Instruct", "llama,v2"], "usage": "always"}),
        "each --model is one name, commas and all"
    );
    // Core takes it as the route it means.
    let cmd = gateway_core::admin::AdminCommand::parse(&http::Method::PUT, &["routes".into(), "llama".into()], None, body.to_string().as_bytes()).expect("core accepts it");
    let gateway_core::admin::AdminCommand::PutRoute(route) = cmd else { panic!("not a route") };
    assert_eq!((route.models.len(), route.usage), (2, gateway_core::usage::UsageMode::Always));

    // Without the options the body has neither field (the gateway's defaults: no models, usage client).
    s.clear();
    let o = run(&s.base, &["routes", "put", "llama", "--endpoint", "a=http://10.0.1.5:8000", "--groups", "ml-team"]);
    expect_code(&o, 0);
    let body = s.seen()[0].json();
    assert!(body.get("models").is_none() && body.get("usage").is_none(), "{body}");
    s.clear();
    let o = run(&s.base, &["routes", "put", "llama", "--endpoint", "a=http://10.0.1.5:8000", "--groups", "ml-team", "--usage", "client"]);
    expect_code(&o, 0);
    assert_eq!(s.seen()[0].json()["usage"], "client");
    let o = run(&s.base, &["routes", "put", "llama", "--file", "r.json", "--model", "llama"]);
    expect_code(&o, 2);
}

/// A gateway holding `llama` with models and `usage: always`, as core lists it.
fn gateway_with_models() -> Server {
    let body = json!({"name": "llama", "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}], "auth": {"groups": ["ml-team"]},
                      "models": ["llama-3.1-8b", "llama"], "usage": "always"});
    let route: gateway_core::route::Route = serde_json::from_value(body).expect("route");
    let listed = serde_json::to_value(route).expect("json");
    assert_eq!((listed["models"].as_array().map(Vec::len), listed["usage"].as_str()), (Some(2), Some("always")), "{listed}");
    Server::start(Duration::from_secs(30), move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/_gateway/routes") => json(200, json!({"routes": [listed.clone()], "next_cursor": null})),
        ("PUT", _) => json(200, r.json()),
        _ => json(404, json!({"error": {"message": "no", "type": "invalid_request_error", "code": "not_found"}})),
    })
}

#[test]
fn route_files_carry_models_and_usage() {
    let s = gateway_with_models();
    let dir = TempDir::new("routes-models");
    let d = dir.path().to_str().unwrap();
    let write = |v: &Value| std::fs::write(dir.path().join("llama.json"), serde_json::to_string_pretty(v).unwrap()).unwrap();
    let base = json!({"name": "llama", "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}], "auth": {"groups": ["ml-team"]}});

    // The same models and usage: nothing to do.
    let mut same = base.clone();
    same["models"] = json!(["llama-3.1-8b", "llama"]);
    same["usage"] = json!("always");
    write(&same);
    let o = run(&s.base, &["routes", "diff", "-f", d, "--exit-code"]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "0 to create, 0 to change, 0 to delete, 1 unchanged\n");

    // A model added and usage back to the default: field-level lines, and apply sends the file as written.
    let mut changed = base.clone();
    changed["models"] = json!(["llama-3.1-8b", "llama", "llama-3.1-8b-instruct"]);
    changed["usage"] = json!("client");
    write(&changed);
    let o = run(&s.base, &["routes", "diff", "-f", d]);
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        [
            "~ route llama (changed)",
            r#"    - models: ["llama-3.1-8b","llama"]"#,
            r#"    + models: ["llama-3.1-8b","llama","llama-3.1-8b-instruct"]"#,
            r#"    - usage: "always""#,
            "0 to create, 1 to change, 0 to delete, 0 unchanged",
        ],
        "{}",
        stdout(&o)
    );
    s.clear();
    let o = run(&s.base, &["routes", "apply", "-f", d]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("updated route llama\n"), "{}", stdout(&o));
    let writes: Vec<Seen> = s.seen().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].json(), changed);

    // A file core would refuse fails before any write.
    let mut bad = base.clone();
    bad["models"] = json!(["llama", "llama"]);
    write(&bad);
    s.clear();
    let o = run(&s.base, &["routes", "apply", "-f", d]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("llama.json") && stderr(&o).contains("models[1]") && stderr(&o).contains("listed twice"), "{}", stderr(&o));
    assert!(s.calls().iter().all(|(m, _)| m == "GET"), "{:?}", s.calls());

    // And `routes list` shows the models.
    let o = run(&s.base, &["routes", "list"]);
    expect_code(&o, 0);
    let out = stdout(&o);
    assert!(out.lines().next().is_some_and(|h| h.ends_with("MODELS")), "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("llama ") && l.ends_with("llama-3.1-8b,llama")), "{out}");
}
