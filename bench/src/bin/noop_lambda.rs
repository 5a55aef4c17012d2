//! `bench-noop-lambda`: a lambda_http streaming function that answers every request with
//! 200 "ok" at once. Run under `cargo lambda watch --only-lambda-apis` (as the gateway is),
//! it measures what the Runtime API emulator alone adds to a request.

use bytes::Bytes;
use http_body_util::Full;
use std::convert::Infallible;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let handler = lambda_http::service_fn(|_req: lambda_http::Request| async {
        let res = http::Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"ok")))
            .expect("static response");
        Ok::<_, Infallible>(res)
    });
    // As gateway-lambda does: a client that hangs up mid-stream ends the runtime loop;
    // start it again rather than exit.
    loop {
        match lambda_http::run_with_streaming_response(handler).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("runtime loop ended: {e}; resuming");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
