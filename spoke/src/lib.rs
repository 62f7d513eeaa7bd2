//! Ferry's spoke: the agent that runs in (or next to) one cluster.
//!
//! It discovers and captures applications through the Kubernetes API, moves volume data into
//! the portable repository and rehydrates restore points in its cluster. It talks to the hub
//! only through `ferry-protocol` messages on NATS. The portable volume repository is the crate
//! `ferry-repository` (in `spoke/repository`); the binary's `ferry-spoke repo` command drives it
//! standalone. Capture and rehydration arrive with the hub/spoke work; see DESIGN.md.
