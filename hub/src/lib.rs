//! Ferry's hub: the control plane.
//!
//! - [`machine`]: operations as pure state machines (steps, commands, transitions on events,
//!   lost spokes, cancellation, RPO/RTO);
//! - [`store`]: their durable state in sled, with the fleet and the restore-point catalog;
//! - [`service`]: the runtime on NATS — JetStream streams and consumers, the event loop,
//!   dispatch, deadlines and the request/reply API;
//! - [`http`]: `/healthz` and `/metrics`.
//!
//! Binaries: `ferry-hub` (the service) and `ferry` (the CLI, a NATS client of the API).

pub mod http;
pub mod machine;
pub mod service;
pub mod store;
