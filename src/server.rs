//! Wiring and graceful shutdown of the HTTP server, after mini-redis's `server::run`.
//!
//! [`run`] takes a bound listener, the configuration and a shutdown future. It raises the
//! open-file limit (every WebSocket session holds a descriptor) and serves at once (so
//! `/healthz` answers and `/readyz` says 503 while the log recovers), opens the log, opens the
//! chat store and starts the write-behind pipeline, lets the store catch up with what the log
//! holds, gives the hub its contacts, starts the `notify` group and the notification sinks, marks
//! the server ready, and runs until the shutdown future completes. Connections are accepted and
//! served by `crate::api::connections`, within the `[http]` limits.
//!
//! Then it stops in this order (`stop`): stop accepting and cancel the
//! [`CancellationToken`] every background task selects on; let in-flight HTTP requests and
//! WebSocket client frames finish; stop the store writers (they apply, deliver to the sessions
//! and relay everything accepted first); stop the `notify` group (it handles every event up to
//! the high watermark of `messages.sent` first); close every session with 1001 (each writes what is
//! queued first); wait for every task ([`TaskTracker`]); close the log (which syncs). History is
//! thus complete when the server is ready again, every stored message reached the live
//! sessions, and every offline recipient got its notification.
//!
//! While ready it advertises its address in the data directory (`crate::discovery`), so that
//! the admin commands, which cannot open a directory the server holds, find the server instead;
//! the file goes at a clean stop, before the directory's lock does.
//!
//! Each step of the start is announced by the start-up banner ([`banner`]): version, data
//! directory and durability, the listener, the secret's source, the sinks, then `ready`.
//!
//! `main` passes SIGINT/SIGTERM as the shutdown future; tests bind `127.0.0.1:0` and pass
//! their own. This module does not parse configuration, bind sockets or install signal
//! handlers, and it holds no routes: those are in `api`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::connections::tls::{TlsCertificates, TlsError};
use crate::api::connections::{self, ServeSettings};
use crate::api::Chat;
pub(crate) use crate::api::{app, AppState};
use crate::auth::{AuthError, Authenticator};
use crate::config::Config;
use crate::discovery;
use crate::hub::{fd_limit, CloseReason, Contacts, Hub};
use crate::kafka;
use crate::log::{JetStreamConfig, Log, LogError};
use crate::pipeline::notify::LiveSessions;
use crate::pipeline::{
    self, Pipeline, PipelineConfig, PipelineError, Placement, Supervision, MESSAGES_TOPIC,
};
use crate::store::{Store, StoreError};

mod banner;

/// How often buffered histogram samples are folded into buckets when nobody scrapes.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the server stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The log could not be opened: the data directory is in use, foreign, corrupt or
    /// unreadable. The message says which.
    #[error(transparent)]
    OpenLog(LogError),
    /// The token signing secret could not be read, created, or is too short, or a public
    /// key or the JWKS could not be loaded.
    #[error(transparent)]
    Secret(AuthError),
    /// The chat store could not be opened (its data is unreadable or corrupt).
    #[error("cannot open the chat store: {0}")]
    OpenStore(StoreError),
    /// The write-behind pipeline could not start.
    #[error("cannot start the message store writers: {0}")]
    Pipeline(PipelineError),
    /// The `notify` group or a notification sink could not start.
    #[error("cannot start the notifications: {0}")]
    Notifications(PipelineError),
    /// The node could not join its cluster's presence link and leases (`--cluster`).
    #[error("cannot join the cluster: {0}")]
    Cluster(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS certificate or key of `[tls]` cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The Kafka listener's producer state (`DATA_DIR/kafka/`) cannot be opened.
    #[error("cannot open the Kafka producer state: {0}")]
    KafkaState(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A task the server waited for panicked or was cancelled.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Checks that the TLS files of `config` can be used, so that a process can refuse to start
/// before it announces a listener ([`run`] loads them again, and reloads them on change).
pub fn check_tls(config: &Config) -> Result<(), ServerError> {
    TlsCertificates::load(&config.tls)?;
    Ok(())
}

/// Serves `config` on `listener` until `shutdown` completes, then stops gracefully.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with_kafka(listener, None, config, shutdown).await
}

/// [`run`], also serving the Kafka wire protocol on `kafka` (bound by the caller from
/// `kafka.listen`) once the server is ready.
pub async fn run_with_kafka(
    listener: TcpListener,
    kafka: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let started = Instant::now();
    banner::starting(&config);
    let tls = TlsCertificates::load(&config.tls)?;
    raise_open_file_limit();
    let state = AppState::new(config);
    tracing::info!(
        max_sessions = state.hub().config().max_sessions,
        "WebSocket sessions allowed"
    );
    let token = state.shutdown().clone();
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    banner::listening(state.config().tls.scheme(), address);
    // The pipeline's stages stop on their own signals, after the requests drained (see `stop`).
    let stages = Stages::default();
    // Connection limits, timeouts and TCP_NODELAY are the connection layer's.
    if let Some(certificates) = &tls {
        tokio::spawn(certificates.clone().watch(token.clone()));
    }
    let settings = ServeSettings::from_config(&state.config().http, tls);
    tracing::info!(
        max_connections = settings.max_connections,
        "HTTP connections allowed"
    );
    let serving = tokio::spawn(connections::serve(
        listener,
        app(state.clone()),
        settings,
        state.metrics().clone(),
        token,
    ));
    // Opening is not raced against `shutdown`: a signal that arrives meanwhile is seen right
    // after, and the log is then closed cleanly instead of being dropped mid-recovery.
    let outcome = match open(&state, &stages, address).await {
        Ok(()) => {
            if let Some(kafka) = kafka {
                start_kafka(&state, kafka)?;
            }
            banner::ready(started);
            shutdown.await;
            tracing::info!("shutdown requested: draining requests");
            Ok(())
        }
        Err(e) => Err(e),
    };
    stop(state, serving, outcome, stages).await
}

/// Raises the soft open-file limit to the hard one and says so; a failure is logged (the
/// session maximum then follows the limit in force).
fn raise_open_file_limit() {
    match fd_limit::raise_open_file_limit() {
        Ok(limit) => tracing::info!(
            open_files = limit,
            sessions = fd_limit::sessions_allowed(limit),
            "open-file limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// The signals that stop the pipeline's stages one after the other: first the store writers
/// (which deliver their last changes to the hub and relay their last events to
/// `messages.sent`), then the `notify` group (which turns those events into `message.new`).
/// The sinks stop with the server's own shutdown signal.
#[derive(Debug, Default)]
struct Stages {
    writers: CancellationToken,
    notify: CancellationToken,
}

impl Stages {
    /// Stops the store writers and waits until they caught up (applied, delivered and relayed
    /// everything accepted), then stops the `notify` group.
    async fn drain(&self, state: &AppState) {
        self.writers.cancel();
        if let Ok(chat) = state.chat() {
            chat.pipeline.stopped().await;
        }
        self.notify.cancel();
    }
}

/// The hub asks the store who shares a conversation with a user.
impl Contacts for Store {
    fn contacts_of(&self, user: &str) -> Vec<String> {
        Store::contacts_of(self, user)
    }
}

/// The `notify` group asks the hub who has a live session: on this node or, on a cluster, on
/// any other (a user online anywhere gets no notification).
impl LiveSessions for Hub {
    fn has_live_session(&self, user_id: &str) -> bool {
        Hub::is_online_anywhere(self, user_id)
    }
}

/// Opens the log and advertises `address`, then opens the chat store and pipeline, the hub
/// and the notifications, and makes the server ready.
async fn open(state: &AppState, stages: &Stages, address: SocketAddr) -> Result<(), ServerError> {
    open_log(state).await?;
    // As soon as the directory is ours: an admin command run meanwhile is told "starting up"
    // by this server rather than "directory in use" by the lock.
    publish_address(state, address);
    join_cluster(state).await?;
    start_chat(state, &stages.writers).await?;
    start_hub(state)?;
    start_notifications(state, &stages.notify).await?;
    state.set_ready(true);
    Ok(())
}

/// On a cluster (`--cluster`): connects the hub to the other nodes (presence, typing) and opens
/// the leases that place the consumers and coordinate the HTTP groups. Nothing without.
async fn join_cluster(state: &AppState) -> Result<(), ServerError> {
    let config = &state.config().cluster;
    if !config.is_enabled() {
        return Ok(());
    }
    let node = crate::cluster::join(
        config,
        state.hub().clone(),
        state.shared_bus(),
        state.shutdown().clone(),
        state.tasks(),
    )
    .await
    .map_err(|e| ServerError::Cluster(Box::new(e)))?;
    state.attach_cluster(node);
    Ok(())
}

/// How the `notify` workers and the sinks are supervised, and where they run: here, or by
/// lease on a cluster.
fn supervision(state: &AppState) -> Supervision {
    Supervision {
        health: state.workers().clone(),
        placement: state
            .cluster()
            .map_or(Placement::Here, |node| node.placement.clone()),
    }
}

/// Who has a live session, as the `notify` group asks it: the hub.
fn live_sessions(state: &AppState) -> Arc<dyn LiveSessions> {
    Arc::new(state.hub().clone())
}

/// The open log and the started chat service, for the stages that start after them.
fn opened_chat(state: &AppState) -> Result<(Log, &Chat), ServerError> {
    let log = state
        .log()
        .map_err(|_| ServerError::OpenLog(LogError::Closed))?
        .clone();
    let chat = state
        .chat()
        .map_err(|_| ServerError::Pipeline(PipelineError::Worker("not started".into())))?;
    Ok((log, chat))
}

/// Starts the `notify` group (`messages.sent` → `message.new`) and the configured sinks.
async fn start_notifications(
    state: &AppState,
    notify: &CancellationToken,
) -> Result<(), ServerError> {
    let (log, chat) = opened_chat(state)?;
    // The sinks first: a new sink's start offsets (startFrom) are taken before `notify`
    // appends what it catches up on, so those count as new notifications.
    pipeline::sinks::start(
        log.clone(),
        &state.config().notify.sinks,
        chat.pipeline.partitions(),
        state.metrics().clone(),
        &supervision(state),
        state.shutdown().clone(),
        state.tasks(),
    )
    .await
    .map_err(ServerError::Notifications)?;
    pipeline::notify::start(
        log,
        chat.store.clone(),
        live_sessions(state),
        state.config().notify_settings(),
        &supervision(state),
        notify.clone(),
        state.tasks(),
    )
    .await
    .map_err(ServerError::Notifications)?;
    banner::sinks(state.config());
    Ok(())
}

/// Starts the Kafka listener on the open log; its connections stop with the server's signal.
fn start_kafka(state: &AppState, listener: TcpListener) -> Result<(), ServerError> {
    let (log, _) = opened_chat(state)?;
    let bound = listener.local_addr().map_err(ServerError::Serve)?;
    let config = state.config();
    let advertised = kafka::Advertised::from_settings(&config.kafka, bound);
    tracing::info!(
        address = %bound,
        advertised = %format!("{}:{}", advertised.host, advertised.port),
        "kafka listening"
    );
    let authenticator = state.authenticator().ok().cloned();
    let broker = kafka::Broker::new(
        log,
        &config.data_dir,
        authenticator,
        config.kafka.clone(),
        advertised,
        config.log.default_partitions,
        kafka_group_limit(state),
        state.cluster().map(|node| node.kafka.clone()),
        state.shutdown().clone(),
        state.tasks().clone(),
    )
    .map_err(|e| ServerError::KafkaState(Box::new(e)))?;
    kafka::start(listener, broker, state.tasks());
    Ok(())
}

/// `limits.maxGroups` for Kafka joins, counting the HTTP event bus's live groups too.
fn kafka_group_limit(state: &AppState) -> kafka::GroupLimit {
    let bus_state = state.clone();
    kafka::GroupLimit {
        max: state.config().limits.max_groups,
        http_groups: Box::new(move || bus_state.bus().groups()),
    }
}

/// Gives the hub its contacts (the store) and starts its timers.
fn start_hub(state: &AppState) -> Result<(), ServerError> {
    let (_, chat) = opened_chat(state)?;
    let hub = state.hub().clone();
    hub.attach_contacts(Arc::new(chat.store.clone()));
    state
        .tasks()
        .spawn(hub.run_timers(state.shutdown().clone()));
    Ok(())
}

/// Opens the store, starts one store writer per partition on the server's tracker, and waits
/// until they applied everything the log held at start (after a crash, records accepted but not
/// stored yet), so that reads and idempotent retries see every accepted message.
async fn start_chat(state: &AppState, writers: &CancellationToken) -> Result<(), ServerError> {
    let log = state
        .log()
        .map_err(|_| ServerError::OpenLog(LogError::Closed))?
        .clone();
    let data_dir = state.config().data_dir.clone();
    let limits = state.config().store_limits();
    let store = tokio::task::spawn_blocking(move || Store::open_with(&data_dir, limits))
        .await?
        .map_err(ServerError::OpenStore)?;
    let config = PipelineConfig {
        partitions: state.config().chat.partitions,
        ..PipelineConfig::default()
    };
    let pipeline = pipeline::start(
        log.clone(),
        store.clone(),
        state.hub().clone(),
        config,
        writers.clone(),
        state.tasks(),
    )
    .await
    .map_err(ServerError::Pipeline)?;
    catch_up(&log, &pipeline).await?;
    state.attach_chat(Chat { store, pipeline });
    Ok(())
}

async fn catch_up(log: &Log, pipeline: &Pipeline) -> Result<(), ServerError> {
    for partition in 0..pipeline.partitions() {
        let (_, high) = log
            .watermarks(MESSAGES_TOPIC, partition)
            .map_err(|e| ServerError::Pipeline(e.into()))?;
        let Some(mut applied) = pipeline.applied(partition) else {
            continue;
        };
        if applied.wait_for(|next| *next >= high).await.is_err() {
            let failure = pipeline.failure().unwrap_or_else(|| "stopped".into());
            return Err(ServerError::Pipeline(PipelineError::Worker(failure)));
        }
    }
    Ok(())
}

/// Opens the log off the async threads (recovery reads the disk) and loads the token secret
/// (after the log accepted the directory as ours).
async fn open_log(state: &AppState) -> Result<(), ServerError> {
    let log = if state.config().cluster.is_enabled() {
        open_cluster_log(state.config()).await?
    } else {
        let log_config = state.config().log_config();
        let (dir, durability) = (log_config.dir.clone(), log_config.durability.name());
        let log = tokio::task::spawn_blocking(move || Log::open(log_config))
            .await?
            .map_err(ServerError::OpenLog)?;
        tracing::info!(dir = %dir.display(), durability, "log open");
        log
    };
    state.attach_log(log);
    let config = state.config();
    let authenticator = Authenticator::for_server(&config.auth, &config.data_dir)
        .await
        .map_err(ServerError::Secret)?;
    banner::secret_source(config);
    tracing::info!(keys = %authenticator.describe(), "tokens checked");
    authenticator.spawn_key_refresh(state.shutdown().clone(), state.tasks());
    state.attach_authenticator(authenticator);
    spawn_metrics_upkeep(state);
    Ok(())
}

/// Opens the log on the NATS JetStream cluster (`--cluster`): the store stays in the data
/// directory and is rebuilt from the shared log by this node's own writers.
async fn open_cluster_log(config: &Config) -> Result<Log, ServerError> {
    let log_config = config.log_config();
    let jetstream = JetStreamConfig {
        auto_create_topics: log_config.auto_create_topics,
        default_partitions: log_config.default_partitions,
        max_record_bytes: log_config
            .max_record_bytes
            .min(JetStreamConfig::new("").max_record_bytes),
        retention_interval: log_config.retention_interval,
        ..JetStreamConfig::for_cluster(&config.cluster)
    };
    let log = Log::open_cluster(&config.cluster, jetstream)
        .await
        .map_err(ServerError::OpenLog)?;
    tracing::info!(
        urls = %config.cluster.urls.join(","),
        namespace = %config.cluster.namespace,
        replicas = config.cluster.replicas,
        "log open on the NATS JetStream cluster"
    );
    Ok(log)
}

/// Stops accepting, drains requests, the pipeline and the sessions, then closes
/// the log (the order is in the module doc).
async fn stop(
    state: AppState,
    serving: JoinHandle<()>,
    outcome: Result<(), ServerError>,
    stages: Stages,
) -> Result<(), ServerError> {
    state.set_ready(false);
    state.shutdown().cancel();
    let served = serving.await.map_err(ServerError::Task);
    state.session_readers().close();
    state.session_readers().wait().await;
    // No request appends any more: the store writers catch up with everything accepted (and
    // deliver it to the sessions), then the notify group notifies every event they relayed.
    stages.drain(&state).await;
    state.hub().close_all(CloseReason::ShuttingDown);
    state.tasks().close();
    state.tasks().wait().await;
    if let Ok(log) = state.log() {
        // Removed while the lock is still ours, so a server started next keeps its own file.
        withdraw_address(&state);
        let log = log.clone();
        tokio::task::spawn_blocking(move || log.shutdown()).await?;
        tracing::info!("log closed");
    }
    outcome.and(served)
}

/// Writes `DATA_DIR/server.url` so that admin commands run without `--server` find this server
/// (see [`crate::discovery`]). Only called once the log, and so the directory's lock, is ours. A
/// failure costs that convenience only, so it is logged, not fatal.
fn publish_address(state: &AppState, address: SocketAddr) {
    let dir = &state.config().data_dir;
    let cert = state.config().tls.cert.as_deref();
    if let Err(e) = discovery::write_address(dir, address, cert) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot write the server's address file");
    }
}

/// Removes the address file at a clean stop (a no-op when it was never written).
fn withdraw_address(state: &AppState) {
    let dir = &state.config().data_dir;
    if let Err(e) = discovery::remove_address(dir) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot remove the server's address file");
    }
}

/// Keeps the metrics registry's memory bounded between scrapes.
fn spawn_metrics_upkeep(state: &AppState) {
    let metrics = state.metrics().clone();
    let token: CancellationToken = state.shutdown().clone();
    let tasks: &TaskTracker = state.tasks();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => metrics.run_upkeep(),
                () = token.cancelled() => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tokio::sync::oneshot;
    use tower::ServiceExt;

    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn run_serves_until_shutdown_then_closes_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, config(dir.path()), async {
            let _ = stop_rx.await;
        }));
        let url = format!("http://{addr}/readyz");
        let mut attempts = 0;
        while reqwest::get(&url).await.ok().map(|r| r.status()) != Some(reqwest::StatusCode::OK) {
            attempts += 1;
            assert!(attempts < 500, "never became ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The data directory is locked while the server runs …
        let locked = Log::open(crate::log::LogConfig::new(dir.path())).unwrap_err();
        assert!(locked.to_string().contains("in use"));
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        // … and its address withdrawn and the directory free once `run` returned.
        assert_eq!(discovery::read_address(dir.path()), None);
        Log::open(crate::log::LogConfig::new(dir.path()))
            .unwrap()
            .shutdown();
    }

    #[tokio::test]
    async fn a_locked_data_dir_is_an_open_log_error() {
        let dir = tempfile::tempdir().unwrap();
        let holder = Log::open(crate::log::LogConfig::new(dir.path())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let outcome = run(listener, config(dir.path()), std::future::pending()).await;
        assert!(
            matches!(outcome, Err(ServerError::OpenLog(LogError::Locked { .. }))),
            "{outcome:?}"
        );
        assert_eq!(
            discovery::read_address(dir.path()),
            None,
            "a server that does not hold the directory does not advertise itself in it"
        );
        holder.shutdown();
    }

    #[tokio::test]
    async fn readiness_follows_the_log_and_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let state = AppState::new(config(dir.path()));
        let ready = |state: &AppState| {
            let state = state.clone();
            async move {
                app(state)
                    .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(ready(&state).await, StatusCode::SERVICE_UNAVAILABLE);
        let stages = Stages::default();
        let address = "127.0.0.1:8787".parse().unwrap();
        open(&state, &stages, address).await.unwrap();
        assert_eq!(
            discovery::read_address(dir.path()).as_deref(),
            Some("http://127.0.0.1:8787")
        );
        assert_eq!(ready(&state).await, StatusCode::OK);
        state.shutdown().cancel();
        assert_eq!(ready(&state).await, StatusCode::SERVICE_UNAVAILABLE);
        stages.drain(&state).await;
        state.tasks().close();
        state.tasks().wait().await;
        state.log().unwrap().shutdown();
    }
}
