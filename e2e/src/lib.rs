//! Ferry's end-to-end harness.
//!
//! - [`apiserver`]: a Kubernetes API server stand-in that real clients (kubectl, kube-rs) use
//!   as they would a real cluster.
//! - [`harness`]: starts real NATS with JetStream, an object store (a local directory or a
//!   Garage S3 server) and two stand-in clusters, and tears them down.
//! - [`mod@reference`]: the reference application (Helm web tier, PostgreSQL, an operator's Cache)
//!   that the migration tests and the demo move between the clusters.
//!
//! Tests and the demo build on these; see `docs/standin.md` and `docs/harness.md`.

pub mod apiserver;
pub mod bench;
pub mod bench_capture;
pub mod bench_hub;
pub mod bench_migrate;
pub mod demo;
pub mod harness;
pub mod helm;
pub mod reference;
