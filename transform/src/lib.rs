//! Ferry's transform library: what a captured application must become to fit its new home.
//!
//! Pure functions over Kubernetes objects in their JSON form — no I/O: data in, data out.
//!
//! - [`spec`]: reading transform rules (YAML or JSON) and compiling them, with errors that name
//!   the rule and the field.
//! - [`sanitize`]: what is dropped or cleared so objects can be created in another cluster.
//! - [`Transformer`]: applies sanitising and rules to a set of objects, recording which rule
//!   changed or dropped what; object by object (`transform_one`, then `settle` for what needs
//!   the whole set) when a caller keeps a smaller form of each object than the object itself.
//! - [`documents`]: multi-document YAML/JSON in, parsed in parallel, optionally handing each
//!   object on as it is parsed.
//! - [`helm`]: Helm release records, rewritten with the same rules.
//! - [`preview`]: per-object diffs and a machine-readable plan.
//! - [`order`]: the restore order, readiness gates and `explain`, computed from each object's
//!   [`order::Node`] (the facts the order reads, taken out of the object once).
//! - [`patch`], [`selector`]: JSON/merge/strategic-merge patch and label/field selectors, shared
//!   with the stand-in API server.

pub mod documents;
pub mod helm;
pub mod matcher;
pub mod order;
pub mod patch;
pub mod preview;
pub mod references;
pub mod rules;
pub mod sanitize;
pub mod selection;
pub mod selector;
pub mod spec;
mod transformer;
pub mod yaml;

pub use spec::{compile, parse_spec, CompiledRules, RuleError, SpecError};
pub use transformer::{
    Change, Dropped, Outcome, RuleFailure, TransformError, TransformedObject, Transformer,
};
