//! The gateway's own GETs at the edge ([`gateway_core::fetch::Fetcher`]): health
//! probes, endpoints' `/metrics` (through the endpoint's Workers VPC binding when
//! it has one) and identity providers' keys. No redirect followed; aborted at the
//! deadline; a 2xx body read only up to the cap.

use futures_util::future::{select, Either, LocalBoxFuture};
use futures_util::FutureExt;
use gateway_core::fetch::{self, Answer, FetchError, Fetcher, Get};
use std::time::Duration;
use worker::{Delay, Env, Fetch, Request, Response};

/// Makes GETs; `env` holds the VPC bindings a GET may go `via` (none: direct only).
pub(crate) struct Web<'a> {
    pub env: Option<&'a Env>,
}

impl Fetcher for Web<'_> {
    async fn get(&self, get: &Get<'_>) -> Result<Answer, FetchError> {
        let failed = |e: String| FetchError::Failed(e);
        let controller = web_sys::AbortController::new().map_err(|e| failed(format!("{e:?}")))?;
        let init = web_sys::RequestInit::new();
        init.set_method("GET");
        init.set_redirect(web_sys::RequestRedirect::Manual);
        init.set_signal(Some(&controller.signal()));
        let req = Request::from(web_sys::Request::new_with_str_and_init(get.url, &init).map_err(|e| failed(format!("{e:?}")))?);
        let sent: LocalBoxFuture<worker::Result<Response>> = match (get.via, self.env) {
            (Some(binding), Some(env)) => {
                let via = env.service(binding).map_err(|e| failed(e.to_string()))?;
                async move { via.fetch_request(req).await }.boxed_local()
            }
            (Some(binding), None) => return Err(failed(format!("no binding {binding} here"))),
            (None, _) => async move { Fetch::Request(req).send().await }.boxed_local(),
        };
        let max_bytes = get.max_bytes;
        let exchange = async move {
            let mut res = sent.await.map_err(|e| failed(e.to_string()))?;
            let status = res.status_code();
            let mut body = Vec::new();
            if max_bytes > 0 && (200..300).contains(&status) {
                let declared = res.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
                if fetch::declared_too_large(declared, max_bytes) {
                    return Err(FetchError::TooLarge);
                }
                // Capped while reading, also when no Content-Length was given.
                body = crate::read_capped(res.stream(), max_bytes).await.map_err(|e| failed(e.to_string()))?.ok_or(FetchError::TooLarge)?;
            }
            Ok(Answer { status, body })
        };
        match select(exchange.boxed_local(), Delay::from(Duration::from_millis(get.timeout_ms))).await {
            Either::Left((answer, _)) => answer,
            Either::Right(_) => {
                controller.abort();
                Err(FetchError::TimedOut)
            }
        }
    }
}
