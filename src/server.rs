//! The server: shared state, the router, background workers and graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::config::{GlobalArgs, Limits, ServeArgs};
use crate::digest::worker;
use crate::ingest::keys::KeyCache;
use crate::ingest::ratelimit::RateLimiter;
use crate::spool::Spool;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub spool: Spool,
    pub limits: Arc<Limits>,
    /// Base URL for DSNs and links, without a trailing slash.
    pub public_url: Arc<str>,
    pub keys: Arc<KeyCache>,
    pub rate_limiter: Arc<RateLimiter>,
    pub trusted_proxies: Arc<Vec<IpAddr>>,
    /// This node's source map resolver (its caches are forgotten on uploads and reprocessing).
    pub symbolicator: Arc<crate::symbolicate::Symbolicator>,
}

/// All routes: ingestion, the web API and health.
pub fn router(state: AppState) -> Router {
    // Request tracing on the web API only: ingestion is the hot path, and its outcomes are
    // counted and logged where they are decided.
    let api = crate::api::routes()
        .route("/_health/", get(health))
        .route("/_health", get(health))
        .layer(TraceLayer::new_for_http());
    let web = crate::web::routes().layer(TraceLayer::new_for_http());
    Router::new()
        .merge(crate::ingest::routes(&state))
        .merge(api)
        .merge(web)
        .with_state(state)
}

/// `GET /_health/`: 200 when the database and the spool accept writes, else 503.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let db = state.store.healthy().await;
    let spool = state.spool.is_writable();
    let status = if db && spool {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "database": db, "spool": spool })),
    )
}

/// The node id: a random id kept in the data dir, naming this node's spool in the database.
pub fn node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(&path, &id)?;
    Ok(id)
}

/// Runs `faultline serve` until Ctrl-C / SIGTERM.
pub async fn serve(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&global.data_dir)?;
    let store = crate::store::open(&global.database_url()).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = global.public_url(&addr.to_string());
    crate::cli::bootstrap(store.as_ref(), &public_url).await?;

    let spool = Spool::open(&global.data_dir.join("spool"))?;
    let node = node_id(&global.data_dir)?;
    let state = AppState {
        store: store.clone(),
        spool: spool.clone(),
        limits: Arc::new(args.limits.clone()),
        public_url: public_url.clone().into(),
        keys: Arc::new(KeyCache::default()),
        rate_limiter: Arc::new(RateLimiter::default()),
        trusted_proxies: Arc::new(args.trusted_proxies.clone()),
        symbolicator: Arc::new(crate::symbolicate::Symbolicator::new(
            store.clone(),
            tokio::runtime::Handle::current(),
            args.sourcemap_cache_mb.saturating_mul(1024 * 1024),
        )),
    };
    let wake_delivery = Arc::new(tokio::sync::Notify::new());
    let dictionaries = Arc::new(crate::digest::dictionary::Dictionaries::default());
    let digest = tokio::spawn(worker::run(worker::Worker {
        store: store.clone(),
        spool: spool.clone(),
        node_id: node.clone(),
        limits: state.limits.clone(),
        alerts: Arc::new(crate::alerts::evaluate::Evaluator::with_wake(
            &state.public_url,
            wake_delivery.clone(),
        )),
        symbolicator: Some(state.symbolicator.clone()),
        dictionaries: dictionaries.clone(),
    }));
    let delivery = tokio::spawn(crate::alerts::deliver::run(
        store.clone(),
        Arc::new(crate::alerts::deliver::DeliveryConfig::from_args(
            &args.alerts,
            &state.public_url,
        )),
        node.clone(),
        wake_delivery,
    ));
    let rate_sync = tokio::spawn(crate::ingest::ratelimit::sync_loop(
        state.rate_limiter.clone(),
        store.clone(),
    ));
    // Dictionaries are checked every 10 s, or as often as retention runs when that is sooner.
    let payload_dicts = tokio::spawn(crate::digest::dictionary::maintain(
        store.clone(),
        node.clone(),
        dictionaries,
        std::time::Duration::from_secs(args.retention_interval.clamp(1, 10)),
    ));
    let retention = tokio::spawn(worker::retention_loop(
        store.clone(),
        node,
        args.retention_days,
        args.retention_max_events,
        std::time::Duration::from_secs(args.retention_interval.max(1)),
    ));

    println!("Faultline listening on http://{addr}");
    tracing::info!(%addr, %public_url, "listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    digest.abort();
    retention.abort();
    payload_dicts.abort();
    rate_sync.abort();
    delivery.abort();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
