//! Lambda entry point: read configuration once per cold start, build the
//! long-lived clients once, then serve streamed responses; or, with
//! `GATEWAY_MODE=probe`, run one round of health probes per scheduled event.

// The streamed response body's type (guarded upstream stream in boxed HTTP bodies) nests
// deeper than the compiler's default layout depth.
#![recursion_limit = "256"]

use gateway_core::Config;
use gateway_lambda::handler::{handle, App};
use gateway_lambda::settings::{Mode, Settings};
use gateway_lambda::store::DynamoStore;
use lambda_http::lambda_runtime::{self, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let level = gateway_lambda::logging::filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
    );
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_target(false) // no module name in every line
        .without_time() // CloudWatch adds the ingestion time
        .with_current_span(true) // the request's `request_id` and `trace_id`
        .with_span_list(false)
        .init();
    // Local development only (`scripts/dev.sh --lambda`): create the table in a local
    // DynamoDB (moto) exactly as Terraform declares it, then exit. Lambda passes no arguments.
    // The adapter's own settings, once (GATEWAY_MODE, GATEWAY_TABLE, GATEWAY_EMF_NAMESPACE…).
    let settings = Settings::from_env().map_err(|e| {
        tracing::error!(setting = e.setting, "{e}");
        e
    })?;
    let table = || {
        settings.table().map_err(|e| {
            tracing::error!(setting = e.setting, "{e}");
            e
        })
    };
    if std::env::args().nth(1).as_deref() == Some("create-table") {
        let table = table()?;
        let aws = aws_config::load_from_env().await;
        return gateway_lambda::table::create_table(&aws_sdk_dynamodb::Client::new(&aws), &table).await.map_err(Into::into);
    }
    let aws = aws_config::load_from_env().await;
    // Secrets Manager first (GATEWAY_SECRETS_ARN), once; then the settings read through it.
    let secrets = gateway_lambda::secrets::load(&aws).await.map_err(|e| {
        tracing::error!(setting = gateway_lambda::secrets::SECRETS_ARN, "{e}");
        e
    })?;
    if !secrets.names().is_empty() {
        tracing::info!(names = ?secrets.names(), "settings read from Secrets Manager");
    }
    let lookup = |k: &str| secrets.get(k);
    let tls = gateway_lambda::tls::UpstreamTls::from_lookup(&lookup).map_err(|e| {
        tracing::error!(setting = e.setting, "{e}");
        e
    })?;
    if settings.mode == Mode::Probe {
        // The prober needs the table and what reaches the endpoints (TLS), no signing keys.
        let table = table()?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table).with_tls(tls);
        // Any event (an EventBridge schedule's, or `{}` by hand) runs one round.
        return lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<serde_json::Value>| {
            let store = store.clone();
            async move {
                let started = now_ms();
                let report = gateway_lambda::probe::round(&store, started / 1000).await?;
                // Then vLLM's load readings every 10 s until the next scheduled run is near:
                // at most 50 s, and never past the invocation's own deadline.
                let until = event.context.deadline.min(started + 50_000);
                let rounds = gateway_lambda::probe::load_rounds(&store, until, now_ms).await;
                let mut out = serde_json::to_value(report)?;
                out["load_rounds"] = rounds.into();
                Ok::<_, lambda_http::Error>(out)
            }
        }))
        .await;
    }
    // A bad setting is fatal at start, with the setting's name (never its value).
    let cfg = Config::from_lookup(&lookup).map_err(|e| {
        tracing::error!(setting = e.setting, "{e}");
        e
    })?;
    // The secrets routes may send upstream (`upstream_api_key_secret`), resolved once.
    let cfg = cfg.with_upstream_secrets(gateway_core::config::UpstreamSecrets::from_settings(secrets.all_settings()));
    let table = table()?;
    // Every DynamoDB call of the data plane (and the admin API) is bounded, retries included,
    // so an unreachable store answers within GATEWAY_STORE_TIMEOUT_MS rather than hanging.
    // The data plane's reads use GATEWAY_STORE_TIMEOUT_MS (App); admin writes and metric
    // batches get at least 10 s, so a slow store does not cut a write short half-known.
    let dynamo = gateway_lambda::store::client_with_timeout(&aws, std::time::Duration::from_millis(cfg.store_timeout_ms.max(10_000)));
    let app = Arc::new(App::new(cfg, &settings, dynamo, table).with_upstream(tls));
    // Metrics are written in batches off the request path; when Lambda retires the instance
    // (SIGTERM, about 500 ms) the last batch is written, so nothing is lost.
    if settings.shutdown_hook {
        let app = app.clone();
        lambda_runtime::spawn_graceful_shutdown_handler(move || async move { app.shutdown().await }).await;
    }
    // The runtime loop ends when a streamed response cannot be delivered (the client went
    // away mid-stream); the instance itself is healthy, so ask for the next invocation again
    // rather than exiting into a cold start. Only loops that end without serving anything
    // (the Runtime API unreachable) count towards giving up.
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut idle_failures = 0u32;
    loop {
        let (app, counter) = (app.clone(), served.clone());
        let before = served.load(std::sync::atomic::Ordering::SeqCst);
        let ended = lambda_http::run_with_streaming_response(lambda_http::service_fn(move |req| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            handle(app.clone(), req)
        }))
        .await;
        if served.load(std::sync::atomic::Ordering::SeqCst) > before {
            idle_failures = 0;
        }
        match ended {
            Ok(()) => return Ok(()),
            Err(e) if idle_failures < 5 => {
                idle_failures += 1;
                tracing::warn!(error = %e, "runtime loop ended; resuming");
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(idle_failures))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
