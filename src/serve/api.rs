//! The JSON API: `POST /api/caption`, `GET /api/info`, `GET /healthz`.

use super::engine::{check_beam, CaptionEngine};
use super::errors::{json_response, ApiError};
use super::pool::{Pool, Rejected};
use super::ServeConfig;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The model that captions images.
    pub engine: Arc<dyn CaptionEngine>,
    /// The workers and queue that requests are run on.
    pub pool: Arc<Pool>,
    /// The server's settings.
    pub cfg: ServeConfig,
}

/// `POST /api/caption[?beam=K]`: a multipart form with an `image` field, or a raw `image/*` body.
pub async fn caption(
    State(app): State<AppState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let beam = parse_beam(query.get("beam").map(String::as_str))?;
    let attention = parse_flag("attention", query.get("attention").map(String::as_str))?;
    if attention && !app.engine.has_attention() {
        return Err(ApiError::bad_request(
            "attention=1 needs an attention model; this server's model has the lstm decoder",
        ));
    }
    let bytes = read_image(&app, request).await?;
    let answer = app
        .pool
        .submit(bytes, beam, attention)
        .map_err(|r| match r {
            Rejected::QueueFull => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "busy: {} captions running and {} waiting; try again shortly",
                    app.cfg.workers, app.cfg.queue
                ),
            ),
            Rejected::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
        })?;
    let answered = match tokio::time::timeout(app.cfg.timeout, answer).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "captioning took longer than {} s",
                    app.cfg.timeout.as_secs_f64()
                ),
            ))
        }
        Ok(Err(_)) | Ok(Ok(None)) => {
            return Err(ApiError::internal(
                "no caption came back: the inference worker dropped the request",
            ))
        }
        Ok(Ok(Some(result))) => result?,
    };
    let ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    let mut body = json!({ "caption": answered.caption, "ms": ms, "beam": beam });
    if attention {
        body["words"] = json!(answered.words);
        if let Some(a) = &answered.attention {
            body["grid"] = json!(a.grid);
            body["attention"] = json!(a.weights);
        }
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// A yes/no query parameter: absent, `0` or `false` is no; `1` or `true` is yes.
fn parse_flag(name: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be 1 or 0, got {other:?}"
        ))),
    }
}

/// `?beam=K`: absent means greedy (1).
fn parse_beam(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(1) };
    let beam = raw
        .trim()
        .parse::<usize>()
        .map_err(|_| ApiError::bad_request(format!("beam must be a whole number, got {raw:?}")))?;
    check_beam(beam)?;
    Ok(beam)
}

/// The uploaded image's bytes, from a multipart form or a raw body; 415 for anything else.
async fn read_image(app: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let limit = app.cfg.max_upload_bytes;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == "multipart/form-data" {
        let mut form = Multipart::from_request(request, app)
            .await
            .map_err(|e| ApiError::from_body(e.status(), e.body_text(), limit))?;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::from_body(e.status(), e.body_text(), limit))?
        {
            if field.name() != Some("image") {
                continue;
            }
            if let Some(ct) = field.content_type() {
                check_image_type(ct, true)?;
            }
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::from_body(e.status(), e.body_text(), limit))?;
            return within_limit(bytes, limit);
        }
        Err(ApiError::bad_request(
            "the multipart form has no `image` field",
        ))
    } else {
        check_image_type(essence, false)?;
        let bytes = Bytes::from_request(request, app)
            .await
            .map_err(|e| ApiError::from_body(e.status(), e.body_text(), limit))?;
        within_limit(bytes, limit)
    }
}

/// The router's body limit leaves room for a form's envelope; the image itself gets `limit`.
fn within_limit(bytes: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    if bytes.len() > limit {
        return Err(ApiError::from_body(
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
            limit,
        ));
    }
    Ok(bytes)
}

/// Accepts `image/*`, and `application/octet-stream` for a form field (`in_form`), which some
/// clients send for any file; everything else is 415.
fn check_image_type(content_type: &str, in_form: bool) -> Result<(), ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("image/") || (in_form && essence == "application/octet-stream") {
        return Ok(());
    }
    let shown = if essence.is_empty() {
        "none".to_string()
    } else {
        essence
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "content type {shown} is not an image: send image/* or a multipart form with an `image` field"
        ),
    ))
}

/// `GET /api/info`: the engine's facts and the server's limits.
pub async fn info(State(app): State<AppState>) -> Response {
    let body = json!({
        "engine": app.engine.info(),
        "server": {
            "version": env!("CARGO_PKG_VERSION"),
            "workers": app.cfg.workers,
            "queue": app.cfg.queue,
            "max_upload_bytes": app.cfg.max_upload_bytes,
            "timeout_s": app.cfg.timeout.as_secs_f64(),
            "max_beam": super::engine::MAX_BEAM,
        },
    });
    json_response(StatusCode::OK, &body)
}

/// `GET /healthz`, with the pool's load: captions running and waiting.
pub async fn healthz(State(app): State<AppState>) -> Response {
    let (running, waiting) = app.pool.load();
    let body = json!({ "status": "ok", "running": running, "waiting": waiting });
    json_response(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beam_and_content_type_rules() {
        assert_eq!(parse_beam(None).unwrap(), 1);
        assert_eq!(parse_beam(Some("5")).unwrap(), 5);
        for bad in ["0", "11", "-1", "two", ""] {
            assert_eq!(
                parse_beam(Some(bad)).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        assert!(check_image_type("image/png", false).is_ok());
        assert!(check_image_type("Image/JPEG; q=1", false).is_ok());
        assert!(check_image_type("application/octet-stream", true).is_ok());
        for (bad, in_form) in [
            ("text/plain", true),
            ("", false),
            ("application/octet-stream", false),
        ] {
            assert_eq!(
                check_image_type(bad, in_form).unwrap_err().status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{bad}"
            );
        }
    }
}
