//! `/healthz` and `/metrics` over plain HTTP, for probes and Prometheus.

use crate::service::Hub;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;

async fn respond(
    hub: Arc<Hub>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (status, body) = match req.uri().path() {
        "/healthz" => {
            if hub.nats.connection_state() == async_nats::connection::State::Connected {
                (StatusCode::OK, "ok\n".to_string())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "NATS disconnected\n".to_string(),
                )
            }
        }
        "/metrics" => match hub.metrics_text() {
            Ok(text) => (StatusCode::OK, text),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts"))
}

/// Serves until the listener fails.
pub async fn serve(hub: Arc<Hub>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let hub = hub.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| respond(hub.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
