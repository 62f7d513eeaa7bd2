//! Ferry's spoke: the agent that runs in (or next to) one cluster.
//!
//! It discovers and captures applications through the Kubernetes API, moves volume data into
//! the portable repository and rehydrates restore points in its cluster. It talks to the hub
//! only through `ferry-protocol` messages on NATS. Capture and the repository engine arrive with
//! issues 4 and later; see DESIGN.md for the data flow.
