//! `stand-in-vllm`: runs one stand-in vLLM server until interrupted (for the local demo).
//!
//! Usage: `stand-in-vllm --name NAME --port PORT [--host 127.0.0.1] [--api-key KEY]`

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use gateway_standin::{StandIn, StandInOptions};

const USAGE: &str =
    "usage: stand-in-vllm --name NAME --port PORT [--host 127.0.0.1] [--api-key KEY]";

/// Parsed command line.
struct Args {
    name: String,
    port: u16,
    host: IpAddr,
    api_key: Option<String>,
}

/// Parses `--flag value` and `--flag=value` forms; `Ok(None)` means `--help` was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut name = None;
    let mut port = None;
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut api_key = None;

    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag.as_str() {
            "--name" => {
                let v = value()?;
                if v.is_empty() {
                    return Err("--name must not be empty".into());
                }
                name = Some(v);
            }
            "--port" => {
                let v = value()?;
                port = Some(
                    v.parse::<u16>()
                        .map_err(|_| format!("--port: {v:?} is not a port number (0-65535)"))?,
                );
            }
            "--host" => {
                let v = value()?;
                host = v
                    .parse::<IpAddr>()
                    .map_err(|_| format!("--host: {v:?} is not an IP address"))?;
            }
            "--api-key" => api_key = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }

    Ok(Some(Args {
        name: name.ok_or("--name is required")?,
        port: port.ok_or("--port is required")?,
        host,
        api_key,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("stand-in-vllm: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let opts = StandInOptions {
        name: args.name,
        api_key: args.api_key,
        port: args.port,
    };
    let server = match StandIn::start_on(args.host, opts).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "stand-in-vllm: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            return ExitCode::FAILURE;
        }
    };
    // Why print the bound address: with --port 0 this is the only way to learn it.
    println!(
        "stand-in-vllm {} listening on http://{}",
        server.name(),
        server.addr()
    );

    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("stand-in-vllm: cannot wait for Ctrl-C ({e}); exiting");
        return ExitCode::FAILURE;
    }
    server.stop().await;
    ExitCode::SUCCESS
}
