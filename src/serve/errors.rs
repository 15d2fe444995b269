//! API errors: an HTTP status and a message, sent as `{"error": "..."}` whatever went wrong,
//! including axum's own rejections (body too large, bad multipart).

use crate::Error;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// What a client is told when the server itself failed; the detail goes to the server's log.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has the details";

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The text sent as `error`.
    pub message: String,
    /// For the server's own faults: what went wrong, for the log and never for the client.
    pub detail: Option<String>,
}

/// The detail of an internal error, carried from the handler to the logging layer (router.rs) in
/// the response's extensions.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            detail: None,
        }
    }

    /// A 500 with the generic message; `detail` is logged by the server, not sent.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: INTERNAL_MESSAGE.into(),
            detail: Some(detail.into()),
        }
    }

    /// A 400 Bad Request with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// An error from reading the request body: 413 when it is over the upload limit.
    pub fn from_body(status: StatusCode, detail: impl std::fmt::Display, limit: usize) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                format!("upload is over the limit of {}", human_bytes(limit)),
            )
        } else {
            Self::new(status, format!("cannot read the upload: {detail}"))
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        // Only what the client sent can be the client's fault: a bad request value or an image
        // that cannot be decoded or is too large. Anything else that fails while answering (the
        // model, a thread, the server's own files) is the server's.
        match &e {
            Error::Image { .. } | Error::Invalid(_) => Self::bad_request(e.to_string()),
            Error::PixelLimit { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            json_response(self.status, &serde_json::json!({ "error": self.message }));
        if let Some(detail) = self.detail {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response
    }
}

/// A JSON answer. Written by hand rather than with axum's `json` feature, which would switch on
/// serde_json's `raw_value` and so rebuild every crate that uses serde_json (candle included).
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `20 MiB`, `512 KiB`, `100 bytes`.
pub fn human_bytes(n: usize) -> String {
    const MIB: usize = 1 << 20;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_map_to_statuses() {
        let image = Error::Image {
            path: "upload".into(),
            msg: "bad".into(),
        };
        assert_eq!(ApiError::from(image).status, StatusCode::BAD_REQUEST);
        let bomb = Error::PixelLimit {
            path: "upload".into(),
            width: 1,
            height: 1,
            pixels: 1,
            limit: 0,
        };
        assert_eq!(
            ApiError::from(bomb).status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ApiError::from(Error::Interrupted).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let ours = ApiError::from(Error::Internal("worker thread died at /srv/x".into()));
        assert_eq!(ours.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ours.message, INTERNAL_MESSAGE);
        assert!(ours.detail.unwrap().contains("/srv/x"));
        let weights = Error::Weights {
            path: "/srv/models/m.safetensors".into(),
            msg: "truncated".into(),
        };
        let answer = ApiError::from(weights);
        assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!answer.message.contains("/srv"), "{}", answer.message);
        assert_eq!(human_bytes(20 << 20), "20 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
