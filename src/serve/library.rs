//! `serve --library`: the gallery page at `/library`, `GET /api/search?q=&limit=&offset=` and
//! thumbnails at `/api/thumb/{id}`. Images are found by row id, never by a path from the request,
//! so only files in the library are ever read; the API shows paths relative to the indexed folder,
//! never where the library lives on the server. Without `--model` the server is the library alone:
//! `/` leads to `/library` and `/api/caption` answers 503.

use super::engine::CaptionEngine;
use super::errors::{json_response, ApiError};
use crate::library::{Hit, Library};
use crate::vision::decode::load_rgb;
use crate::{Error, Result};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The gallery page, inline CSS and script like the captioning page.
const PAGE: &str = include_str!("library.html");

/// As the captioning page's: this origin only; thumbnails are same-origin images.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; \
                   script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// Results per page when the request does not say, and the most it may ask for.
const DEFAULT_LIMIT: usize = 24;
const MAX_LIMIT: usize = 200;

/// Longest side of a thumbnail, pixels.
const THUMB_SIDE: u32 = 320;

/// Thumbnails kept in memory (JPEG bytes, ~15 KB each); the cache is emptied when full.
const THUMB_CACHE: usize = 2048;

/// A library mounted on the server.
#[derive(Clone)]
pub struct Mount {
    library: Arc<Library>,
    thumbs: Arc<Mutex<HashMap<i64, axum::body::Bytes>>>,
    /// Whether a model is loaded (the captioning page and API are served).
    pub has_model: bool,
}

impl Mount {
    /// Mounts `library`; `has_model` says whether the server also captions uploads.
    pub fn new(library: Arc<Library>, has_model: bool) -> Self {
        Self {
            library,
            thumbs: Arc::new(Mutex::new(HashMap::new())),
            has_model,
        }
    }
}

/// Stands in for the model when the server has none: it captions nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoModel;

impl CaptionEngine for NoModel {
    fn caption_bytes(&self, _bytes: &[u8], _beam: usize) -> Result<String> {
        Err(Error::Invalid(NO_MODEL.into()))
    }
    fn info(&self) -> serde_json::Value {
        json!({ "model": null, "library_only": true })
    }
}

const NO_MODEL: &str =
    "this server has no model (started with --library only): restart it with --model M to caption uploads";

/// `/library`, `/api/search` and `/api/thumb/{id}`.
pub fn routes<S: Clone + Send + Sync + 'static>(mount: Mount) -> Router<S> {
    Router::new()
        .route("/library", get(page))
        .route("/api/search", get(search))
        .route("/api/thumb/{id}", get(thumb))
        .with_state(mount)
}

/// Without a model: `/` leads to the gallery and `/api/caption` says why it cannot caption.
pub fn without_model<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/library") }))
        .route(
            "/api/caption",
            post(|| async { ApiError::new(StatusCode::SERVICE_UNAVAILABLE, NO_MODEL) }),
        )
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

/// A whole number from the query string, `default` when absent, 400 when not a number or over
/// `max`.
fn number(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> std::result::Result<usize, ApiError> {
    let Some(raw) = query.get(name).filter(|r| !r.trim().is_empty()) else {
        return Ok(default);
    };
    let n: usize = raw.trim().parse().map_err(|_| {
        ApiError::bad_request(format!("{name} must be a whole number, got {raw:?}"))
    })?;
    if n > max {
        return Err(ApiError::bad_request(format!(
            "{name} must be at most {max}, got {n}"
        )));
    }
    Ok(n)
}

/// Runs library work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> std::result::Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("the library query failed: {e}"))),
    }
}

fn hit_json(h: &Hit) -> serde_json::Value {
    let score = (h.score * 10_000.0).round() / 10_000.0;
    json!({ "id": h.id, "image": h.rel, "caption": h.caption, "score": score })
}

/// `GET /api/search?q=&limit=&offset=`: the best matches, or with no words in `q` the whole
/// library page by page (by path).
async fn search(
    State(mount): State<Mount>,
    query: std::result::Result<
        Query<HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> std::result::Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = number(&query, "limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    let offset = number(&query, "offset", 0, i64::MAX as usize)?;
    let text = query.get("q").cloned().unwrap_or_default();
    let library = Arc::clone(&mount.library);
    let page = blocking(move || {
        if crate::library::fts_query(&text).is_some() {
            library.search(&text, limit, offset)
        } else {
            library.browse(limit, offset)
        }
    })
    .await?;
    let results: Vec<_> = page.hits.iter().map(hit_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results, "total": page.total }),
    ))
}

/// `GET /api/thumb/{id}`: a JPEG at most [`THUMB_SIDE`] pixels on its longer side.
async fn thumb(
    State(mount): State<Mount>,
    UrlPath(id): UrlPath<String>,
) -> std::result::Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("image id must be a number, got {id:?}")))?;
    let cached = mount.thumbs.lock().ok().and_then(|c| c.get(&id).cloned());
    let bytes = match cached {
        Some(b) => b,
        None => {
            let library = Arc::clone(&mount.library);
            let made = blocking(move || make_thumb(&library, id)).await?;
            let Some(bytes) = made else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no image {id} in the library"),
                ));
            };
            if let Ok(mut cache) = mount.thumbs.lock() {
                if cache.len() >= THUMB_CACHE {
                    cache.clear();
                }
                cache.insert(id, bytes.clone());
            }
            bytes
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}

/// The thumbnail of image `id`, `None` when the library has no such image.
fn make_thumb(library: &Library, id: i64) -> Result<Option<axum::body::Bytes>> {
    let Some(path) = library.image_path(id)? else {
        return Ok(None);
    };
    let rgb = load_rgb(&path)?;
    let (w, h) = rgb.dimensions();
    let scale = (THUMB_SIDE as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let small = image::imageops::thumbnail(&rgb, tw, th);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&small)
        .map_err(|e| Error::Internal(format!("cannot encode a thumbnail: {e}")))?;
    Ok(Some(out.into()))
}
