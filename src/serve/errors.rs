//! API errors: an HTTP status and a message, sent as `{"error": "..."}` whatever went wrong,
//! including axum's own rejections (body too large, bad multipart).

use crate::Error;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status of the answer.
    pub status: StatusCode,
    /// The text sent as `error`.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
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
        let status = match &e {
            Error::Image { .. } | Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::PixelLimit { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &serde_json::json!({ "error": self.message }))
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
        assert_eq!(human_bytes(20 << 20), "20 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
