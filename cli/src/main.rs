//! `gatewayctl`: the operator CLI of the AI gateway. Mints the first admin
//! token offline from the signing key, generates signing keys, and wraps the
//! admin API (`/_gateway/...`). See `gatewayctl --help`.

mod api;
mod args;
mod duration;
mod keep;
mod offline;

use args::{ApiCall, Command, USAGE};
use duration::format_unix;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a run ended.
enum Outcome {
    Ok,
    /// Exit 1 with a message.
    Failed(String),
    /// Exit 2 with a message and the usage text.
    Usage(String),
}

fn main() -> ExitCode {
    let args: Result<Vec<String>, _> = std::env::args_os().skip(1).map(|a| a.into_string()).collect();
    let outcome = match args {
        Ok(args) => run(&args),
        Err(_) => Outcome::Usage("arguments must be valid UTF-8".into()),
    };
    match outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Failed(m) => {
            eprintln!("gatewayctl: {m}");
            ExitCode::from(1)
        }
        Outcome::Usage(m) => {
            eprintln!("gatewayctl: {m}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn now() -> Result<u64, String> {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).map_err(|_| "the system clock is before 1970".to_string())
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn run(args: &[String]) -> Outcome {
    let cmd = match args::parse(args) {
        Ok(cmd) => cmd,
        Err(m) => return Outcome::Usage(m),
    };
    match execute(cmd) {
        Ok(()) => Outcome::Ok,
        Err(m) => Outcome::Failed(m),
    }
}

fn execute(cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Mint(spec) => {
            let cfg = gateway_core::Config::from_lookup(&env)
                .map_err(|e| format!("{e}\n(token mint reads the gateway's settings from the environment; `gatewayctl key generate` makes a key)"))?;
            let (token, claims) = offline::mint(&cfg, &spec, now()?)?;
            println!("{token}");
            eprintln!("minted {} for `{}` (groups: {}), expires {} (unix {})", claims.jti, claims.sub, claims.groups.join(","), format_unix(claims.exp), claims.exp);
            eprintln!("note: offline tokens have no record in the gateway: they are not listed, but `gatewayctl tokens revoke {}` revokes them by id.", claims.jti);
            if spec.ttl_seconds > offline::LONG_OFFLINE_TTL {
                eprintln!("warning: this offline token lives longer than a day; use it to issue recorded tokens with `gatewayctl tokens issue`.");
            }
            Ok(())
        }
        Command::KeyGenerate { kid } => {
            let kid = match kid {
                Some(k) => k,
                None => {
                    let (y, m) = duration::year_month(now()?);
                    format!("k-{y:04}-{m:02}")
                }
            };
            println!("{}", offline::generate_keys_json(&kid)?);
            eprintln!("set this as GATEWAY_SIGNING_KEYS (a secret). To rotate, put the new key first in the existing array and keep the old keys until their tokens expire.");
            Ok(())
        }
        Command::KeepRegistered { conn, route, endpoint, lease_seconds } => {
            let id = endpoint.id.clone();
            let register = ApiCall::RegisterEndpoint { route: route.clone(), endpoint, lease_seconds }.plan()?;
            let deregister = ApiCall::DeregisterEndpoint { route, id }.plan()?;
            // Fail at once on a missing URL or token; later calls resolve again, re-reading --token-file.
            api::resolve(&conn, &env)?;
            let stop = keep::stop_on_signals()?;
            let mut send = |call: &args::HttpCall| api::send(&api::resolve(&conn, &env).map_err(api::Failure::Other)?, call);
            keep::run(&register, &deregister, keep::Timing::for_lease(lease_seconds), stop, &mut send, &mut |m| eprintln!("gatewayctl: {m}"))
        }
        Command::Api { conn, call } => {
            let target = api::resolve(&conn, &env)?;
            let http = call.plan()?;
            let reply = api::send(&target, &http).map_err(|f| f.to_string())?;
            if let ApiCall::IssueToken { token_only: true, .. } = call {
                let token = reply.get("token").and_then(|t| t.as_str()).ok_or("the reply holds no token")?;
                println!("{token}");
                let id = reply.get("id").and_then(|v| v.as_str()).unwrap_or("?");
                match reply.get("expires_at").and_then(|v| v.as_u64()) {
                    Some(exp) => eprintln!("issued {id}, expires {} (unix {exp})", format_unix(exp)),
                    None => eprintln!("issued {id}"),
                }
                return Ok(());
            }
            if !reply.is_null() {
                let text = serde_json::to_string_pretty(&reply).map_err(|e| e.to_string())?;
                println!("{text}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::args::{self, *};
    use gateway_core::token::TokenKind;
    use serde_json::json;

    fn parse(line: &str) -> Result<Command, String> {
        let v: Vec<String> = line.split_whitespace().map(String::from).collect();
        args::parse(&v)
    }

    fn api(line: &str) -> (Conn, ApiCall) {
        match parse(line) {
            Ok(Command::Api { conn, call }) => (conn, call),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn mint_arguments() {
        let cmd = parse("token mint --subject ops --groups admin,ml-team --ttl 1h").unwrap();
        assert_eq!(
            cmd,
            Command::Mint(TokenSpec {
                rate_limit_rpm: None,
                subject: "ops".into(),
                kind: TokenKind::User,
                groups: vec!["admin".into(), "ml-team".into()],
                routes: None,
                ttl_seconds: 3600,
                description: String::new(),
                registrar: None,
            })
        );
        let Ok(Command::Mint(s)) = parse("token mint --subject=acme --kind partner --routes llama,qwen --groups= --ttl=900 --description bootstrap") else {
            panic!()
        };
        assert_eq!((s.kind, s.routes, s.groups.len(), s.ttl_seconds), (TokenKind::Partner, Some(vec!["llama".into(), "qwen".into()]), 0, 900));
        assert!(parse("token mint --subject ops --groups admin").unwrap_err().contains("--ttl"));
        assert!(parse("token mint --subject ops --groups admin --ttl forever").unwrap_err().contains("duration"));
        assert!(parse("token mint --subject ops --groups admin --ttl 1h --kind root").unwrap_err().contains("--kind"));
        assert!(parse("token mint --subject ops --subject x --groups a --ttl 1h").unwrap_err().contains("more than once"));
        assert!(parse("token mint --subject ops --groups a --ttl").unwrap_err().contains("needs a value"));
        assert!(parse("token mint --subject ops --groups a --ttl 1h extra").unwrap_err().contains("unexpected"));
        assert!(parse("--url https://gw token mint --subject ops --groups a --ttl 1h").unwrap_err().contains("offline"));
        assert!(parse("token mint --subject ops --groups a --ttl 1h --url https://gw").unwrap_err().contains("unknown option"));
    }

    #[test]
    fn endpoints_register_keeps_the_lease_unless_once() {
        let Ok(Command::KeepRegistered { conn, route, endpoint, lease_seconds }) =
            parse("endpoints register llama gpu-1 --url http://10.0.1.7:8000 --gateway https://gw --token-file /run/secrets/gw")
        else {
            panic!()
        };
        assert_eq!((route.as_str(), endpoint.id.as_str(), endpoint.url.as_str(), lease_seconds), ("llama", "gpu-1", "http://10.0.1.7:8000", 60));
        assert_eq!((conn.url.as_deref(), conn.token_file.as_deref()), (Some("https://gw"), Some("/run/secrets/gw")));
        let Ok(Command::KeepRegistered { lease_seconds, endpoint, .. }) = parse("--token-file t endpoints register llama gpu-1 --url http://h --lease 5m --weight 3") else {
            panic!()
        };
        assert_eq!((lease_seconds, endpoint.weight), (300, Some(3)));
        assert!(matches!(parse("endpoints register llama gpu-1 --url http://h --once"), Ok(Command::Api { call: ApiCall::RegisterEndpoint { lease_seconds: 60, .. }, .. })));
        assert!(parse("endpoints register llama gpu-1 --url http://h --lease 4s").unwrap_err().contains("--lease must be between 5"));
        assert!(parse("endpoints register llama gpu-1 --url http://h --lease 2d").unwrap_err().contains("--lease"));
        assert!(parse("endpoints register llama gpu-1 --url http://h --once=yes").unwrap_err().contains("takes no value"));
        assert!(parse("endpoints register llama gpu-1").unwrap_err().contains("--url"));
        assert!(parse("--token-file a endpoints register llama gpu-1 --url http://h --token-file b").unwrap_err().contains("more than once"));
        assert!(parse("--token-file t token mint --subject s --groups a --ttl 1h").unwrap_err().contains("offline"));
    }

    #[test]
    fn registrar_tokens_from_options() {
        let (_, call) = api("tokens issue --kind registrar --subject gpu-host-7 --routes llama,qwen --registrar-hosts 10.0.1.0/24,gpu-*.vllm.internal --max-weight 4 --max-lease 5m --ttl 30d");
        let http = call.plan().unwrap();
        assert_eq!(
            http.body.unwrap(),
            json!({
                "subject": "gpu-host-7", "kind": "registrar", "groups": [], "routes": ["llama", "qwen"], "ttl_seconds": 2_592_000, "description": "",
                "registrar": {"hosts": ["10.0.1.0/24", "gpu-*.vllm.internal"], "max_weight": 4, "max_lease_seconds": 300, "max_endpoints": 1},
            })
        );
        let (_, call) = api("tokens issue --kind registrar --subject h --routes llama --registrar-hosts 10.0.0.7 --max-endpoints 2 --ttl 1d --token-only");
        assert_eq!(call.plan().unwrap().body.unwrap()["registrar"], json!({"hosts": ["10.0.0.7"], "max_weight": 1, "max_lease_seconds": 300, "max_endpoints": 2}));
        assert!(parse("tokens issue --kind registrar --subject h --routes llama --ttl 1d").unwrap_err().contains("--registrar-hosts is required"));
        assert!(parse("tokens issue --subject h --groups g --registrar-hosts 10.0.0.7 --ttl 1d").unwrap_err().contains("--registrar-hosts is for --kind registrar"));
        assert!(parse("tokens issue --kind user --subject h --groups g --max-weight 2 --ttl 1d").unwrap_err().contains("--max-weight is for --kind registrar"));
        assert!(parse("tokens issue --kind registrar --subject h --routes l --registrar-hosts 10.0.0.7 --max-weight lots --ttl 1d").unwrap_err().contains("whole number"));
        assert!(parse("tokens issue --subject h --ttl 1d").unwrap_err().contains("--groups is required"));
        // Offline minting follows the same rules, checked by core when minting.
        let Ok(Command::Mint(spec)) = parse("token mint --kind registrar --subject h --routes llama --registrar-hosts 10.0.1.0/24 --ttl 1h") else { panic!() };
        assert_eq!((spec.kind, spec.registrar.map(|r| r.hosts)), (TokenKind::Registrar, Some(vec!["10.0.1.0/24".to_string()])));
    }

    #[test]
    fn help_and_unknowns() {
        assert_eq!(parse("--help"), Ok(Command::Help));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("routes put x -h"), Ok(Command::Help));
        assert!(parse("").is_err());
        assert!(parse("routes").unwrap_err().contains("subcommand"));
        assert!(parse("routes frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse("routes list --verbose").unwrap_err().contains("unknown option"));
        assert_eq!(parse("key generate --kid k-1"), Ok(Command::KeyGenerate { kid: Some("k-1".into()) }));
    }

    #[test]
    fn gateway_url_and_token_before_or_after() {
        let (conn, call) = api("--url https://gw --token a.b.c routes list");
        assert_eq!((conn.url.as_deref(), conn.token.as_deref(), call), (Some("https://gw"), Some("a.b.c"), ApiCall::ListRoutes));
        let (conn, _) = api("routes get llama --url https://gw");
        assert_eq!(conn.url.as_deref(), Some("https://gw"));
        assert!(parse("--url https://a routes list --url https://b").unwrap_err().contains("more than once"));
        // `--url` after `ephemeral create` is the endpoint's; the gateway's goes before.
        let (conn, call) = api("--url https://gw ephemeral create --url http://10.0.0.5:8000 --ttl 2h --groups dev,ml");
        assert_eq!(conn.url.as_deref(), Some("https://gw"));
        assert_eq!(call, ApiCall::CreateEphemeral { url: "http://10.0.0.5:8000".into(), ttl_seconds: 7200, groups: vec!["dev".into(), "ml".into()] });
        let (conn, _) = api("ephemeral create --gateway https://gw --url http://h:1 --ttl 2h");
        assert_eq!(conn.url.as_deref(), Some("https://gw"));
        // The token never shows in debug output.
        assert!(!format!("{conn:?}").contains("a.b.c"));
        let (conn, _) = api("--token a.b.c routes list");
        assert!(!format!("{conn:?}").contains("a.b.c"));
    }

    #[test]
    fn routes_put_from_options() {
        let (_, call) = api("routes put llama --endpoint a=http://10.0.1.5:8000 --endpoint b=http://10.0.1.6:8000,weight=3 --groups ml-team");
        let http = call.plan().unwrap();
        assert_eq!((http.method, http.path.as_str()), ("PUT", "/_gateway/routes/llama"));
        assert_eq!(
            http.body.unwrap(),
            json!({
                "endpoints": [{"id": "a", "url": "http://10.0.1.5:8000"}, {"id": "b", "url": "http://10.0.1.6:8000", "weight": 3}],
                "auth": {"required": true, "groups": ["ml-team"]},
            })
        );
        let (_, call) = api("routes put docs --endpoint a=https://h,via=VPC --public");
        assert_eq!(call.plan().unwrap().body.unwrap()["auth"], json!({"required": false, "groups": []}));
        assert!(parse("routes put llama --file r.json --public").unwrap_err().contains("cannot be combined"));
        assert!(parse("routes put llama").unwrap_err().contains("--file"));
        assert!(parse("routes put llama --endpoint a").unwrap_err().contains("id=url"));
        assert!(parse("routes put llama --endpoint a=http://h,weight=x").unwrap_err().contains("weight"));
        assert!(parse("routes put llama --endpoint a=http://h,colour=red").unwrap_err().contains("colour"));
        assert_eq!(api("routes put llama --file r.json").1, ApiCall::PutRoute { name: "llama".into(), body: RouteBody::File("r.json".into()) });
        assert!(api("routes put llama --file /nonexistent/r.json").1.plan().unwrap_err().contains("cannot read"));
    }

    #[test]
    fn endpoints_tokens_audit() {
        let (_, call) = api("--url https://gw endpoints register llama gpu-1 --url http://10.0.1.7:8000 --weight 2 --lease 60s --once");
        let http = call.plan().unwrap();
        assert_eq!((http.method, http.path.as_str()), ("PUT", "/_gateway/routes/llama/endpoints/gpu-1"));
        assert_eq!(http.body.unwrap(), json!({"url": "http://10.0.1.7:8000", "weight": 2, "lease_seconds": 60}));
        assert!(parse("endpoints register llama --url http://h --lease 60").unwrap_err().contains("missing ID"));

        let (_, call) = api("endpoints deregister llama gpu-1");
        assert_eq!(call.plan().unwrap().method, "DELETE");

        let (_, call) = api("tokens issue --subject bob --kind service --groups ml-team --routes llama --ttl 30d --description nb --meta team=ml");
        let http = call.plan().unwrap();
        assert_eq!((http.method, http.path.as_str()), ("POST", "/_gateway/tokens"));
        assert_eq!(
            http.body.unwrap(),
            json!({"subject": "bob", "kind": "service", "groups": ["ml-team"], "routes": ["llama"], "ttl_seconds": 2_592_000, "description": "nb", "metadata": {"team": "ml"}})
        );
        assert!(matches!(api("tokens issue --subject b --groups g --ttl 1h --token-only").1, ApiCall::IssueToken { token_only: true, .. }));

        let list = ["tokens", "list", "--q", "a b&c/d"].map(String::from);
        let Ok(Command::Api { call, .. }) = args::parse(&list) else { panic!() };
        assert_eq!(call.plan().unwrap().path, "/_gateway/tokens?q=a%20b%26c%2Fd");
        // Path segments cannot climb out of their place.
        assert_eq!(api("tokens revoke ../routes").1.plan().unwrap().path, "/_gateway/tokens/..%2Froutes");
        assert_eq!(api("routes delete x?y").1.plan().unwrap().path, "/_gateway/routes/x%3Fy");

        assert_eq!(api("audit").1.plan().unwrap().path, "/_gateway/audit");
        assert_eq!(api("audit --limit 20 --before 99").1.plan().unwrap().path, "/_gateway/audit?limit=20&before=99");
        assert!(parse("audit --limit many").unwrap_err().contains("whole number"));
        assert!(parse("audit extra").unwrap_err().contains("unexpected"));
    }
}
