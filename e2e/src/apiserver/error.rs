//! Kubernetes `Status` errors. Clients match on `reason` (kube-rs, client-go's `IsNotFound`,
//! `IsConflict`...), so the reasons here are exactly Kubernetes' own.

use serde_json::{json, Value};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> ApiError {
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    /// `deployments.apps "web" not found`
    pub fn not_found(group_resource: &str, name: &str) -> ApiError {
        let (kind, group) = split_group_resource(group_resource);
        ApiError::new(
            404,
            "NotFound",
            format!("{group_resource} \"{name}\" not found"),
        )
        .with_details(group, kind, name)
    }

    /// A path or resource type the server does not serve (no details: there is no object).
    pub fn not_served(what: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({what})"),
        )
    }

    pub fn already_exists(group_resource: &str, name: &str) -> ApiError {
        let (kind, group) = split_group_resource(group_resource);
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{group_resource} \"{name}\" already exists"),
        )
        .with_details(group, kind, name)
    }

    pub fn conflict(group_resource: &str, name: &str, why: &str) -> ApiError {
        let (kind, group) = split_group_resource(group_resource);
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {group_resource} \"{name}\": {why}"),
        )
        .with_details(group, kind, name)
    }

    /// A field-level validation failure: `Kind.group "name" is invalid: field: message`.
    pub fn invalid(kind: &str, group: &str, name: &str, field: &str, message: &str) -> ApiError {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {field}: {message}"),
        );
        e.details = Some(json!({
            "name": name, "group": group, "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
        }));
        e
    }

    /// Every invalid field at once: `Kind.group "name" is invalid: [a: …, b: …]`.
    pub fn invalid_causes(
        kind: &str,
        group: &str,
        name: &str,
        causes: &[crate::apiserver::schema::validate::Cause],
    ) -> ApiError {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let listed: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let text = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {text}"),
        );
        e.details = Some(json!({
            "name": name, "group": group, "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason(), "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        }));
        e
    }

    /// 413: a request body or an object larger than the server accepts.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// `deployments.apps` → (`deployments`, `apps`); `pods` → (`pods`, ``).
fn split_group_resource(gr: &str) -> (&str, &str) {
    gr.split_once('.').unwrap_or((gr, ""))
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_kubernetes_wording() {
        let e = ApiError::not_found("deployments.apps", "web");
        let s = e.to_status();
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["group"], "apps");
        let e = ApiError::conflict("configmaps", "c", "the object has been modified");
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on configmaps \"c\": the object has been modified"
        );
    }
}
