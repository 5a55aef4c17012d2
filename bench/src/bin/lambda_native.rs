//! `bench-lambda-native --port PORT`: the Lambda gateway's handler
//! (`gateway_lambda::handler::handle`, the same `App` the Lambda binary builds) served by a
//! plain hyper HTTP/1.1 server on 127.0.0.1, with no Runtime API emulator in between.
//!
//! Configuration is the Lambda's: `GATEWAY_*` and `GATEWAY_TABLE` from the environment,
//! DynamoDB from `AWS_ENDPOINT_URL` (moto in the benchmarks). Each request is turned into
//! the `lambda_http::Request` a Function URL would deliver: the whole body in the event
//! and `X-Forwarded-Proto: https`.

#![recursion_limit = "256"]

use bytes::Bytes;
use gateway_core::Config;
use gateway_lambda::handler::{handle, App};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The same JSON request log the Lambda binary writes (to stdout, which the harness sends to a file).
    tracing_subscriber::fmt().json().with_max_level(tracing::Level::INFO).with_target(false).without_time().with_current_span(false).init();
    let mut args = std::env::args().skip(1);
    let mut port: u16 = 0;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other}; usage: bench-lambda-native --port PORT").into()),
        }
    }
    let cfg = Config::from_lookup(&|k| std::env::var(k).ok()).map_err(|e| format!("{e}"))?;
    let settings = gateway_lambda::settings::Settings::from_env().map_err(|e| format!("{e}"))?;
    let table = settings.table().map_err(|e| format!("{e}"))?;
    let aws = aws_config::load_from_env().await;
    let app = Arc::new(App::new(cfg, &settings, aws_sdk_dynamodb::Client::new(&aws), table));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<Incoming>| {
                let app = app.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    let bytes: Bytes = match body.collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(e) => return Err(e),
                    };
                    // A Function URL terminates TLS and says so.
                    if !parts.headers.contains_key("x-forwarded-proto") {
                        parts.headers.insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
                    }
                    let body = if bytes.is_empty() { lambda_http::Body::Empty } else { lambda_http::Body::Binary(bytes.to_vec()) };
                    let res = match handle(app, lambda_http::Request::from_parts(parts, body)).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    };
                    Ok::<_, hyper::Error>(res)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
