//! The routes: the page at `/` (embedded in the binary), the API, and JSON for everything else.

use super::api::{self, AppState};
use super::errors::{ApiError, InternalDetail};
use super::library::Mount;
use crate::progress::{Level, Progress};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The page, with its CSS and script inline: nothing is fetched from the network.
const PAGE: &str = include_str!("page.html");

/// Only this origin, no external fonts, scripts or images; uploads preview as blob: URLs.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; \
                   script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Builds the application for `state`, with `library`'s pages and API when there is one. The
/// details of the server's own failures (answered 500 with a generic message) go to `log`.
pub fn router(state: AppState, library: Option<Mount>, log: Arc<dyn Progress>) -> Router {
    // The limit is one upload plus room for the multipart envelope around it.
    let body_limit = state.cfg.max_upload_bytes.saturating_add(16 * 1024);
    let app = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/api/info", get(api::info));
    let app = match library {
        Some(mount) if !mount.has_model => app
            .merge(super::library::without_model())
            .merge(super::library::routes(mount)),
        Some(mount) => captioning(app).merge(super::library::routes(mount)),
        None => captioning(app),
    };
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(log, log_internal))
}

/// Writes the detail of every 500 to the server's log: the client only reads that the server
/// failed, the operator reads why.
async fn log_internal(
    State(log): State<Arc<dyn Progress>>,
    request: Request,
    next: Next,
) -> Response {
    let what = format!("{} {}", request.method(), request.uri().path());
    let mut response = next.run(request).await;
    if let Some(InternalDetail(detail)) = response.extensions_mut().remove::<InternalDetail>() {
        log.log(
            Level::Warn,
            &format!("captioner: internal error answering {what}: {detail}"),
        );
    }
    response
}

/// The captioning page and API.
fn captioning(app: Router<AppState>) -> Router<AppState> {
    app.route("/", get(page))
        .route("/api/caption", post(api::caption))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Html(PAGE),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}
