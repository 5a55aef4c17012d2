//! Each noun calls the admin API the way core's `AdminCommand::parse` expects,
//! prints what it should, and fails clearly; completions and offline commands.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn gateway() -> Server {
    Server::start(Duration::from_secs(30), |r| match (r.method.as_str(), r.path.split('?').next().unwrap_or("")) {
        ("GET", "/_gateway/metrics/prometheus") => {
            (200, "text/plain; version=0.0.4", "# TYPE gateway_requests_total counter\ngateway_requests_total{route=\"llama\",status_class=\"2xx\"} 3\n".into())
        }
        ("GET", "/_gateway/metrics") => json(
            200,
            json!({"generated_at": 1, "histogram_bounds_ms": [], "routes": {"llama": {"requests_total": 3, "requests_last_hour": 3, "by_status_class": {"2xx": 3},
                   "latency_ms": {"p50": 12.0, "p95": 40.5, "p99": null}, "endpoints": {"a": {"health": "up"}, "b": {"health": "down"}}}},
                   "tokens": {"tok_1": {"requests": 3, "routes": {"llama": 3}, "last_seen": 1_800_000_000u64, "prompt_tokens": 10, "completion_tokens": 20}}, "partners": {}}),
        ),
        ("POST", "/_gateway/probes") => json(200, json!({"at": 1, "probes": [{"route": "llama", "endpoint": "a", "status": 200, "health": "up", "changed": false}]})),
        ("GET", "/_gateway/audit") => json(
            200,
            json!({"entries": [{"seq": 7, "at": 1_800_000_000u64, "actor": "ops", "actor_token": "tok_a", "action": "route.put", "object": "route/llama", "outcome": "ok"}], "next_before": 7}),
        ),
        ("GET", "/_gateway/keys") => json(200, json!({"signing_kid": "k1", "keys": [{"kid": "k1", "alg": "HS256", "signing": true, "tokens_outstanding": 2, "last_expiry": null}], "max_token_ttl_seconds": 7776000})),
        ("GET", "/_gateway/me") => json(200, json!({"subject": "alice@corp.example", "kind": "user", "groups": ["ml-team"], "provider": "corp", "partner": null, "token_id": null, "expires_at": 1_800_000_000u64})),
        ("GET", "/_gateway/me/tokens") => json(200, json!({"tokens": [], "next_cursor": null})),
        ("POST", "/_gateway/me/tokens" | "/_gateway/service-accounts/evals/tokens") => json(201, json!({"id": "tok_9", "token": "new.tok.en", "expires_at": 1_800_000_000u64})),
        ("GET", "/_gateway/service-accounts") => json(200, json!({"service_accounts": [{"name": "evals", "groups": ["ml-team"], "owner": "ml@corp", "description": "", "created_at": 1, "created_by": "ops"}], "next_cursor": null})),
        ("POST", "/_gateway/service-accounts") => json(201, r.json()),
        ("GET", "/_gateway/service-accounts/evals") => json(200, json!({"name": "evals", "groups": [], "owner": "ml@corp", "tokens": []})),
        ("DELETE", "/_gateway/service-accounts/evals") => json(200, json!({"deleted": "evals", "tokens_revoked": 1})),
        ("POST", "/_gateway/subjects/alice%40corp.example/revoke") => json(200, json!({"subject": "alice@corp.example", "revoked_at": 1, "tokens_revoked": 2})),
        ("POST", "/_gateway/tokens") => json(201, json!({"id": "tok_2", "token": "iss.ued.tok", "expires_at": 1_800_000_000u64})),
        ("DELETE", "/_gateway/tokens/tok_2") => (204, "application/json", String::new()),
        ("GET", "/_gateway/budgets") => json(
            200,
            json!({"budgets": [
                {"kind": "contracts", "id": "C-2025-031", "tokens_per_month": 5_000_000, "managed_by": "terraform", "used": {"minute": 300, "day": 12_300, "month": 4_200_000}},
                {"kind": "service-accounts", "id": "evals", "tokens_per_minute": 1000, "tokens_per_day": 50_000, "used": {"minute": 0, "day": 50_000, "month": 52_000}},
                {"kind": "tokens", "id": "tok_1", "tokens_per_minute": 20_000, "tokens_per_day": 1_000_000, "used": {"minute": 20_480, "day": 1_000_000, "month": 1_000_000}},
            ]}),
        ),
        // As core answers: the record, with its kind and id.
        ("PUT", p) if p.starts_with("/_gateway/budgets/") => {
            let mut v = r.json();
            let mut seg = p.trim_start_matches("/_gateway/budgets/").splitn(2, '/');
            v["kind"] = json!(seg.next());
            v["id"] = json!(seg.next());
            json(200, v)
        }
        ("DELETE", "/_gateway/budgets/service-accounts/evals") => json(200, json!({"deleted": "service-accounts/evals"})),
        ("DELETE", "/_gateway/budgets/contracts/C-2025-031") => {
            json(409, json!({"error": {"message": "budget `contracts/C-2025-031` is managed by terraform; change it there", "type": "invalid_request_error", "code": "conflict"}}))
        }
        ("DELETE", p) if p.starts_with("/_gateway/budgets/") => json(404, json!({"error": {"message": "no budget for tokens `tok_9`", "type": "invalid_request_error", "code": "not_found"}})),
        _ => json(403, json!({"error": {"message": "nope", "type": "permission_error", "code": "forbidden"}})),
    })
}

#[test]
fn every_noun_calls_its_admin_path() {
    let s = gateway();
    let cases: &[(&[&str], (&str, &str))] = &[
        (&["service-accounts", "list", "-o", "json"], ("GET", "/_gateway/service-accounts")),
        (&["sa", "create", "evals", "--owner", "ml@corp", "--groups", "ml-team"], ("POST", "/_gateway/service-accounts")),
        (&["service-accounts", "get", "evals"], ("GET", "/_gateway/service-accounts/evals")),
        (&["service-accounts", "issue-token", "evals", "--ttl", "30d", "--token-only"], ("POST", "/_gateway/service-accounts/evals/tokens")),
        (&["service-accounts", "delete", "evals"], ("DELETE", "/_gateway/service-accounts/evals")),
        (&["subjects", "revoke", "alice@corp.example"], ("POST", "/_gateway/subjects/alice%40corp.example/revoke")),
        (&["me"], ("GET", "/_gateway/me")),
        (&["me", "tokens", "-o", "yaml"], ("GET", "/_gateway/me/tokens")),
        (&["me", "tokens", "issue", "--ttl", "7d", "--groups", "ml-team"], ("POST", "/_gateway/me/tokens")),
        (&["keys", "list"], ("GET", "/_gateway/keys")),
        (&["metrics"], ("GET", "/_gateway/metrics")),
        (&["metrics", "--per-token"], ("GET", "/_gateway/metrics?per_token=1")),
        (&["metrics", "--prometheus"], ("GET", "/_gateway/metrics/prometheus")),
        (&["probes", "run"], ("POST", "/_gateway/probes")),
        (&["audit", "--limit", "5", "--before", "99"], ("GET", "/_gateway/audit?limit=5&before=99")),
        (&["tokens", "issue", "--subject", "bob", "--groups", "ml-team", "--ttl", "1h"], ("POST", "/_gateway/tokens")),
        (&["tokens", "revoke", "tok_2"], ("DELETE", "/_gateway/tokens/tok_2")),
        (&["budgets", "list"], ("GET", "/_gateway/budgets")),
        (&["budgets", "set", "tokens", "tok_1", "--per-minute", "20000"], ("PUT", "/_gateway/budgets/tokens/tok_1")),
        (&["budgets", "delete", "service-accounts", "evals"], ("DELETE", "/_gateway/budgets/service-accounts/evals")),
    ];
    for (args, (method, path)) in cases {
        s.clear();
        let o = run(&s.base, args);
        expect_code(&o, 0);
        assert_eq!(s.calls(), [(method.to_string(), path.to_string())], "{args:?}");
    }
}

#[test]
fn bodies_and_outputs() {
    let s = gateway();
    let o = run(&s.base, &["sa", "create", "evals", "--owner", "ml@corp", "--groups", "ml-team,x", "--description", "nightly"]);
    assert_eq!(s.seen()[0].json(), json!({"name": "evals", "owner": "ml@corp", "groups": ["ml-team", "x"], "description": "nightly"}));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap()["name"], "evals");
    s.clear();
    let o = run(&s.base, &["service-accounts", "issue-token", "evals", "--ttl", "30d", "--routes", "llama", "--token-only"]);
    assert_eq!(s.seen()[0].json(), json!({"ttl_seconds": 2_592_000, "description": "", "routes": ["llama"]}));
    assert_eq!(stdout(&o), "new.tok.en\n");
    assert!(stderr(&o).contains("issued tok_9"));

    let o = run(&s.base, &["metrics", "--prometheus"]);
    assert!(stdout(&o).contains("gateway_requests_total{route=\"llama\",status_class=\"2xx\"} 3"), "{}", stdout(&o));
    let o = run(&s.base, &["metrics"]);
    let row = stdout(&o).lines().nth(1).unwrap_or_default().to_string();
    assert!(row.starts_with("llama ") && row.contains("12ms") && row.contains("41ms") && row.ends_with("1/2"), "{}", stdout(&o));
    let o = run(&s.base, &["metrics", "--per-token"]);
    assert!(stdout(&o).lines().nth(1).is_some_and(|l| l.starts_with("tok_1 ") && l.contains("llama=3")), "{}", stdout(&o));
    let o = run(&s.base, &["metrics", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap()["routes"]["llama"]["requests_total"], 3);

    let o = run(&s.base, &["audit"]);
    assert!(stdout(&o).lines().nth(1).is_some_and(|l| l.starts_with("7 ") && l.contains("route.put") && l.contains("route/llama")), "{}", stdout(&o));
    assert!(stderr(&o).contains("older: --before 7"));
    let o = run(&s.base, &["audit", "-o", "yaml"]);
    assert!(stdout(&o).contains("action: route.put"), "{}", stdout(&o));
    let o = run(&s.base, &["keys", "list"]);
    assert!(stdout(&o).lines().nth(1).is_some_and(|l| l.starts_with("k1 ") && l.contains("true")), "{}", stdout(&o));
    let o = run(&s.base, &["me"]);
    assert!(stdout(&o).contains("alice@corp.example"), "{}", stdout(&o));
    let o = run(&s.base, &["probes", "run", "-o", "json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout(&o)).unwrap()["probes"][0]["health"], "up");
}

#[test]
fn budgets_list_set_and_delete() {
    let s = gateway();
    let o = run(&s.base, &["budgets", "list"]);
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o).lines().collect::<Vec<_>>(),
        [
            "KIND               ID           PER_MINUTE   PER_DAY   PER_MONTH   USED_MIN/DAY/MONTH      SPENT        MANAGED_BY",
            "contracts          C-2025-031   -            -         5000000     300/12300/4200000       -            terraform",
            "service-accounts   evals        1000         50000     -           0/50000/52000           day          -",
            "tokens             tok_1        20000        1000000   -           20480/1000000/1000000   minute,day   -",
        ],
        "{}",
        stdout(&o)
    );
    let o = run(&s.base, &["budgets", "ls", "-o", "json"]);
    expect_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["budgets"][2]["id"].as_str(), v["budgets"][2]["used"]["minute"].as_u64()), (Some("tok_1"), Some(20_480)), "the API's body as it is");
    let o = run(&s.base, &["budgets", "list", "-o", "yaml"]);
    assert!(stdout(&o).contains("managed_by: terraform"), "{}", stdout(&o));

    // Only the limits given, as core's TokenBudget names them; the id percent-encoded.
    s.clear();
    let o = run(&s.base, &["budgets", "set", "service-account", "evals", "--per-day", "1000000", "--per-month", "20000000"]);
    expect_code(&o, 0);
    let seen = s.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("PUT", "/_gateway/budgets/service-accounts/evals"));
    assert_eq!(seen[0].json(), json!({"tokens_per_day": 1_000_000, "tokens_per_month": 20_000_000}));
    let reply: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(reply, json!({"kind": "service-accounts", "id": "evals", "tokens_per_day": 1_000_000, "tokens_per_month": 20_000_000}));
    s.clear();
    let o = run(&s.base, &["budgets", "set", "contracts", "+INI-2026:a", "--per-minute", "1000"]);
    expect_code(&o, 0);
    assert_eq!(s.calls(), [("PUT".to_string(), "/_gateway/budgets/contracts/%2BINI-2026%3Aa".to_string())]);
    assert_eq!(s.seen()[0].json(), json!({"tokens_per_minute": 1000}));

    // Mistakes stop before any call, with exit 2.
    s.clear();
    for (args, says) in [
        (&["budgets", "set", "tokens", "tok_1"][..], "--per-minute"),
        (&["budgets", "set", "tokens", "tok_1", "--per-day", "0"], "from 1 to 1000000000000"),
        (&["budgets", "set", "teams", "t", "--per-day", "5"], "teams"),
        (&["budgets", "set", "contracts", "C 1", "--per-day", "5"], "without spaces or `/`"),
    ] {
        let o = run(&s.base, args);
        expect_code(&o, 2);
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
    assert!(s.calls().is_empty(), "{:?}", s.calls());

    let o = run(&s.base, &["budgets", "delete", "service-accounts", "evals"]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "deleted budget service-accounts/evals\n");
    // The gateway's refusals: none to delete, and Terraform's.
    let o = run(&s.base, &["budgets", "rm", "token", "tok_9"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("the gateway answered 404: no budget for tokens `tok_9`"), "{}", stderr(&o));
    let o = run(&s.base, &["budgets", "delete", "contracts", "C-2025-031"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("409") && stderr(&o).contains("managed by terraform"), "{}", stderr(&o));
}

#[test]
fn refusals_exit_1_with_the_gateways_message_and_a_hint() {
    let s = gateway();
    let o = run(&s.base, &["routes", "delete", "llama"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("the gateway answered 403: nope") && stderr(&o).contains("hint:"), "{}", stderr(&o));
    // The token never reaches stderr.
    assert!(!stderr(&o).contains("adm.tok.en"));
    let o = run("http://gw.example.com", &["routes", "list"]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("in clear"), "{}", stderr(&o));
}

#[test]
fn completions_are_scripts_for_each_shell() {
    let dir = TempDir::new("completion");
    for shell in ["bash", "zsh", "fish"] {
        let o = gatewayctl(&dir.path().join("c.yaml")).args(["completion", shell]).output().unwrap();
        expect_code(&o, 0);
        let out = stdout(&o);
        assert!(out.len() > 1000 && out.contains("gatewayctl") && out.contains("service-accounts") && out.contains("budgets"), "{shell}: {} bytes", out.len());
    }
}

#[test]
fn offline_commands_and_usage_errors() {
    let dir = TempDir::new("offline");
    let cfg = dir.path().join("c.yaml");
    for args in [&["key", "generate", "--kid", "gw-2026-11"][..], &["keys", "generate", "--kid", "ed-1", "--alg", "EdDSA"]] {
        let o = gatewayctl(&cfg).args(args).output().unwrap();
        expect_code(&o, 0);
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v[0]["kid"], args[3]);
        assert!(stderr(&o).contains("next to the current one") && stderr(&o).contains("GATEWAY_SIGNING_KID="), "{}", stderr(&o));
    }
    let keys = r#"[{"kid":"k1","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]"#;
    let o = gatewayctl(&cfg).env("GATEWAY_SIGNING_KEYS", keys).args(["token", "mint", "--subject", "ops", "--groups", "admin", "--ttl", "1h"]).output().unwrap();
    expect_code(&o, 0);
    assert_eq!(stdout(&o).trim().split('.').count(), 3, "a JWT alone on stdout");
    let o = gatewayctl(&cfg).args(["token", "mint", "--subject", "ops", "--groups", "admin", "--ttl", "1h"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("GATEWAY_SIGNING_KEYS"), "{}", stderr(&o));
    // The gateway's URL is --server now; --url is an endpoint's own.
    let o = gatewayctl(&cfg).args(["--url", "https://gw", "routes", "list"]).output().unwrap();
    expect_code(&o, 2);
    let o = gatewayctl(&cfg).args(["routes", "get", "--help"]).output().unwrap();
    expect_code(&o, 0);
    assert!(stdout(&o).contains("--output") && stdout(&o).contains("--server"), "{}", stdout(&o));
    let o = gatewayctl(&cfg).output().unwrap();
    expect_code(&o, 2);
}

#[test]
fn the_command_tree_is_consistent() {
    use clap::CommandFactory;
    gatewayctl::Cli::command().debug_assert();
}
