//! HTTP: /metrics, /healthz, /readyz, /bindings (read-only) and the Alertmanager
//! webhook receiver, served by a bounded connection loop ([`server`]).

pub mod server;
pub mod webhook;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tracing::warn;

use crate::detectors::metrics::Metrics;

/// Readiness: `None` when ready, else why not.
#[derive(Default)]
pub struct Health {
    not_ready: Mutex<Option<String>>,
}

impl Health {
    pub fn starting() -> Self {
        Health {
            not_ready: Mutex::new(Some("starting".into())),
        }
    }

    pub fn set(&self, not_ready: Option<String>) {
        *self.not_ready.lock().expect("health lock") = not_ready;
    }
}

/// A quarantine request from an alert, answered by the task that owns the engine.
pub struct AlertCommand {
    pub request: crate::quarantine::Request,
    pub reply: oneshot::Sender<crate::control::reply::Answer>,
}

/// The webhook receiver's token and where it sends requests.
#[derive(Clone)]
pub struct Webhook {
    /// `None` when the token file could not be read: every request gets 503.
    pub token: Option<Arc<String>>,
    pub commands: mpsc::Sender<AlertCommand>,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    webhook: Option<Webhook>,
    bindings: Arc<crate::detectors::arp::bindings::View>,
}

#[derive(serde::Deserialize)]
struct BindingsQuery {
    interface: Option<String>,
}

/// GET /bindings[?interface=IF]: the live IP -> MAC bindings (read-only JSON).
async fn bindings(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<BindingsQuery>,
) -> axum::Json<Value> {
    let rows = tokio::task::spawn_blocking(move || s.bindings.rows(q.interface.as_deref()))
        .await
        .unwrap_or_default();
    axum::Json(json!({"bindings": rows}))
}

async fn alertmanager(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> (StatusCode, axum::Json<Value>) {
    let Some(hook) = s.webhook else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "webhook disabled"})),
        );
    };
    let Some(token) = hook.token else {
        warn!("webhook request refused: token file unreadable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "webhook token unavailable; see the agent log"})),
        );
    };
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !crate::http::webhook::token_ok(auth, &token) {
        s.metrics.agent.record_refusal("http", "unauthorized");
        warn!("webhook request refused: missing or wrong bearer token");
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "missing or wrong bearer token"})),
        );
    }
    // The body is read only once the caller is known, within a size and a time limit.
    let read = axum::body::to_bytes(body, server::MAX_BODY_BYTES);
    let body = match tokio::time::timeout(server::BODY_TIMEOUT, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            s.metrics.agent.record_refusal("http", "body_too_large");
            warn!(error = %e, limit = server::MAX_BODY_BYTES, "webhook request refused: body too large or unreadable");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(
                    json!({"error": format!("body over {} bytes or unreadable", server::MAX_BODY_BYTES)}),
                ),
            );
        }
        Err(_) => {
            s.metrics.agent.record_refusal("http", "body_timeout");
            warn!(timeout = ?server::BODY_TIMEOUT, "webhook request refused: body not received in time");
            return (
                StatusCode::REQUEST_TIMEOUT,
                axum::Json(json!({"error": "body not received in time"})),
            );
        }
    };
    let payload: crate::http::webhook::Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            s.metrics.agent.record_refusal("http", "malformed");
            warn!(error = %e, "webhook request refused: malformed payload");
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("malformed Alertmanager payload: {e}")})),
            );
        }
    };
    let mut requests = Vec::new();
    for (i, alert) in payload.alerts.iter().enumerate() {
        match crate::http::webhook::to_request(alert) {
            Ok(Some(r)) => requests.push(r),
            Ok(None) => {}
            Err(e) => {
                warn!(alert = i, error = %e, "webhook request refused: bad nodeward labels");
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": format!("alert {i}: {e}")})),
                );
            }
        }
    }
    let mut outcomes = Vec::new();
    for request in requests {
        let (tx, rx) = oneshot::channel();
        if hook
            .commands
            .send(AlertCommand { request, reply: tx })
            .await
            .is_err()
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "agent shutting down"})),
            );
        }
        let answer = rx.await.unwrap_or_else(|_| Err("no answer".into()));
        outcomes.push(crate::control::reply::to_value(&answer));
    }
    (StatusCode::OK, axum::Json(json!({"outcomes": outcomes})))
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || s.metrics.render())
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.not_ready.lock().expect("health lock").clone() {
        None => (StatusCode::OK, "ready\n".into()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

pub fn router(
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    webhook: Option<Webhook>,
    bindings_view: Arc<crate::detectors::arp::bindings::View>,
) -> Router {
    Router::new()
        .route("/bindings", get(bindings))
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/alertmanager", post(alertmanager))
        .with_state(AppState {
            metrics,
            health,
            webhook,
            bindings: bindings_view,
        })
}

/// Bind first (so a busy port is a clear start-up error), then serve until `shutdown`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    webhook: Option<Webhook>,
    bindings_view: Arc<crate::detectors::arp::bindings::View>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let agent = metrics.agent.clone();
    server::serve(
        listener,
        router(metrics, health, webhook, bindings_view),
        agent,
        server::Limits::default(),
        shutdown,
    )
    .await
}
