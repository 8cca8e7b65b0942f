//! API errors as a Kubernetes API server sends them: a `Status` object with code and reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String, details: Value) -> Self {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    pub fn not_found(plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{plural} \"{name}\" not found"),
            json!({"name": name, "kind": plural}),
        )
    }

    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
            json!({}),
        )
    }

    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        let what = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        Self::new(
            409,
            "AlreadyExists",
            format!("{what} \"{name}\" already exists"),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> Self {
        let what = if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        };
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into(), json!({}))
    }

    pub fn invalid(kind: &str, name: &str, cause: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {cause}"),
            json!({"name": name, "kind": kind}),
        )
    }

    pub fn gone(message: String) -> Self {
        Self::new(410, "Expired", message, json!({}))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            json!({}),
        )
    }

    pub fn unsupported_media(message: String) -> Self {
        Self::new(415, "UnsupportedMediaType", message, json!({}))
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [("content-type", "application/json")],
            self.status().to_string(),
        )
            .into_response()
    }
}
