//! Ferry's wire and storage types.
//!
//! Everything the hub and the spokes say to each other, and everything Ferry writes into an
//! object store, is defined here and only here. The crate is pure: serde types and the rules
//! that name things (subjects, object references). It never touches a network, a disk or a
//! cluster, so both sides of the wire and every tool that reads a repository can depend on it.

pub mod envelope;
pub mod object_ref;
pub mod rules;
pub mod subjects;

pub use envelope::{Envelope, EnvelopeError, PROTOCOL_VERSION};
pub use object_ref::ObjectRef;
