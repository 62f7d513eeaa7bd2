//! NATS subject names.
//!
//! Subjects are built here rather than formatted ad hoc at call sites so that a hub and a spoke
//! of the same protocol version always agree, and so a cluster name that would break subject
//! syntax is refused before anything is published.

/// Every Ferry subject starts with this prefix; a deployment can run several Ferry instances on
/// one NATS account by giving each its own prefix.
pub const DEFAULT_PREFIX: &str = "ferry";

/// Why a subject token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken {
    pub token: String,
    pub reason: &'static str,
}

impl std::fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid subject token {:?}: {}", self.token, self.reason)
    }
}

impl std::error::Error for InvalidToken {}

/// Checks one token of a subject (a cluster name, an operation id).
///
/// NATS treats `.` as a separator and `*`/`>` as wildcards, and whitespace ends a subject, so a
/// cluster called `eu.west` would silently publish to the wrong place.
pub fn validate_token(token: &str) -> Result<(), InvalidToken> {
    let reason = if token.is_empty() {
        Some("must not be empty")
    } else if token.contains('.') {
        Some("must not contain '.'")
    } else if token.contains(['*', '>']) {
        Some("must not contain wildcards '*' or '>'")
    } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain whitespace or control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidToken {
            token: token.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Commands the hub sends to the spoke of one cluster.
pub fn spoke_commands(prefix: &str, cluster: &str) -> Result<String, InvalidToken> {
    validate_token(cluster)?;
    Ok(format!("{prefix}.spoke.{cluster}.cmd"))
}

/// Progress and result events of one operation.
pub fn operation_events(prefix: &str, operation_id: &str) -> Result<String, InvalidToken> {
    validate_token(operation_id)?;
    Ok(format!("{prefix}.op.{operation_id}.events"))
}

/// Requests to the hub's API (start, list, watch operations).
pub fn hub_api(prefix: &str, verb: &str) -> Result<String, InvalidToken> {
    validate_token(verb)?;
    Ok(format!("{prefix}.api.{verb}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_subjects_from_valid_tokens() {
        assert_eq!(
            spoke_commands(DEFAULT_PREFIX, "source").unwrap(),
            "ferry.spoke.source.cmd"
        );
        assert_eq!(
            operation_events("acme", "op-1").unwrap(),
            "acme.op.op-1.events"
        );
        assert_eq!(hub_api("ferry", "migrate").unwrap(), "ferry.api.migrate");
    }

    #[test]
    fn refuses_tokens_that_would_change_the_subject() {
        for bad in ["", "eu.west", "a*", "all>", "with space", "tab\t"] {
            let err = spoke_commands(DEFAULT_PREFIX, bad).unwrap_err();
            assert_eq!(err.token, bad);
            assert!(err.to_string().contains("invalid subject token"));
        }
    }
}
