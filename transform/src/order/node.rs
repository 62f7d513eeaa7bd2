//! What the restore order needs to know about one object, read out of it once.
//!
//! Ordering a restore point looks at each object several times (its key, its phase, what it
//! names, whether it runs an operator or a conversion webhook). Reading those facts once into a
//! `Node` lets the order be computed without holding the objects themselves: a caller with
//! 100,000 objects can turn each into its node as it is parsed and let the object go.

use crate::references::{references, service_account_subjects, Reference};
use crate::rules::Pointer;
use crate::rules::{group_of, kind_of, strings_at};
use ferry_protocol::ObjectRef;
use serde_json::Value;

/// One object, as the restore order sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The object's reference; an object without a name has an empty one (the order still
    /// places it, by its kind).
    pub object: ObjectRef,
    pub(super) references: Vec<Reference>,
    pub(super) detail: Detail,
}

/// The kind-specific facts the order uses.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Detail {
    Other,
    CustomResourceDefinition {
        group: String,
        kind: String,
        /// The conversion webhook's Service, as (namespace, name).
        webhook_service: Option<(String, String)>,
    },
    /// A Role or ClusterRole: the API groups its rules may write (`*` included as written).
    Role {
        written_groups: Vec<String>,
    },
    /// A RoleBinding or ClusterRoleBinding.
    Binding {
        role_kind: String,
        role_name: String,
        /// Service accounts it grants to, as (namespace, name).
        service_accounts: Vec<(String, String)>,
    },
    /// An object of the `apps` group: its pods' service account and template labels.
    AppsWorkload {
        service_account: String,
        template_labels: Vec<(String, String)>,
    },
    Service {
        selector: Vec<(String, String)>,
    },
}

/// Verbs that let a controller change objects; read-only access makes no operator.
const WRITE_VERBS: [&str; 6] = [
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "*",
];

impl Node {
    pub fn of(obj: &Value) -> Node {
        let (group, kind) = (group_of(obj), kind_of(obj));
        let object = ObjectRef::from_object(obj).unwrap_or_else(|| ObjectRef {
            group: group.into(),
            version: String::new(),
            kind: kind.into(),
            namespace: obj
                .ptr("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .map(str::to_string),
            name: String::new(),
        });
        let text = |p: &str| obj.ptr(p).and_then(Value::as_str).unwrap_or("").to_string();
        let string_pairs = |p: &str| -> Vec<(String, String)> {
            obj.ptr(p)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        };
        let detail = match (group, kind) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let service = "/spec/conversion/webhook/clientConfig/service";
                Detail::CustomResourceDefinition {
                    group: text("/spec/group"),
                    kind: text("/spec/names/kind"),
                    webhook_service: obj.ptr(service).map(|_| {
                        (
                            text(&format!("{service}/namespace")),
                            text(&format!("{service}/name")),
                        )
                    }),
                }
            }
            ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
                let mut written_groups = Vec::new();
                for rule in obj
                    .get("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let writes = strings_at(rule, "/verbs/*")
                        .iter()
                        .any(|v| WRITE_VERBS.contains(&v.as_str()));
                    if writes {
                        written_groups.extend(strings_at(rule, "/apiGroups/*"));
                    }
                }
                Detail::Role { written_groups }
            }
            ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
                Detail::Binding {
                    role_kind: text("/roleRef/kind"),
                    role_name: text("/roleRef/name"),
                    service_accounts: service_account_subjects(obj),
                }
            }
            ("apps", _) => Detail::AppsWorkload {
                service_account: obj
                    .ptr("/spec/template/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_string(),
                template_labels: string_pairs("/spec/template/metadata/labels"),
            },
            ("", "Service") => Detail::Service {
                selector: string_pairs("/spec/selector"),
            },
            _ => Detail::Other,
        };
        Node {
            object,
            references: references(obj),
            detail,
        }
    }

    pub(super) fn group(&self) -> &str {
        &self.object.group
    }

    pub(super) fn kind(&self) -> &str {
        &self.object.kind
    }

    /// Empty for cluster-scoped objects.
    pub(super) fn namespace(&self) -> &str {
        self.object.namespace.as_deref().unwrap_or("")
    }

    pub(super) fn name(&self) -> &str {
        &self.object.name
    }

    /// The service account an `apps` workload's pods run as.
    pub fn service_account(&self) -> Option<&str> {
        match &self.detail {
            Detail::AppsWorkload {
                service_account, ..
            } => Some(service_account),
            _ => None,
        }
    }

    /// The service accounts a RoleBinding or ClusterRoleBinding grants to, as (namespace,
    /// name); empty for anything else.
    pub fn binding_subjects(&self) -> &[(String, String)] {
        match &self.detail {
            Detail::Binding {
                service_accounts, ..
            } => service_accounts,
            _ => &[],
        }
    }
}
