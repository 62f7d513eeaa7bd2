//! NATS subject names, and the permissions that confine each party to its own.
//!
//! Every subject starts with `<prefix>.v1`: the prefix lets several Ferry installations share a
//! NATS account, and the version lets a hub serve spokes of two protocol versions during an
//! upgrade. The layout gives each spoke one subtree, so NATS permissions can confine it:
//!
//! | subject | who publishes | what |
//! |---|---|---|
//! | `<p>.v1.spoke.<cluster>.cmd` | hub | commands to one spoke (a JetStream stream) |
//! | `<p>.v1.spoke.<cluster>.evt.<kind>` | that spoke | registration, heartbeats, operation events |
//! | `<p>.v1.api.<resource>.<verb>` | clients | requests to the hub (request/reply) |
//! | `<p>.v1.op.<operation>.events` | hub | an operation's events, for watchers |
//!
//! Subjects are built here rather than formatted at call sites so that a hub and a spoke of the
//! same protocol version always agree, and so a name that would break subject syntax is refused
//! before anything is published.

/// Every Ferry subject starts with this prefix unless the deployment chooses another.
pub const DEFAULT_PREFIX: &str = "ferry";

/// The protocol generation in every subject.
pub const SUBJECT_VERSION: &str = "v1";

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

/// The subjects of one Ferry installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    root: String,
}

/// What a spoke sends about itself and its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpokeEvent {
    Register,
    Heartbeat,
    /// Progress and results of operations (which one is in the message).
    Operation,
}

impl SpokeEvent {
    fn token(self) -> &'static str {
        match self {
            SpokeEvent::Register => "register",
            SpokeEvent::Heartbeat => "heartbeat",
            SpokeEvent::Operation => "op",
        }
    }
}

/// Publish and subscribe allow-lists for a NATS user, in the server's configuration terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
}

/// The JetStream stream that holds commands for every spoke, and a spoke's durable consumer.
pub const COMMAND_STREAM: &str = "FERRY_COMMANDS";
/// The JetStream stream that keeps every spoke's events until the hub has processed them, and
/// the hub's durable consumer on it: a hub that was down catches up on what it missed.
pub const EVENT_STREAM: &str = "FERRY_EVENTS";
pub const HUB_CONSUMER: &str = "hub";

pub fn spoke_consumer(cluster: &str) -> Result<String, InvalidToken> {
    validate_token(cluster)?;
    Ok(format!("spoke-{cluster}"))
}

impl Subjects {
    pub fn new(prefix: &str) -> Result<Subjects, InvalidToken> {
        for part in prefix.split('.') {
            validate_token(part)?;
        }
        Ok(Subjects {
            root: format!("{prefix}.{SUBJECT_VERSION}"),
        })
    }

    /// Commands the hub sends to the spoke of one cluster.
    pub fn spoke_commands(&self, cluster: &str) -> Result<String, InvalidToken> {
        validate_token(cluster)?;
        Ok(format!("{}.spoke.{cluster}.cmd", self.root))
    }

    /// Cancellations for one spoke's running commands: core NATS, not the stream, since a
    /// cancel only matters to a spoke that is running the command now (a spoke that restarts
    /// asks the hub before resuming).
    pub fn spoke_control(&self, cluster: &str) -> Result<String, InvalidToken> {
        validate_token(cluster)?;
        Ok(format!("{}.spoke.{cluster}.ctl", self.root))
    }

    /// Every spoke's commands (the command stream's subjects).
    pub fn all_spoke_commands(&self) -> String {
        format!("{}.spoke.*.cmd", self.root)
    }

    /// What one spoke publishes about itself.
    pub fn spoke_event(&self, cluster: &str, event: SpokeEvent) -> Result<String, InvalidToken> {
        validate_token(cluster)?;
        Ok(format!(
            "{}.spoke.{cluster}.evt.{}",
            self.root,
            event.token()
        ))
    }

    /// Every spoke's events (the event stream's subjects, the hub's subscription).
    pub fn all_spoke_events(&self) -> String {
        format!("{}.spoke.*.evt.>", self.root)
    }

    /// A request to the hub's API, such as `operations.start` or `clusters.list`.
    pub fn api(&self, resource: &str, verb: &str) -> Result<String, InvalidToken> {
        validate_token(resource)?;
        validate_token(verb)?;
        Ok(format!("{}.api.{resource}.{verb}", self.root))
    }

    /// Every API request (the hub's subscription).
    pub fn all_api(&self) -> String {
        format!("{}.api.>", self.root)
    }

    /// One operation's events as the hub republishes them for watchers.
    pub fn operation_events(&self, operation_id: &str) -> Result<String, InvalidToken> {
        validate_token(operation_id)?;
        Ok(format!("{}.op.{operation_id}.events", self.root))
    }

    /// What a spoke's NATS user may do: read its own commands (through its durable consumer)
    /// and cancellations, and publish its own events, nothing else. JetStream's API subjects are included for the
    /// pull consumer and its acknowledgements.
    pub fn spoke_permissions(&self, cluster: &str) -> Result<Permissions, InvalidToken> {
        let consumer = spoke_consumer(cluster)?;
        Ok(Permissions {
            publish: vec![
                format!("{}.spoke.{cluster}.evt.>", self.root),
                format!("$JS.API.CONSUMER.MSG.NEXT.{COMMAND_STREAM}.{consumer}"),
                format!("$JS.API.CONSUMER.INFO.{COMMAND_STREAM}.{consumer}"),
                format!("$JS.ACK.{COMMAND_STREAM}.{consumer}.>"),
            ],
            subscribe: vec![
                "_INBOX.>".into(),
                format!("{}.spoke.{cluster}.ctl", self.root),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_gives_each_spoke_one_subtree() {
        let s = Subjects::new(DEFAULT_PREFIX).unwrap();
        assert_eq!(
            s.spoke_commands("source").unwrap(),
            "ferry.v1.spoke.source.cmd"
        );
        assert_eq!(
            s.spoke_event("source", SpokeEvent::Heartbeat).unwrap(),
            "ferry.v1.spoke.source.evt.heartbeat"
        );
        assert_eq!(
            s.api("operations", "start").unwrap(),
            "ferry.v1.api.operations.start"
        );
        assert_eq!(
            s.operation_events("op-1").unwrap(),
            "ferry.v1.op.op-1.events"
        );
        assert_eq!(s.all_spoke_events(), "ferry.v1.spoke.*.evt.>");
        let acme = Subjects::new("acme.dr").unwrap();
        assert_eq!(acme.spoke_commands("b").unwrap(), "acme.dr.v1.spoke.b.cmd");
    }

    #[test]
    fn a_spokes_permissions_cover_its_own_subjects_only() {
        let s = Subjects::new(DEFAULT_PREFIX).unwrap();
        let p = s.spoke_permissions("source").unwrap();
        let may_publish = |subject: &str| p.publish.iter().any(|pattern| matches(pattern, subject));
        assert!(may_publish(
            &s.spoke_event("source", SpokeEvent::Operation).unwrap()
        ));
        assert!(!may_publish(
            &s.spoke_event("target", SpokeEvent::Operation).unwrap()
        ));
        assert!(!may_publish(&s.spoke_commands("source").unwrap()));
        assert!(!may_publish(&s.api("operations", "start").unwrap()));
        assert!(may_publish("$JS.ACK.FERRY_COMMANDS.spoke-source.1.2.3.4.5"));
        assert!(!may_publish(
            "$JS.ACK.FERRY_COMMANDS.spoke-target.1.2.3.4.5"
        ));
    }

    /// NATS subject matching: `*` is one token, `>` the rest.
    fn matches(pattern: &str, subject: &str) -> bool {
        let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
        loop {
            match (p.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn refuses_tokens_that_would_change_the_subject() {
        let s = Subjects::new(DEFAULT_PREFIX).unwrap();
        for bad in ["", "eu.west", "a*", "all>", "with space", "tab\t"] {
            let err = s.spoke_commands(bad).unwrap_err();
            assert_eq!(err.token, bad);
            assert!(err.to_string().contains("invalid subject token"));
        }
        assert!(Subjects::new("a..b").is_err());
        assert!(Subjects::new("ferry*").is_err());
    }
}
