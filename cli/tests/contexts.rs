//! Contexts in a config file (`GATEWAYCTL_CONFIG` points at a temp dir):
//! set, use, list, and calls that take their server and token from one.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn echo_routes() -> Server {
    Server::start(Duration::from_secs(20), |_| json(200, json!({"routes": [], "next_cursor": null})))
}

#[test]
fn a_context_gives_the_server_and_token_file() {
    let (a, b) = (echo_routes(), echo_routes());
    let dir = TempDir::new("contexts");
    let config = dir.path().join("gatewayctl").join("config.yaml");
    let (ta, tb) = (dir.path().join("a.token"), dir.path().join("b.token"));
    std::fs::write(&ta, "tok.a.a\n").unwrap();
    std::fs::write(&tb, "tok.b.b\n").unwrap();

    let o = gatewayctl(&config).args(["config", "set-context", "a", "--server", &a.base, "--token-file"]).arg(&ta).output().unwrap();
    expect_code(&o, 0);
    assert!(stdout(&o).contains("context a (current) saved"), "{}", stdout(&o));
    let o = gatewayctl(&config).args(["config", "set-context", "b", "--server", &b.base, "--token-file"]).arg(&tb).output().unwrap();
    expect_code(&o, 0);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains("tok.a.a") && !text.contains("tok.b.b"), "token files, not tokens: {text}");

    let o = gatewayctl(&config).args(["config", "current-context"]).output().unwrap();
    assert_eq!(stdout(&o), "a\n");
    let o = gatewayctl(&config).args(["config", "get-contexts", "-o", "json"]).output().unwrap();
    expect_code(&o, 0);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["current_context"], "a");
    assert_eq!(v["contexts"][1]["server"], b.base.as_str());
    let o = gatewayctl(&config).args(["config", "get-contexts"]).output().unwrap();
    assert!(stdout(&o).lines().nth(1).is_some_and(|l| l.starts_with("*  ") && l.contains(" a ")), "{}", stdout(&o));

    // The current context, then --context, then use-context.
    expect_code(&gatewayctl(&config).args(["routes", "list"]).output().unwrap(), 0);
    expect_code(&gatewayctl(&config).args(["--context", "b", "routes", "list"]).output().unwrap(), 0);
    expect_code(&gatewayctl(&config).args(["config", "use-context", "b"]).output().unwrap(), 0);
    expect_code(&gatewayctl(&config).args(["tokens", "list", "-o", "json"]).output().unwrap(), 0);
    assert_eq!(a.seen().iter().map(|r| r.authorization.as_str()).collect::<Vec<_>>(), ["Bearer tok.a.a"]);
    assert_eq!(b.seen().iter().map(|r| (r.path.as_str(), r.authorization.as_str())).collect::<Vec<_>>(), [("/_gateway/routes", "Bearer tok.b.b"), ("/_gateway/tokens", "Bearer tok.b.b")]);

    // The environment beats the current context; an explicit --context beats the environment.
    let o = gatewayctl(&config).env("GATEWAY_URL", &a.base).env("GATEWAY_TOKEN", "env.tok.en").args(["routes", "list"]).output().unwrap();
    expect_code(&o, 0);
    assert_eq!(a.seen().last().unwrap().authorization, "Bearer env.tok.en");
    let o = gatewayctl(&config).env("GATEWAY_URL", &a.base).env("GATEWAY_TOKEN", "env.tok.en").args(["--context", "b", "routes", "list"]).output().unwrap();
    expect_code(&o, 0);
    assert_eq!(b.seen().len(), 3);

    // The current context's token never goes to another server.
    let o = gatewayctl(&config).args(["--server", &a.base, "routes", "list"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("holds a token for"), "{}", stderr(&o));
    assert_eq!(a.seen().len(), 2);
}

#[test]
fn context_mistakes_are_clear() {
    let dir = TempDir::new("contexts-bad");
    let config = dir.path().join("config.yaml");
    let o = gatewayctl(&config).args(["config", "current-context"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("no current context"), "{}", stderr(&o));
    let o = gatewayctl(&config).args(["config", "use-context", "prod"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("no context `prod`"), "{}", stderr(&o));
    let o = gatewayctl(&config).args(["routes", "list"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("no gateway URL") && stderr(&o).contains("--server"), "{}", stderr(&o));
    let o = gatewayctl(&config).args(["config", "set-context", "x", "--server", "http://gw.example.com"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("in clear"), "{}", stderr(&o));
    // A token given explicitly is stored, with a warning; listings never show it.
    let o = gatewayctl(&config).args(["config", "set-context", "x", "--server", "https://gw.example.com", "--token", "sec.ret.tok"]).output().unwrap();
    expect_code(&o, 0);
    assert!(stderr(&o).contains("plain form"), "{}", stderr(&o));
    for format in ["table", "json", "yaml"] {
        let o = gatewayctl(&config).args(["config", "get-contexts", "-o", format]).output().unwrap();
        assert!(!stdout(&o).contains("sec.ret.tok"), "{format}: {}", stdout(&o));
    }
    std::fs::write(&config, "current-context: [oops").unwrap();
    let o = gatewayctl(&config).args(["routes", "list"]).output().unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("is not a gatewayctl config"), "{}", stderr(&o));
}
