//! The routes: the page at `/` (embedded in the binary), the API, and JSON for everything else.

use super::api::{self, AppState};
use super::errors::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::Router;

/// The page, with its CSS and script inline: nothing is fetched from the network.
const PAGE: &str = include_str!("page.html");

/// Only this origin, no external fonts, scripts or images; uploads preview as blob: URLs.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'unsafe-inline'; \
                   script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Builds the application for `state`.
pub fn router(state: AppState) -> Router {
    // The limit is one upload plus room for the multipart envelope around it.
    let body_limit = state.cfg.max_upload_bytes.saturating_add(16 * 1024);
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(api::healthz))
        .route("/api/info", get(api::info))
        .route("/api/caption", post(api::caption))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
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
