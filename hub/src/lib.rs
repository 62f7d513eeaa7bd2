//! Ferry's hub: the control plane that coordinates spokes over NATS.
//!
//! Fleet registry, durable operation state machines in sled, schedules and retention, runbooks
//! and drills, the NATS API and the `ferry` CLI. It reaches clusters only through spokes, by
//! `ferry-protocol` messages. The operation machinery arrives with the migration issues.
