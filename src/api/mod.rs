//! The HTTP edge: routes, shared handler state, errors and HTTP metrics.
//!
//! [`app`] assembles the router from the handler files (the web console's files `console`,
//! `health`, `metrics`, the API description `openapi`, `conversations`,
//! `messages`, the WebSocket upgrade `ws`, and the event bus's `topics`, `records` and consumer
//! `groups`) and wraps it in the body-size limit and the one [`edge`] layer: the request ids
//! and access log of [`access`], the browser-origin rules of [`origins`] (CORS, the sockets'
//! `Origin` check), the request-latency metric, and the request limits of [`http_limits`]
//! (which also turns axum's text rejections into problem+json);
//! [`connections`] serves it on a listener within the connection limits; [`AppState`] is what
//! every handler can reach. Errors are [`ApiError`](problem::ApiError)s, answered as problem+json
//! ([`problem`]). axum is used here and in `server.rs` only.
//!
//! This module does not bind sockets, open the log or decide when to stop: `server.rs` does, and
//! hands the open log, store and pipeline to the state ([`AppState::attach_log`],
//! [`AppState::attach_chat`]); the hub is created with the state. Chat helpers shared by the handlers: `idempotency` (retried sends)
//! and `rate_limit` (the per-user write budget).

pub(crate) mod access;
pub(crate) mod auth;
pub(crate) mod connections;
pub(crate) mod console;
pub(crate) mod conversations;
pub(crate) mod dlq;
pub(crate) mod edge;
pub(crate) mod groups;
pub(crate) mod health;
pub(crate) mod http_limits;
pub(crate) mod idempotency;
pub(crate) mod messages;
pub(crate) mod metrics;
pub(crate) mod openapi;
pub(crate) mod origins;
pub(crate) mod problem;
pub(crate) mod rate_limit;
pub(crate) mod records;
pub(crate) mod signalr;
pub(crate) mod socketio;
pub(crate) mod topics;
pub(crate) mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::bus::Coordinator;
use crate::cluster::groups::Groups;
use crate::cluster::ClusterNode;
use crate::config::Config;
use crate::hub::{fd_limit, Hub};
use crate::log::Log;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineError, WorkerHealth};
use crate::store::Store;
use idempotency::Sends;
use problem::ApiError;
use rate_limit::{RateLimiter, WriteCost};

/// The chat service the handlers reach once the server started it: the store (reads and
/// conversation commands) and the pipeline (appends of messages, edits, deletes, reads).
#[derive(Clone, Debug)]
pub(crate) struct Chat {
    /// The chat read model.
    pub store: Store,
    /// The write-behind pipeline that appends and applies chat commands.
    pub pipeline: Pipeline,
}

/// What handlers share: configuration, the log once it is open, readiness, metrics, and the
/// server's shutdown signal and task tracker (for work that outlives one request). One `Arc`:
/// axum clones the state for every extractor that asks for it, so a clone is one reference
/// count, not one per field (cloning the fields was ~4 % of a publish's CPU).
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    inner: Arc<Shared>,
}

/// The state behind [`AppState`]'s one reference count.
#[derive(Debug)]
struct Shared {
    config: Config,
    authenticator: OnceLock<Authenticator>,
    log: OnceLock<Log>,
    chat: OnceLock<Chat>,
    cluster: OnceLock<ClusterNode>,
    bus: Arc<Coordinator>,
    sends: Arc<Sends>,
    limiter: RateLimiter,
    hub: Hub,
    workers: WorkerHealth,
    ready: AtomicBool,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    session_readers: TaskTracker,
    signalr: signalr::Negotiations,
    socketio: socketio::Connections,
}

impl AppState {
    /// A state with no log yet (so not ready), fresh metrics, an empty hub (its session
    /// maximum resolved against the open-file limit in force) and a fresh shutdown signal.
    pub(crate) fn new(config: Config) -> AppState {
        let limiter = RateLimiter::new(config.limits.rate_limit);
        let max_sessions = fd_limit::max_sessions(config.ws.max_sessions);
        let hub = Hub::new(config.ws.hub_config(max_sessions));
        AppState {
            inner: Arc::new(Shared {
                config,
                authenticator: OnceLock::new(),
                log: OnceLock::new(),
                chat: OnceLock::new(),
                cluster: OnceLock::new(),
                bus: Arc::new(Coordinator::default()),
                sends: Arc::new(Sends::default()),
                limiter,
                hub,
                workers: WorkerHealth::default(),
                ready: AtomicBool::new(false),
                metrics: Metrics::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                session_readers: TaskTracker::new(),
                signalr: signalr::Negotiations::default(),
                socketio: socketio::Connections::default(),
            }),
        }
    }

    /// Verifies callers' tokens; 503 until the server has loaded its secret (right after the
    /// log opened, so that a foreign data directory is refused before anything is written).
    pub(crate) fn authenticator(&self) -> Result<&Authenticator, ApiError> {
        self.inner.authenticator.get().ok_or(ApiError::NotReady)
    }

    /// Hands the token verifier to the handlers; the first one attached stays.
    pub(crate) fn attach_authenticator(&self, authenticator: Authenticator) {
        if self.inner.authenticator.set(authenticator).is_err() {
            tracing::warn!("an authenticator was attached twice; keeping the first");
        }
    }

    /// The configuration the server runs with.
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The open log, or `NotReady` (503) while it is still being opened.
    pub(crate) fn log(&self) -> Result<&Log, ApiError> {
        self.inner.log.get().ok_or(ApiError::NotReady)
    }

    /// Hands the opened log to the handlers. The first log attached stays; a second call is
    /// a wiring mistake and is logged.
    pub(crate) fn attach_log(&self, log: Log) {
        if self.inner.log.set(log).is_err() {
            tracing::warn!("a log was attached twice; keeping the first");
        }
    }

    /// The chat store and pipeline, or `NotReady` (503) until the server started them.
    pub(crate) fn chat(&self) -> Result<&Chat, ApiError> {
        self.inner.chat.get().ok_or(ApiError::NotReady)
    }

    /// Hands the started store and pipeline to the handlers; the first attached stays.
    pub(crate) fn attach_chat(&self, chat: Chat) {
        if self.inner.chat.set(chat).is_err() {
            tracing::warn!("a chat service was attached twice; keeping the first");
        }
    }

    /// The consumer-group coordinator of the HTTP event bus.
    pub(crate) fn bus(&self) -> &Coordinator {
        &self.inner.bus
    }

    /// The HTTP consumer groups as the routes call them: this node's coordinator, or on a
    /// cluster each group on the node that coordinates it.
    pub(crate) fn groups(&self) -> Groups {
        match self.cluster() {
            Some(node) => Groups::Cluster(node.groups.clone()),
            None => Groups::Local(self.shared_bus()),
        }
    }

    /// The same coordinator, shared (a cluster node runs the groups it coordinates on it).
    pub(crate) fn shared_bus(&self) -> Arc<Coordinator> {
        self.inner.bus.clone()
    }

    /// What this node shares with the other nodes of its cluster (`--cluster`), once joined.
    pub(crate) fn cluster(&self) -> Option<&ClusterNode> {
        self.inner.cluster.get()
    }

    /// Hands the joined cluster to the server's stages; the first attached stays.
    pub(crate) fn attach_cluster(&self, node: ClusterNode) {
        if self.inner.cluster.set(node).is_err() {
            tracing::warn!("a cluster was attached twice; keeping the first");
        }
    }

    /// Recent and in-flight sends by client message id (idempotent retries).
    pub(crate) fn sends(&self) -> &Arc<Sends> {
        &self.inner.sends
    }

    /// Takes `cost` from `user`'s write budget (`limits.rateLimit`), or 429 with `Retry-After`.
    /// Every write route calls it once the request is known to be valid, before anything is
    /// written.
    pub(crate) fn charge_write(&self, user: &str, cost: WriteCost) -> Result<(), ApiError> {
        self.inner
            .limiter
            .charge(user, cost)
            .map_err(|retry_after| ApiError::TooManyRequests {
                limit: self.inner.limiter.rate(),
                retry_after,
            })
    }

    /// The registry of live WebSocket sessions.
    pub(crate) fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The WebSocket sessions' readers (what handles client frames). On shutdown the server
    /// waits for them, so that a frame being handled (a send) finishes before the store
    /// writers stop; the sessions' writers run on [`tasks`](Self::tasks).
    pub(crate) fn session_readers(&self) -> &TaskTracker {
        &self.inner.session_readers
    }

    /// The SignalR connection tokens waiting for their socket.
    pub(crate) fn signalr(&self) -> &signalr::Negotiations {
        &self.inner.signalr
    }

    /// The open Socket.IO connections.
    pub(crate) fn socketio(&self) -> &socketio::Connections {
        &self.inner.socketio
    }

    /// Which of the server's own consumers (`notify`, sinks) are down right now.
    pub(crate) fn workers(&self) -> &WorkerHealth {
        &self.inner.workers
    }

    /// Marks the server ready (recovery done, writes accepted) or not.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Why the server is not ready, as the answer `/readyz` gives: starting or stopping, the
    /// log refusing writes (poisoned by a storage failure, or the disk almost full), a failed
    /// store writer, or one of the server's own consumers down (it is being started again).
    pub(crate) fn readiness(&self) -> Result<(), ApiError> {
        if !self.inner.ready.load(Ordering::SeqCst) || self.inner.shutdown.is_cancelled() {
            return Err(ApiError::NotReady);
        }
        if let Some(refusal) = self.inner.log.get().and_then(Log::write_refusal) {
            return Err(ApiError::Log(refusal));
        }
        if let Some(reason) = self
            .inner
            .chat
            .get()
            .and_then(|chat| chat.pipeline.failure())
        {
            return Err(ApiError::Pipeline(PipelineError::Worker(reason)));
        }
        if let Some(reason) = self.inner.workers.failure() {
            return Err(ApiError::Pipeline(PipelineError::Worker(reason)));
        }
        Ok(())
    }

    /// This server's metric registry.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Cancelled when the server starts shutting down; long-lived work selects on it.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Background tasks of this server; the server waits for them all before it closes the log.
    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }
}

/// Runs store work that may touch the disk off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("a store task failed: {e}")))?
}

/// The whole HTTP application for `state`.
pub(crate) fn app(state: AppState) -> Router {
    let max_body = state.config().limits.max_body_bytes;
    let hub = state.config().signalr.path.clone();
    Router::new()
        .route("/", get(console::index))
        .route("/console/{file}", get(console::file))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/openapi.json", get(openapi::document))
        .route("/api/me", get(auth::me))
        .route("/ws", get(ws::upgrade))
        .route(&hub, get(signalr::upgrade))
        .route(socketio::PATH, get(socketio::get).post(socketio::post))
        .route(
            &format!("{hub}{}", signalr::NEGOTIATE),
            post(signalr::negotiate),
        )
        .route(
            "/api/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route(
            "/api/conversations/{id}",
            get(conversations::get_one)
                .patch(conversations::rename)
                .delete(conversations::delete_conversation),
        )
        .route(
            "/api/conversations/{id}/participants",
            post(conversations::add_participant),
        )
        .route(
            "/api/conversations/{id}/participants/{user_id}",
            delete(conversations::remove_participant).patch(conversations::set_role),
        )
        .route(
            "/api/conversations/{id}/read",
            post(conversations::mark_read),
        )
        .route(
            "/api/conversations/{id}/messages",
            post(messages::send).get(messages::history),
        )
        .route(
            "/api/conversations/{id}/messages/{message_id}",
            get(messages::get_one)
                .patch(messages::edit)
                .delete(messages::delete),
        )
        .route("/api/topics", post(topics::create).get(topics::list))
        .route(
            "/api/topics/{name}",
            get(topics::describe).delete(topics::delete),
        )
        .route("/api/topics/{name}/records", post(records::publish))
        .route(
            "/api/topics/{name}/partitions/{partition}/records",
            get(records::read).post(records::publish_to_partition),
        )
        .route("/api/groups", get(groups::list))
        .route("/api/groups/{group}", get(groups::describe))
        .route("/api/groups/{group}/members", post(groups::join))
        .route(
            "/api/groups/{group}/members/{member}",
            delete(groups::leave),
        )
        .route(
            "/api/groups/{group}/members/{member}/poll",
            post(groups::poll),
        )
        .route("/api/groups/{group}/offsets", post(groups::commit))
        .route("/api/groups/{group}/offsets/reset", post(groups::reset))
        .route("/api/dlq/replay", post(dlq::replay_dead_letters))
        .fallback(problem::unknown_route)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            edge::Edge::of(&state),
            edge::edge,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::response::Response;
    use tower::ServiceExt;

    use super::*;
    use crate::api::problem::{Problem, PROBLEM_JSON};

    async fn call(state: &AppState, method: &str, uri: &str) -> Response {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        app(state.clone()).oneshot(request).await.unwrap()
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    async fn problem(response: Response) -> Problem {
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        serde_json::from_str(&body_text(response).await).unwrap()
    }

    #[tokio::test]
    async fn healthz_is_ok_even_before_the_log_opens() {
        let state = AppState::new(Config::default());
        let response = call(&state, "GET", "/healthz").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, r#"{"status":"ok"}"#);
    }

    #[tokio::test]
    async fn readyz_is_503_problem_until_ready() {
        let state = AppState::new(Config::default());
        let response = call(&state, "GET", "/readyz").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(problem(response).await.status, 503);
        state.set_ready(true);
        assert_eq!(
            call(&state, "GET", "/readyz").await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn unknown_routes_are_404_problems() {
        let state = AppState::new(Config::default());
        let response = call(&state, "GET", "/api/nothing/here").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let problem = problem(response).await;
        assert_eq!(problem.status, 404);
        assert_eq!(problem.kind, "urn:tidings:problem:unknown-route");
        assert!(problem.detail.contains("/api/nothing/here"));
    }

    #[tokio::test]
    async fn wrong_methods_are_405_problems_with_allow() {
        let state = AppState::new(Config::default());
        let response = call(&state, "POST", "/healthz").await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        let allow = response.headers()[header::ALLOW]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(allow.contains("GET"), "{allow}");
        assert_eq!(problem(response).await.status, 405);
    }

    #[tokio::test]
    async fn metrics_show_log_counters_and_route_latencies() {
        let state = AppState::new(Config::default());
        call(&state, "GET", "/healthz").await;
        call(&state, "GET", "/no-such-route").await;
        let response = call(&state, "GET", "/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::metrics::CONTENT_TYPE
        );
        let text = body_text(response).await;
        assert!(text.contains("tidings_log_appends_total 0"), "{text}");
        assert!(text.contains(r#"route="/healthz",status="200""#), "{text}");
        assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
        assert!(
            !text.contains("no-such-route"),
            "raw paths never become labels"
        );
    }
}
