//! Ferry's spoke: the agent that runs in (or next to) one cluster.
//!
//! It discovers and captures applications through the Kubernetes API, writes them as restore
//! points into the portable repository and rehydrates restore points in its cluster. It talks
//! to the hub only through `ferry-protocol` messages on NATS ([`agent`]).
//!
//! - [`cluster`]: the Kubernetes API, any resource type as JSON, with retries;
//! - [`capture`]: what a selection reaches and what it depends on;
//! - [`restore_point`]: restore points in the repository (manifest and objects, verified);
//! - [`restore`]: plan against the live target, then create in dependency order;
//! - [`error`]: errors that name their object and map to the hub's failure reasons.
//!
//! The portable volume repository is the crate `ferry-repository` (in `spoke/repository`); the
//! binary's `ferry-spoke repo` command drives it standalone.

pub mod agent;
pub mod cancel;
pub mod capture;
pub mod cluster;
pub mod error;
pub mod hooks;
pub mod mover;
pub mod restore;
pub mod restore_point;
