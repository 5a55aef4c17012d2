//! Runs a parsed command: offline ones here, admin API calls through `api`,
//! contexts through `config`, route files through `apply`.

use crate::api::{self, encode, with_query, HttpCall, Target};
use crate::apply::{self, Change};
use crate::cli::*;
use crate::duration::{self, format_unix};
use crate::output::{self, Table};
use crate::{config, keep, offline};
use clap::{CommandFactory, Parser};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a successful run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Exit 0.
    Ok,
    /// `routes diff --exit-code` found changes: exit 3.
    Changes,
}

/// Parses the arguments (program name first) and runs them; the process's exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version go to stdout with 0; mistakes to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match execute(cli, &|k| std::env::var(k).ok()) {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Changes) => ExitCode::from(3),
        Err(m) => {
            eprintln!("gatewayctl: {m}");
            ExitCode::from(1)
        }
    }
}

fn now() -> Result<u64, String> {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).map_err(|_| "the system clock is before 1970".to_string())
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The connection and environment of one run.
struct Session<'a> {
    conn: ConnArgs,
    env: Env<'a>,
}

impl Session<'_> {
    fn resolve(&self) -> Result<api::Conn, String> {
        let path = config::path(self.env);
        config::resolve(&self.conn, self.env, &|| config::load(&path.clone()?))
    }

    fn target(&self) -> Result<Target, String> {
        api::target(&self.resolve()?)
    }

    /// Sends one call; the gateway's refusal becomes the message.
    fn call(&self, call: HttpCall) -> Result<Value, String> {
        api::send(&self.target()?, &call).map_err(|f| f.to_string())
    }

    /// A listing: one page with `--limit`, else every page, merged under `key` (as one answer would be).
    fn list(&self, path: &str, extra: &[(&str, Option<String>)], key: &str, page: &PageArgs) -> Result<Value, String> {
        let target = self.target()?;
        let get = |cursor: Option<String>, limit: Option<u32>| {
            let mut q: Vec<(&str, Option<String>)> = extra.to_vec();
            q.push(("limit", limit.map(|l| l.to_string())));
            q.push(("cursor", cursor));
            api::send(&target, &HttpCall::get(with_query(path, &q))).map_err(|f| f.to_string())
        };
        if page.limit.is_some() {
            let v = get(page.cursor.clone(), page.limit)?;
            if let Some(next) = v.get("next_cursor").and_then(Value::as_str) {
                eprintln!("more: --cursor {}", duration::printable(next));
            }
            return Ok(v);
        }
        let mut all = Vec::new();
        let mut cursor = page.cursor.clone();
        loop {
            let v = get(cursor.clone(), None)?;
            all.extend(v.get(key).and_then(Value::as_array).cloned().unwrap_or_default());
            match v.get("next_cursor").and_then(Value::as_str) {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_string()),
                Some(_) => return Err("the gateway gave the same cursor twice; stopping".into()),
                None => break,
            }
        }
        Ok(json!({ key: all, "next_cursor": null }))
    }

    /// Offline commands take no connection options: a mistake there usually means the wrong command.
    fn offline(&self, what: &str) -> Result<(), String> {
        if self.conn.any() {
            return Err(format!("--server, --token, --token-file and --context are for admin API commands; `{what}` works offline"));
        }
        Ok(())
    }
}

/// Prints a created object's answer (it may hold a token shown this once).
fn print_json(v: &Value) -> Result<(), String> {
    if !v.is_null() {
        println!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// `--token-only`: the token alone on stdout, its id and expiry on stderr.
fn print_token_only(reply: &Value) -> Result<(), String> {
    let token = reply.get("token").and_then(Value::as_str).ok_or("the reply holds no token")?;
    println!("{token}");
    let id = reply.get("id").and_then(Value::as_str).unwrap_or("?");
    match reply.get("expires_at").and_then(Value::as_u64) {
        Some(exp) => eprintln!("issued {id}, expires {} (unix {exp})", format_unix(exp)),
        None => eprintln!("issued {id}"),
    }
    Ok(())
}

fn issued(reply: &Value, token_only: bool) -> Result<(), String> {
    if token_only {
        print_token_only(reply)
    } else {
        print_json(reply)
    }
}

/// What `keys generate` prints on stderr: the procedure of README's "Rotating the gateway's signing key".
pub fn rotation_hint(kid: &str) -> String {
    format!(
        "this is a GATEWAY_SIGNING_KEYS value (a secret). For a first deployment, set it as is.\n\
         To rotate without downtime: (1) add this key to the existing GATEWAY_SIGNING_KEYS array next to the current \
         one, keep GATEWAY_SIGNING_KID on the current key, and deploy: every instance now verifies both; \
         (2) set GATEWAY_SIGNING_KID={kid} and deploy: new tokens are signed with it; (3) when `gatewayctl keys list` \
         shows 0 tokens outstanding for the old key (and GATEWAY_MAX_TOKEN_TTL_SECONDS has passed since step 2 if tokens \
         were minted offline), remove the old key and deploy."
    )
}

/// Runs a parsed command.
pub fn execute(cli: Cli, env: Env<'_>) -> Result<Done, String> {
    let s = Session { conn: cli.conn, env };
    match cli.command {
        Command::Routes(cmd) => routes(&s, cmd),
        Command::Endpoints(cmd) => endpoints(&s, cmd).map(|()| Done::Ok),
        Command::Tokens(cmd) => tokens(&s, cmd).map(|()| Done::Ok),
        Command::ServiceAccounts(cmd) => service_accounts(&s, cmd).map(|()| Done::Ok),
        Command::Budgets(cmd) => budgets(&s, cmd).map(|()| Done::Ok),
        Command::Subjects(SubjectsCmd::Revoke { subject }) => {
            print_json(&s.call(HttpCall::post(format!("/_gateway/subjects/{}/revoke", encode(&subject)), None))?).map(|()| Done::Ok)
        }
        Command::Ephemeral(EphemeralCmd::Create { url, ttl, groups }) => {
            let body = json!({ "url": url, "ttl_seconds": ttl, "groups": list(&groups) });
            print_json(&s.call(HttpCall::post("/_gateway/ephemeral", Some(body)))?).map(|()| Done::Ok)
        }
        Command::Me(args) => me(&s, args).map(|()| Done::Ok),
        Command::Keys(cmd) => keys(&s, cmd).map(|()| Done::Ok),
        Command::Metrics(args) => metrics(&s, args).map(|()| Done::Ok),
        Command::Probes(ProbesCmd::Run { out }) => output::print(&s.call(HttpCall::post("/_gateway/probes", None))?, out.output, output::probes).map(|()| Done::Ok),
        Command::Audit(AuditArgs { limit, before, out }) => {
            let path = with_query("/_gateway/audit", &[("limit", limit.map(|l| l.to_string())), ("before", before.map(|b| b.to_string()))]);
            let v = s.call(HttpCall::get(path))?;
            if out.output == Format::Table {
                if let Some(next) = v.get("next_before").and_then(Value::as_u64) {
                    eprintln!("older: --before {next}");
                }
            }
            output::print(&v, out.output, output::audit).map(|()| Done::Ok)
        }
        Command::Config(cmd) => config_cmd(&s, cmd).map(|()| Done::Ok),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "gatewayctl", &mut std::io::stdout());
            Ok(Done::Ok)
        }
    }
}

fn routes(s: &Session, cmd: RoutesCmd) -> Result<Done, String> {
    let path = |n: &str| format!("/_gateway/routes/{}", encode(n));
    match cmd {
        RoutesCmd::List { page, out } => output::print(&s.list("/_gateway/routes", &[], "routes", &page)?, out.output, output::routes)?,
        RoutesCmd::Get { name, out } => output::print(&s.call(HttpCall::get(path(&name)))?, out.output, output::routes)?,
        RoutesCmd::Delete { name } => {
            s.call(HttpCall::delete(path(&name)))?;
            println!("deleted route {}", duration::printable(&name));
        }
        RoutesCmd::Put { name, file, endpoint, groups, public, models, usage } => {
            let body = match file {
                Some(f) => read_route_file(&f)?,
                None => {
                    let mut body = json!({
                        "endpoints": endpoint.iter().map(EndpointSpec::to_json).collect::<Vec<_>>(),
                        "auth": { "required": !public, "groups": groups.as_deref().map(list).unwrap_or_default() },
                    });
                    if !models.is_empty() {
                        body["models"] = json!(models);
                    }
                    if let Some(u) = usage {
                        body["usage"] = json!(u.as_str());
                    }
                    body
                }
            };
            print_json(&s.call(HttpCall::put(path(&name), body))?)?;
        }
        RoutesCmd::Diff { dir, exit_code } => {
            let plan = route_plan(s, &dir)?;
            print!("{}", plan.render());
            if exit_code && plan.has_changes() {
                return Ok(Done::Changes);
            }
        }
        RoutesCmd::Apply { dir } => {
            let plan = route_plan(s, &dir)?;
            let target = s.target()?;
            let mut failed = Vec::new();
            let (mut created, mut updated, mut deleted, mut unchanged) = (0, 0, 0, 0);
            for c in &plan.changes {
                let name = duration::printable(c.name());
                let (call, done) = match c {
                    Change::Create { name: n, body, .. } => (HttpCall::put(path(n), body.clone()), "created"),
                    Change::Update { name: n, body, .. } => (HttpCall::put(path(n), body.clone()), "updated"),
                    Change::Delete { name: n } => (HttpCall::delete(path(n)), "deleted"),
                    Change::Unchanged { .. } => {
                        unchanged += 1;
                        continue;
                    }
                    Change::Kept { why, .. } => {
                        println!("kept route {name}: {why}");
                        continue;
                    }
                };
                match api::send(&target, &call) {
                    Ok(_) => {
                        println!("{done} route {name}");
                        match done {
                            "created" => created += 1,
                            "updated" => updated += 1,
                            _ => deleted += 1,
                        }
                    }
                    Err(f) => {
                        println!("failed route {name}: {}", f.to_string().lines().next().unwrap_or_default());
                        failed.push(name);
                    }
                }
            }
            println!("{created} created, {updated} updated, {deleted} deleted, {unchanged} unchanged");
            if !failed.is_empty() {
                return Err(format!("{} route(s) not applied: {}", failed.len(), failed.join(", ")));
            }
        }
    }
    Ok(Done::Ok)
}

/// Reads the directory, then the gateway's routes, and compares them.
fn route_plan(s: &Session, dir: &RouteDir) -> Result<apply::Plan, String> {
    let files = apply::read_dir(&dir.dir)?;
    if files.is_empty() && dir.prune {
        return Err(format!("{} holds no *.json route files; refusing to prune every route", dir.dir.display()));
    }
    let current = s.list("/_gateway/routes", &[], "routes", &PageArgs::default())?;
    let current = current.get("routes").and_then(Value::as_array).cloned().unwrap_or_default();
    Ok(apply::plan(&files, &current, dir.prune))
}

fn read_route_file(path: &str) -> Result<Value, String> {
    let text = if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| format!("cannot read the route from stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", duration::printable(path)))?
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("`{}` is not JSON (line {}, column {})", duration::printable(path), e.line(), e.column()))?;
    if !v.is_object() {
        return Err(format!("`{}` must hold a JSON object (a route)", duration::printable(path)));
    }
    Ok(v)
}

fn endpoints(s: &Session, cmd: EndpointsCmd) -> Result<(), String> {
    match cmd {
        EndpointsCmd::Register { route, id, url, weight, via, lease, once } => {
            let path = format!("/_gateway/routes/{}/endpoints/{}", encode(&route), encode(&id));
            let mut body = EndpointSpec { id, url, weight, via }.to_json();
            if let Some(o) = body.as_object_mut() {
                o.remove("id");
                o.insert("lease_seconds".into(), json!(lease));
            }
            let register = HttpCall::put(path.clone(), body);
            if once {
                return print_json(&s.call(register)?);
            }
            let deregister = HttpCall::delete(path);
            // Fail at once on a missing URL or token; later calls resolve again, re-reading --token-file.
            let conn = s.resolve()?;
            api::target(&conn)?;
            let stop = keep::stop_on_signals()?;
            let mut send = |call: &HttpCall| api::send(&api::target(&conn).map_err(api::Failure::Other)?, call);
            keep::run(&register, &deregister, keep::Timing::for_lease(lease), stop, &mut send, &mut |m| eprintln!("gatewayctl: {m}"))
        }
        EndpointsCmd::Deregister { route, id } => {
            s.call(HttpCall::delete(format!("/_gateway/routes/{}/endpoints/{}", encode(&route), encode(&id))))?;
            println!("deregistered {}/{}", duration::printable(&route), duration::printable(&id));
            Ok(())
        }
    }
}

fn tokens(s: &Session, cmd: TokensCmd) -> Result<(), String> {
    match cmd {
        TokensCmd::Issue { spec, meta, token_only } => {
            let body = spec.spec()?.to_body(&meta);
            issued(&s.call(HttpCall::post("/_gateway/tokens", Some(body)))?, token_only)
        }
        TokensCmd::List { q, page, out } => {
            let v = s.list("/_gateway/tokens", &[("q", q.filter(|q| !q.is_empty()))], "tokens", &page)?;
            output::print(&v, out.output, output::tokens)
        }
        TokensCmd::Revoke { id } => {
            s.call(HttpCall::delete(format!("/_gateway/tokens/{}", encode(&id))))?;
            println!("revoked {}", duration::printable(&id));
            Ok(())
        }
        TokensCmd::Mint { spec } => {
            s.offline("tokens mint")?;
            let spec = spec.spec()?;
            let cfg = gateway_core::Config::from_lookup(&s.env)
                .map_err(|e| format!("{e}\n(token mint reads the gateway's settings from the environment; `gatewayctl keys generate` makes a key)"))?;
            let (token, claims) = offline::mint(&cfg, &spec, now()?)?;
            println!("{token}");
            eprintln!("minted {} for `{}` (groups: {}), expires {} (unix {})", claims.jti, claims.sub, claims.groups.join(","), format_unix(claims.exp), claims.exp);
            eprintln!("note: offline tokens have no record in the gateway: they are not listed, but `gatewayctl tokens revoke {}` revokes them by id.", claims.jti);
            if spec.ttl_seconds > offline::LONG_OFFLINE_TTL {
                eprintln!("warning: this offline token lives longer than a day; use it to issue recorded tokens with `gatewayctl tokens issue`.");
            }
            Ok(())
        }
    }
}

fn service_accounts(s: &Session, cmd: ServiceAccountsCmd) -> Result<(), String> {
    let path = |n: &str| format!("/_gateway/service-accounts/{}", encode(n));
    match cmd {
        ServiceAccountsCmd::List { page, out } => output::print(&s.list("/_gateway/service-accounts", &[], "service_accounts", &page)?, out.output, output::service_accounts),
        ServiceAccountsCmd::Create { name, owner, groups, description } => {
            let body = json!({ "name": name, "owner": owner, "groups": list(&groups), "description": description });
            print_json(&s.call(HttpCall::post("/_gateway/service-accounts", Some(body)))?)
        }
        ServiceAccountsCmd::Get { name, out } => output::print(&s.call(HttpCall::get(path(&name)))?, out.output, output::service_accounts),
        ServiceAccountsCmd::Delete { name } => print_json(&s.call(HttpCall::delete(path(&name)))?),
        ServiceAccountsCmd::IssueToken { name, token, rpm } => {
            let mut body = token.to_body();
            if let Some(n) = rpm {
                body["rate_limit_rpm"] = json!(n);
            }
            issued(&s.call(HttpCall::post(format!("{}/tokens", path(&name)), Some(body)))?, token.token_only)
        }
    }
}

fn budgets(s: &Session, cmd: BudgetsCmd) -> Result<(), String> {
    let path = |kind: BudgetKind, id: &str| format!("/_gateway/budgets/{}/{}", kind.segment(), encode(id));
    match cmd {
        BudgetsCmd::List { out } => output::print(&s.call(HttpCall::get("/_gateway/budgets"))?, out.output, output::budgets),
        BudgetsCmd::Set { kind, id, limits } => print_json(&s.call(HttpCall::put(path(kind, &id), limits.to_body()))?),
        BudgetsCmd::Delete { kind, id } => {
            s.call(HttpCall::delete(path(kind, &id)))?;
            println!("deleted budget {}/{}", kind.segment(), duration::printable(&id));
            Ok(())
        }
    }
}

fn me(s: &Session, args: MeArgs) -> Result<(), String> {
    match args.cmd {
        None => output::print(&s.call(HttpCall::get("/_gateway/me"))?, args.out.output, output::me),
        Some(MeCmd::Tokens(t)) => match t.cmd {
            None => output::print(&s.list("/_gateway/me/tokens", &[], "tokens", &t.page)?, t.out.output, output::tokens),
            Some(MeTokensCmd::Issue { token, groups }) => {
                let mut body = token.to_body();
                if let Some(g) = groups {
                    body["groups"] = json!(list(&g));
                }
                issued(&s.call(HttpCall::post("/_gateway/me/tokens", Some(body)))?, token.token_only)
            }
            Some(MeTokensCmd::Get { id, out }) => output::print(&s.call(HttpCall::get(format!("/_gateway/me/tokens/{}", encode(&id))))?, out.output, output::tokens),
            Some(MeTokensCmd::Revoke { id }) => {
                s.call(HttpCall::delete(format!("/_gateway/me/tokens/{}", encode(&id))))?;
                println!("revoked {}", duration::printable(&id));
                Ok(())
            }
        },
    }
}

fn keys(s: &Session, cmd: KeysCmd) -> Result<(), String> {
    match cmd {
        KeysCmd::List { out } => output::print(&s.call(HttpCall::get("/_gateway/keys"))?, out.output, output::keys),
        KeysCmd::Generate { kid, alg } => {
            s.offline("keys generate")?;
            let kid = match kid {
                Some(k) => k,
                None => {
                    let (y, m) = duration::year_month(now()?);
                    format!("k-{y:04}-{m:02}")
                }
            };
            println!("{}", offline::generate_keys_json(&kid, alg)?);
            eprintln!("{}", rotation_hint(&kid));
            Ok(())
        }
    }
}

fn metrics(s: &Session, args: MetricsArgs) -> Result<(), String> {
    if args.prometheus {
        let text = api::send_text(&s.target()?, &HttpCall::get("/_gateway/metrics/prometheus"), "text/plain").map_err(|f| f.to_string())?;
        // The exposition is the gateway's own text; strip what could drive the terminal.
        let clean: String = text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
        print!("{clean}");
        return Ok(());
    }
    let path = if args.per_token { "/_gateway/metrics?per_token=1" } else { "/_gateway/metrics" };
    let v = s.call(HttpCall::get(path))?;
    let table: fn(&Value) -> Table = if args.per_token { output::token_metrics } else { output::metrics };
    output::print(&v, args.out.output, table)
}

fn config_cmd(s: &Session, cmd: ConfigCmd) -> Result<(), String> {
    let path = config::path(s.env)?;
    let mut file = config::load(&path)?;
    match cmd {
        ConfigCmd::SetContext { name } => {
            if s.conn.context.is_some() {
                return Err("config set-context names its context as an argument, not with --context".into());
            }
            let cwd = std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
            for w in file.set_context(&name, &s.conn, &cwd)? {
                eprintln!("warning: {w}");
            }
            config::save(&path, &file)?;
            let current = if file.current_context.as_deref() == Some(name.as_str()) { " (current)" } else { "" };
            println!("context {}{current} saved in {}", duration::printable(&name), path.display());
        }
        ConfigCmd::UseContext { name } => {
            file.use_context(&name)?;
            config::save(&path, &file)?;
            println!("switched to context {}", duration::printable(&name));
        }
        ConfigCmd::DeleteContext { name } => {
            file.delete_context(&name)?;
            config::save(&path, &file)?;
            println!("deleted context {}", duration::printable(&name));
        }
        ConfigCmd::CurrentContext => match &file.current_context {
            Some(n) => println!("{n}"),
            None => return Err(format!("no current context in {} (gatewayctl config use-context NAME)", path.display())),
        },
        ConfigCmd::GetContexts { out } => {
            // Never print a token stored in a context, whatever the format.
            let contexts: Vec<Value> = file
                .contexts
                .iter()
                .map(|(name, c)| {
                    json!({
                        "name": name,
                        "current": file.current_context.as_deref() == Some(name.as_str()),
                        "server": c.server,
                        "token_file": c.token_file,
                        "token": c.token.as_ref().map(|_| "<stored>"),
                    })
                })
                .collect();
            let v = json!({ "current_context": file.current_context, "contexts": contexts });
            output::print(&v, out.output, |v| {
                let mut t = Table::new(&["CURRENT", "NAME", "SERVER", "TOKEN"]);
                for c in v["contexts"].as_array().into_iter().flatten() {
                    let token = if c["token_file"].is_string() { output::cell(&c["token_file"]) } else if c["token"].is_string() { "(stored)".into() } else { "-".into() };
                    t.row(vec![if c["current"] == true { "*".into() } else { String::new() }, output::cell(&c["name"]), output::cell(&c["server"]), token]);
                }
                t
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_hint_says_what_the_readme_says() {
        let h = rotation_hint("gw-2026-11");
        // README: add next to the current key, keep the signing kid; then switch it; remove when 0 outstanding.
        assert!(h.contains("next to the current"), "{h}");
        assert!(h.contains("keep GATEWAY_SIGNING_KID on the current key"), "{h}");
        assert!(h.contains("GATEWAY_SIGNING_KID=gw-2026-11"), "{h}");
        assert!(h.contains("0 tokens outstanding") && h.contains("GATEWAY_MAX_TOKEN_TTL_SECONDS"), "{h}");
        assert!(!h.contains("first in the existing array"), "the old hint made the new key sign at once");
    }

    #[test]
    fn offline_commands_refuse_connection_options() {
        let cli = Cli::try_parse_from(["gatewayctl", "--server", "https://gw", "keys", "generate"]).unwrap();
        assert!(execute(cli, &|_| None).unwrap_err().contains("works offline"));
        let cli = Cli::try_parse_from(["gatewayctl", "tokens", "mint", "--subject", "s", "--groups", "a", "--ttl", "1h", "--token-file", "t"]).unwrap();
        assert!(execute(cli, &|_| None).unwrap_err().contains("works offline"));
    }
}
