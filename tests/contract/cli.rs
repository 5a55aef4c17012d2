//! `gatewayctl` against the running deployment (issue 19): declarative routes,
//! tokens, metrics, audit, probes and contexts through the CLI, as an operator
//! drives them. The binary is the workspace's own debug build (`cargo test` at
//! the root builds it; `GATEWAYCTL_BIN` picks another).

use crate::{boxed, ensure, Case, CaseResult, Ctx};
use gateway_tests::deploy;
use gateway_tests::route::RouteJson;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const ALL: &[Case] = &[("cli_gatewayctl_drives_the_admin_api", |c| boxed(cli_gatewayctl_drives_the_admin_api(c)))];

fn gatewayctl_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("GATEWAYCTL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let p = deploy::target_dir().join("debug").join("gatewayctl");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{} is missing: `cargo build -p gatewayctl` (the test command's `cargo test` builds it)", p.display()))
    }
}

/// What one run printed.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.stdout).map_err(|e| format!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs gatewayctl with `env` (GATEWAY_URL, GATEWAY_TOKEN, … as given) and no config file but `config`.
async fn gatewayctl(config: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<Run, String> {
    let mut cmd = std::process::Command::new(gatewayctl_bin()?);
    cmd.env_remove("GATEWAY_URL").env_remove("GATEWAY_TOKEN").env("GATEWAYCTL_CONFIG", config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = args.join(" ");
    let out = tokio::task::spawn_blocking(move || cmd.output()).await.map_err(|e| e.to_string())?.map_err(|e| format!("gatewayctl {shown}: {e}"))?;
    Ok(Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
}

async fn cli_gatewayctl_drives_the_admin_api(c: &Ctx) -> CaseResult {
    let dir = std::env::temp_dir().join(format!("gw-contract-cli-{}-{}", std::process::id(), c.name("dir")));
    let _ = std::fs::remove_dir_all(&dir);
    let routes = dir.join("routes");
    std::fs::create_dir_all(&routes).map_err(|e| e.to_string())?;
    let result = steps(c, &dir, &routes).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn steps(c: &Ctx, dir: &Path, routes: &Path) -> CaseResult {
    let config = dir.join("config.yaml");
    let env = [("GATEWAY_URL", c.base.as_str()), ("GATEWAY_TOKEN", c.admin.as_str())];
    let run = |args: &'static [&'static str]| gatewayctl(&config, &env, args);
    let name = c.name("cli");
    let file = routes.join(format!("{name}.json"));
    let body = RouteJson::new().endpoint("a", c.a.url()).with("name", json!(name)).json();
    std::fs::write(&file, body.to_string()).map_err(|e| e.to_string())?;
    let dir_arg = routes.to_string_lossy().into_owned();

    // routes apply creates it; diff then shows nothing to do; get returns it.
    let r = gatewayctl(&config, &env, &["routes", "apply", "-f", &dir_arg]).await?;
    ensure!(r.code == 0 && r.stdout.contains(&format!("created route {name}\n")), "apply: {} {}{}", r.code, r.stdout, r.stderr);
    let r = gatewayctl(&config, &env, &["routes", "diff", "-f", &dir_arg, "--exit-code"]).await?;
    ensure!(r.code == 0 && r.stdout.contains("0 to create, 0 to change, 0 to delete, 1 unchanged"), "diff after apply: {} {}{}", r.code, r.stdout, r.stderr);
    let r = gatewayctl(&config, &env, &["routes", "get", &name, "-o", "json"]).await?;
    let v = r.json()?;
    ensure!(v["name"] == name.as_str() && v["endpoints"][0]["url"] == c.a.url().as_str(), "routes get: {v}");
    // A change to the file is one field-level line.
    let mut changed = body.clone();
    changed["auth"]["groups"] = json!(["ml-team", "cli-extra"]);
    std::fs::write(&file, changed.to_string()).map_err(|e| e.to_string())?;
    let r = gatewayctl(&config, &env, &["routes", "diff", "-f", &dir_arg, "--exit-code"]).await?;
    ensure!(r.code == 3 && r.stdout.contains(&format!("~ route {name} (changed)\n    - auth.groups: [\"ml-team\"]\n    + auth.groups: [\"ml-team\",\"cli-extra\"]\n")), "diff: {} {}", r.code, r.stdout);

    // tokens issue, list, revoke.
    let subject = c.name("cli-subject");
    let r = gatewayctl(&config, &env, &["tokens", "issue", "--subject", &subject, "--groups", "ml-team", "--ttl", "10m", "--description", "cli"]).await?;
    let issued = r.json()?;
    let id = issued["id"].as_str().ok_or(format!("tokens issue: {issued} {}", r.stderr))?.to_string();
    let user = issued["token"].as_str().unwrap_or_default().to_string();
    let r = gatewayctl(&config, &env, &["tokens", "list", "--q", &subject, "-o", "json"]).await?;
    let listed = r.json()?;
    ensure!(listed["tokens"].as_array().is_some_and(|t| t.iter().any(|t| t["id"] == id.as_str() && t["revoked"] == false)), "tokens list: {listed}");

    // A request through the route, so the exposition has a counter to show.
    let res = c.get(&format!("/{name}/v1/models"), Some(&user), &[]).await?;
    ensure!(res.status() == 200, "request through the route: {}", res.status());
    res.bytes().await.map_err(|e| e.to_string())?;
    c.eventually("gatewayctl metrics --prometheus shows the request", Duration::from_secs(20), || async {
        let r = run(&["metrics", "--prometheus"]).await?;
        ensure!(r.code == 0, "metrics --prometheus: {}", r.stderr);
        Ok(r.stdout.contains("gateway_requests_total") && r.stdout.contains(&format!("route=\"{name}\"")))
    })
    .await?;
    let r = run(&["metrics", "-o", "json"]).await?;
    ensure!(r.json()?["routes"].get(&name).is_some(), "metrics -o json lacks {name}");

    let r = gatewayctl(&config, &env, &["tokens", "revoke", &id]).await?;
    ensure!(r.code == 0, "tokens revoke: {}", r.stderr);
    let r = gatewayctl(&config, &env, &["tokens", "list", "--q", &subject, "-o", "json"]).await?;
    let listed = r.json()?;
    ensure!(listed["tokens"].as_array().is_some_and(|t| t.iter().any(|t| t["id"] == id.as_str() && t["revoked"] == true)), "revoked in the list: {listed}");

    // The audit log has the route change; a probe round runs.
    let r = run(&["audit", "--limit", "200", "-o", "json"]).await?;
    let audit = r.json()?;
    let object = format!("route/{name}");
    ensure!(
        audit["entries"].as_array().is_some_and(|e| e.iter().any(|e| e["action"] == "route.put" && e["object"] == object.as_str() && e["outcome"] == "ok")),
        "audit lacks route.put of {object}"
    );
    let r = run(&["probes", "run", "-o", "json"]).await?;
    let probes = r.json()?;
    ensure!(probes["probes"].as_array().is_some_and(|p| p.iter().any(|p| p["route"] == name.as_str() && p["endpoint"] == "a")), "probes run: {probes}");

    // A context holds the server and a token file; nothing from the environment.
    let token_file = dir.join("admin.token");
    std::fs::write(&token_file, &c.admin).map_err(|e| e.to_string())?;
    let tf = token_file.to_string_lossy().into_owned();
    let r = gatewayctl(&config, &[], &["config", "set-context", "contract", "--server", &c.base, "--token-file", &tf]).await?;
    ensure!(r.code == 0, "set-context: {}", r.stderr);
    let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    ensure!(!text.contains(&c.admin), "the config file holds the token");
    let r = gatewayctl(&config, &[], &["routes", "list", "-o", "json"]).await?;
    ensure!(r.json()?["routes"].as_array().is_some_and(|rs| rs.iter().any(|x| x["name"] == name.as_str())), "routes list through the context: {}", r.stdout);

    // Clean up: the route goes again.
    let r = gatewayctl(&config, &env, &["routes", "delete", &name]).await?;
    ensure!(r.code == 0, "routes delete: {}", r.stderr);
    Ok(())
}
