//! Ferry's transform library: what a captured application must become to fit its new home.
//!
//! Pure functions over Kubernetes objects in their JSON form — sanitising for portability,
//! transform rules (storage class, namespace, image registry, patches), Helm release records
//! and the restore order. No I/O: data in, data out. The rule engine arrives with issue 5; the
//! crate exists now so that the workspace layout (DESIGN.md) holds from the first commit.
