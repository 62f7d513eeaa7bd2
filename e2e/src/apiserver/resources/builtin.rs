//! The built-in resource types, with the scope, kind and short names Kubernetes gives them.

use super::{ResourceType, ScalePaths};

struct B {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
    scale: bool,
    categories: &'static [&'static str],
}

const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
) -> B {
    B {
        group,
        version,
        kind,
        plural,
        short,
        namespaced,
        status: false,
        scale: false,
        categories: &[],
    }
}

impl B {
    const fn status(mut self) -> B {
        self.status = true;
        self
    }
    const fn scale(mut self) -> B {
        self.scale = true;
        self
    }
    const fn all(mut self) -> B {
        self.categories = &["all"];
        self
    }
}

const BUILTINS: &[B] = &[
    b("", "v1", "Namespace", "namespaces", &["ns"], false).status(),
    b("", "v1", "Node", "nodes", &["no"], false).status(),
    b("", "v1", "Pod", "pods", &["po"], true).status().all(),
    b("", "v1", "Service", "services", &["svc"], true)
        .status()
        .all(),
    b("", "v1", "Endpoints", "endpoints", &["ep"], true),
    b("", "v1", "ConfigMap", "configmaps", &["cm"], true),
    b("", "v1", "Secret", "secrets", &[], true),
    b("", "v1", "ServiceAccount", "serviceaccounts", &["sa"], true),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        &["pvc"],
        true,
    )
    .status(),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        &["pv"],
        false,
    )
    .status(),
    b("", "v1", "Event", "events", &["ev"], true),
    b(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        &["rc"],
        true,
    )
    .status()
    .scale()
    .all(),
    b("", "v1", "LimitRange", "limitranges", &["limits"], true),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        &["quota"],
        true,
    )
    .status(),
    b("apps", "v1", "Deployment", "deployments", &["deploy"], true)
        .status()
        .scale()
        .all(),
    b("apps", "v1", "StatefulSet", "statefulsets", &["sts"], true)
        .status()
        .scale()
        .all(),
    b("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true)
        .status()
        .all(),
    b("apps", "v1", "ReplicaSet", "replicasets", &["rs"], true)
        .status()
        .scale()
        .all(),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        &[],
        true,
    ),
    b("batch", "v1", "Job", "jobs", &[], true).status().all(),
    b("batch", "v1", "CronJob", "cronjobs", &["cj"], true)
        .status()
        .all(),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        &[],
        true,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        &["sc"],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        &["ing"],
        true,
    )
    .status(),
    b(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        &[],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        true,
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        &["pc"],
        false,
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
    )
    .status(),
    b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        &["hpa"],
        true,
    )
    .status()
    .all(),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
    )
    .status(),
    b(
        "apiregistration.k8s.io",
        "v1",
        "APIService",
        "apiservices",
        &[],
        false,
    )
    .status(),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        &[],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        &[],
        false,
    ),
    b("coordination.k8s.io", "v1", "Lease", "leases", &[], true),
    b(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        &[],
        true,
    ),
    b(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshot",
        "volumesnapshots",
        &["vs"],
        true,
    )
    .status(),
    b(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotContent",
        "volumesnapshotcontents",
        &["vsc", "vscs"],
        false,
    )
    .status(),
    b(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotClass",
        "volumesnapshotclasses",
        &["vsclass", "vsclasses"],
        false,
    ),
];

/// Kinds whose objects carry no spec and therefore no generation.
const NO_GENERATION: &[&str] = &[
    "ConfigMap",
    "Secret",
    "ServiceAccount",
    "Event",
    "Endpoints",
    "EndpointSlice",
    "Namespace",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "StorageClass",
    "ControllerRevision",
];

pub(super) fn types() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| {
            let scale = b.scale.then(|| ScalePaths {
                spec_replicas: ".spec.replicas".into(),
                status_replicas: ".status.replicas".into(),
                label_selector: Some(".status.selector".into()),
            });
            ResourceType {
                group: b.group.into(),
                versions: vec![b.version.into()],
                storage_version: b.version.into(),
                kind: b.kind.into(),
                list_kind: format!("{}List", b.kind),
                plural: b.plural.into(),
                singular: b.kind.to_ascii_lowercase(),
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                namespaced: b.namespaced,
                status: b.status,
                scale,
                printer_columns: Vec::new(),
                custom: false,
                has_generation: !NO_GENERATION.contains(&b.kind),
            }
        })
        .collect()
}
