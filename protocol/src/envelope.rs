//! The versioned envelope around every message on the wire.
//!
//! A hub and spokes are upgraded one at a time, so every message says which protocol version
//! wrote it; a reader refuses versions it does not know instead of misreading them.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// The protocol version this build writes.
pub const PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope<T> {
    pub version: u32,
    /// Unique per message, so that redelivered commands are recognised and applied once
    /// (JetStream de-duplicates on it as `Nats-Msg-Id`).
    pub message_id: String,
    /// The message this one answers or follows from (an event names its command, a reply its
    /// request), so a watcher can tie a conversation together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// When the sender wrote it, RFC 3339 in UTC. The crate reads no clock: senders pass it.
    pub time: String,
    pub body: T,
}

#[derive(Debug)]
pub enum EnvelopeError {
    Malformed(serde_json::Error),
    UnsupportedVersion { found: u32, supported: u32 },
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::Malformed(e) => write!(f, "malformed message: {e}"),
            EnvelopeError::UnsupportedVersion { found, supported } => write!(
                f,
                "message has protocol version {found}, this build reads up to {supported}"
            ),
        }
    }
}

impl std::error::Error for EnvelopeError {}

impl<T: Serialize + DeserializeOwned> Envelope<T> {
    pub fn new(message_id: impl Into<String>, time: impl Into<String>, body: T) -> Self {
        Envelope {
            version: PROTOCOL_VERSION,
            message_id: message_id.into(),
            correlation_id: None,
            time: time.into(),
            body,
        }
    }

    /// The same message, answering or following from `id`.
    pub fn correlated(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        serde_json::to_vec(self).map_err(EnvelopeError::Malformed)
    }

    /// Decodes a message, checking the version before the body so that a newer peer's message
    /// reports "unsupported version" rather than a confusing field error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)?;
        if v.version > PROTOCOL_VERSION || v.version == 0 {
            return Err(EnvelopeError::UnsupportedVersion {
                found: v.version,
                supported: PROTOCOL_VERSION,
            });
        }
        serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let e = Envelope::new("m1", "2026-12-04T16:00:00Z", vec!["a".to_string()]).correlated("c1");
        assert_eq!(
            Envelope::<Vec<String>>::from_bytes(&e.to_bytes().unwrap()).unwrap(),
            e
        );
    }

    #[test]
    fn refuses_newer_versions_before_reading_the_body() {
        let err =
            Envelope::<u32>::from_bytes(br#"{"version": 99, "messageId": "x", "body": "nope"}"#)
                .unwrap_err();
        assert!(matches!(
            err,
            EnvelopeError::UnsupportedVersion { found: 99, .. }
        ));
    }

    #[test]
    fn refuses_unknown_fields() {
        let err = Envelope::<u32>::from_bytes(
            br#"{"version": 1, "messageId": "x", "time": "2026-12-04T16:00:00Z", "body": 1, "extra": 2}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    }
}
