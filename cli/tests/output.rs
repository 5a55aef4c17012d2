//! `-o table|json|yaml` on listings and reads, and paging through `next_cursor`.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn route(name: &str) -> Value {
    json!({"name": name, "host": null, "enabled": true, "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000", "weight": 1}],
           "auth": {"required": true, "groups": ["ml-team"]}, "managed_by": null})
}

/// Two pages of routes: `alpha` then, after cursor `alpha`, `beta`.
fn paged() -> Server {
    Server::start(Duration::from_secs(20), |r| match r.path.as_str() {
        "/_gateway/routes" | "/_gateway/routes?limit=1" => json(200, json!({"routes": [route("alpha")], "next_cursor": "alpha"})),
        "/_gateway/routes?cursor=alpha" => json(200, json!({"routes": [route("beta")], "next_cursor": null})),
        "/_gateway/tokens?q=bob" => json(200, json!({"tokens": [{"id": "tok_1", "subject": "bob", "kind": "user", "groups": ["ml-team"], "expires_at": 1_800_000_000u64, "revoked": false, "expired": false, "request_count": 3}], "next_cursor": null})),
        _ => json(404, json!({"error": {"message": "no such admin call", "type": "invalid_request_error", "code": "not_found"}})),
    })
}

#[test]
fn json_is_every_page_merged_into_the_apis_shape() {
    let s = paged();
    let o = run(&s.base, &["routes", "list", "-o", "json"]);
    expect_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v, json!({"routes": [route("alpha"), route("beta")], "next_cursor": null}));
    assert_eq!(s.calls().iter().map(|c| c.1.as_str()).collect::<Vec<_>>(), ["/_gateway/routes", "/_gateway/routes?cursor=alpha"]);
    assert!(s.seen().iter().all(|r| r.authorization == "Bearer adm.tok.en"));
}

#[test]
fn yaml_is_the_same_document() {
    let s = paged();
    let o = run(&s.base, &["routes", "list", "--output", "yaml"]);
    expect_code(&o, 0);
    let v: Value = serde_norway::from_str(&stdout(&o)).expect("yaml");
    assert_eq!(v["routes"][1], route("beta"));
    let o = run(&s.base, &["tokens", "list", "--q", "bob", "-o", "yaml"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("subject: bob"), "{}", stdout(&o));
}

#[test]
fn table_is_the_default() {
    let s = paged();
    let o = run(&s.base, &["routes", "list"]);
    expect_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME ") && lines[0].contains("ENDPOINTS"), "{out}");
    assert!(lines[1].starts_with("alpha ") && lines[1].contains("groups: ml-team"), "{out}");
    assert!(lines[2].starts_with("beta "), "{out}");
    let o = run(&s.base, &["tokens", "list", "--q", "bob"]);
    expect_code(&o, 0);
    assert!(stdout(&o).lines().nth(1).is_some_and(|l| l.starts_with("tok_1 ") && l.contains("active") && l.contains("2027-01-15T08:00:00Z")), "{}", stdout(&o));
}

#[test]
fn limit_fetches_one_page_and_says_where_the_next_starts() {
    let s = paged();
    let o = run(&s.base, &["routes", "list", "--limit", "1", "-o", "json"]);
    expect_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["next_cursor"], "alpha", "one page, exactly as the API answered");
    assert!(stderr(&o).contains("more: --cursor alpha"), "{}", stderr(&o));
    assert_eq!(s.calls().len(), 1);
}

#[test]
fn gateway_errors_exit_1_with_its_message() {
    let s = paged();
    let o = run(&s.base, &["routes", "get", "nope"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("the gateway answered 404: no such admin call"), "{}", stderr(&o));
    let o = run(&s.base, &["routes", "list", "-o", "xml"]);
    expect_code(&o, 2);
    assert!(s.calls().len() == 1, "a usage error sends nothing");
}
