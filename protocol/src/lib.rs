//! Ferry's wire and storage types.
//!
//! Everything the hub and the spokes say to each other, and everything Ferry writes into an
//! object store, is defined here and only here. The crate is pure: serde types and the rules
//! that name things (subjects, object references). It never touches a network, a disk or a
//! cluster, so both sides of the wire and every tool that reads a repository can depend on it.
//!
//! - [`subjects`], [`envelope`]: where messages go and what wraps them;
//! - [`spoke`]: registration and heartbeats; [`command`]: hub → spoke; [`event`]: spoke → hub;
//! - [`operation`], [`api`]: operations as clients start and watch them;
//! - [`selection`], [`hooks`], [`rules`]: what to capture, how to quiesce it, how to transform it;
//! - [`restore_point`]: restore points as stored in the repository;
//! - [`error_text`]: how an error, with its causes, is told in one line (the CLIs).

pub mod api;
pub mod command;
pub mod envelope;
mod error_text;
pub mod event;
pub mod hooks;
pub mod object_ref;
pub mod operation;
pub mod restore_point;
pub mod rules;
pub mod selection;
pub mod spoke;
pub mod subjects;

pub use envelope::{Envelope, EnvelopeError, PROTOCOL_VERSION};
pub use error_text::error_text;
pub use object_ref::ObjectRef;

/// serde's default for flags that are on unless a message says otherwise.
pub(crate) fn yes() -> bool {
    true
}
