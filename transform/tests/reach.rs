//! Every rule reaches every kind it must: one object per kind, one assertion per place.

use ferry_transform::sanitize::SanitizeOptions;
use ferry_transform::{compile, parse_spec, Transformer};
use serde_json::{json, Value};

fn run(rules: &str, obj: Value) -> Value {
    let t = Transformer::new(
        compile(&parse_spec(rules).unwrap()).unwrap(),
        SanitizeOptions::default(),
    );
    let mut out = t.transform(&[obj]).unwrap();
    out.objects.remove(0).object
}

fn pod_spec(image: &str) -> Value {
    json!({"initContainers": [{"name": "i", "image": image}], "containers": [{"name": "c", "image": image}],
           "ephemeralContainers": [{"name": "e", "image": image}]})
}

#[test]
fn image_registry_reaches_every_workload() {
    let rules = "transforms:\n  - imageRegistry: { from: registry.eu.example.com, to: registry.us.example.com }\n";
    let old = "registry.eu.example.com/app:1";
    let new = "registry.us.example.com/app:1";
    let template = json!({"spec": pod_spec(old)});
    let cases = [
        (
            json!({"apiVersion": "v1", "kind": "Pod", "spec": pod_spec(old)}),
            "/spec",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": template}}),
            "/spec/template/spec",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"template": template}}),
            "/spec/template/spec",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "spec": {"template": template}}),
            "/spec/template/spec",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": template}}),
            "/spec/template/spec",
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": template}}),
            "/spec/template/spec",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ReplicationController", "spec": {"template": template}}),
            "/spec/template/spec",
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": template}}}}),
            "/spec/jobTemplate/spec/template/spec",
        ),
        // A PodTemplate is the template itself.
        (
            json!({"apiVersion": "v1", "kind": "PodTemplate", "template": template}),
            "/template/spec",
        ),
    ];
    for (mut obj, spec) in cases {
        obj["metadata"] = json!({"name": "x", "namespace": "n"});
        let kind = obj["kind"].as_str().unwrap().to_string();
        let out = run(rules, obj);
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            assert_eq!(
                out.pointer(&format!("{spec}/{list}/0/image")).unwrap(),
                new,
                "{kind} {list}"
            );
        }
    }
}

#[test]
fn namespace_reaches_every_reference() {
    let rules = "transforms:\n  - namespace: { from: shop, to: shop-dr }\n";
    let cases = [
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r", "namespace": "shop"},
                "subjects": [{"kind": "ServiceAccount", "name": "a", "namespace": "shop"}]}),
            vec!["/metadata/namespace", "/subjects/0/namespace"],
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "a", "namespace": "shop"}]}),
            vec!["/subjects/0/namespace"],
        ),
        (
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "w"},
                "webhooks": [{"clientConfig": {"service": {"name": "s", "namespace": "shop"}}}]}),
            vec!["/webhooks/0/clientConfig/service/namespace"],
        ),
        (
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "w"},
                "webhooks": [{"clientConfig": {"service": {"name": "s", "namespace": "shop"}}}]}),
            vec!["/webhooks/0/clientConfig/service/namespace"],
        ),
        (
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": "v1.x"},
                "spec": {"service": {"name": "s", "namespace": "shop"}}}),
            vec!["/spec/service/namespace"],
        ),
        (
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "a.b"},
                "spec": {"conversion": {"webhook": {"clientConfig": {"service": {"name": "s", "namespace": "shop"}}}}}}),
            vec!["/spec/conversion/webhook/clientConfig/service/namespace"],
        ),
        (
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv"},
                "spec": {"claimRef": {"name": "c", "namespace": "shop"}}}),
            vec!["/spec/claimRef/namespace"],
        ),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}}),
            vec![
                "/metadata/name",
                "/metadata/labels/kubernetes.io~1metadata.name",
            ],
        ),
        (
            json!({"apiVersion": "example.com/v1", "kind": "Cache", "metadata": {"name": "c", "namespace": "shop"}}),
            vec!["/metadata/namespace"],
        ),
    ];
    for (obj, pointers) in cases {
        let kind = obj["kind"].as_str().unwrap().to_string();
        let out = run(rules, obj);
        for p in pointers {
            assert_eq!(out.pointer(p).unwrap(), "shop-dr", "{kind} {p}");
        }
    }
}

#[test]
fn storage_class_reaches_claims_volumes_and_templates() {
    let rules = "transforms:\n  - storageClass: { from: gp2, to: premium-rwo }\n";
    let ann = json!({"volume.beta.kubernetes.io/storage-class": "gp2"});
    let cases = [
        (json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "n", "annotations": ann},
                "spec": {"storageClassName": "gp2"}}),
         vec!["/spec/storageClassName", "/metadata/annotations/volume.beta.kubernetes.io~1storage-class"]),
        (json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "v"}, "spec": {"storageClassName": "gp2"}}),
         vec!["/spec/storageClassName"]),
        (json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "n"},
                "spec": {"volumeClaimTemplates": [{"metadata": {"name": "d", "annotations": ann}, "spec": {"storageClassName": "gp2"}}]}}),
         vec!["/spec/volumeClaimTemplates/0/spec/storageClassName", "/spec/volumeClaimTemplates/0/metadata/annotations/volume.beta.kubernetes.io~1storage-class"]),
    ];
    for (obj, pointers) in cases {
        let kind = obj["kind"].as_str().unwrap().to_string();
        let out = run(rules, obj);
        for p in pointers {
            assert_eq!(out.pointer(p).unwrap(), "premium-rwo", "{kind} {p}");
        }
    }
}

#[test]
fn pod_templates_get_dns_rewrites_and_order_edges() {
    let rules = "transforms:\n  - namespace: { from: shop, to: shop-dr, rewriteDns: true }\n";
    let pt = json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t", "namespace": "shop"},
        "template": {"spec": {"containers": [{"name": "c", "image": "x",
            "env": [{"name": "DB", "value": "db.shop.svc.cluster.local"}],
            "envFrom": [{"configMapRef": {"name": "settings"}}]}]}}});
    let out = run(rules, pt.clone());
    assert_eq!(
        out.pointer("/template/spec/containers/0/env/0/value")
            .unwrap(),
        "db.shop-dr.svc.cluster.local"
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}});
    let order = ferry_transform::order::restore_order(&[pt, cm]);
    let explained = order.explain();
    let position = |needle: &str| {
        explained
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} in\n{explained}"))
    };
    assert!(
        position("ConfigMap shop/settings") < position("PodTemplate shop/t"),
        "{explained}"
    );
    assert!(
        explained.contains("after ConfigMap shop/settings, which its pods use"),
        "{explained}"
    );
}

#[test]
fn operator_arguments_custom_namespace_paths_and_secret_dns_where_configured() {
    // kube-prometheus: the operator takes the reloader's image as an argument.
    let operator = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prometheus-operator", "namespace": "monitoring"},
        "spec": {"template": {"spec": {"containers": [{"name": "op", "image": "quay.io/prometheus-operator/prometheus-operator:v0.75.0",
            "args": ["--kubelet-service=kube-system/kubelet", "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0", "quay.io/x/y:1", "--log-level=info"]}]}}}});
    let with_args =
        "transforms:\n  - imageRegistry: { from: quay.io, to: mirror.example.com, args: true }\n";
    let out = run(with_args, operator.clone());
    let args = &out["spec"]["template"]["spec"]["containers"][0]["args"];
    assert_eq!(args[0], "--kubelet-service=kube-system/kubelet");
    assert_eq!(args[1], "--prometheus-config-reloader=mirror.example.com/prometheus-operator/prometheus-config-reloader:v0.75.0");
    assert_eq!(args[2], "mirror.example.com/x/y:1");
    assert_eq!(args[3], "--log-level=info");
    let without = run(
        "transforms:\n  - imageRegistry: { from: quay.io, to: mirror.example.com }\n",
        operator,
    );
    assert_eq!(
        without["spec"]["template"]["spec"]["containers"][0]["args"][1],
        "--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0"
    );

    // The Prometheus CR names its Alertmanagers' namespace; a Secret holds datasource URLs.
    let rules = "transforms:\n  - namespace:\n      from: monitoring\n      to: monitoring-dr\n      rewriteDns: true\n      rewriteDnsInSecrets: true\n      customPaths: [{ group: monitoring.coreos.com, kind: Prometheus, paths: [/spec/alerting/alertmanagers/*/namespace] }]\n";
    let prometheus = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": {"name": "k8s", "namespace": "monitoring"},
        "spec": {"alerting": {"alertmanagers": [{"name": "alertmanager-main", "namespace": "monitoring", "port": "web"}]}}});
    let out = run(rules, prometheus);
    assert_eq!(
        out["spec"]["alerting"]["alertmanagers"][0]["namespace"],
        "monitoring-dr"
    );
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let datasources = "datasources:\n- url: http://prometheus-k8s.monitoring.svc:9090\n";
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "grafana-datasources", "namespace": "monitoring"},
        "data": {"datasources.yaml": b64.encode(datasources), "binary": b64.encode([0xff, 0xfe, 0x00])}});
    let t = Transformer::new(
        compile(&parse_spec(rules).unwrap()).unwrap(),
        SanitizeOptions::default(),
    );
    let outcome = t.transform(std::slice::from_ref(&secret)).unwrap();
    let out = &outcome.objects[0];
    let decoded = String::from_utf8(
        b64.decode(out.object["data"]["datasources.yaml"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        decoded,
        "datasources:\n- url: http://prometheus-k8s.monitoring-dr.svc:9090\n"
    );
    assert_eq!(out.object["data"]["binary"], secret["data"]["binary"]);
    assert!(
        out.changes
            .iter()
            .all(|c| !c.description.contains("prometheus-k8s")),
        "a change description must not show secret content: {:?}",
        out.changes
    );

    let err = compile(
        &parse_spec("transforms:\n  - namespace: { from: a, to: b, rewriteDnsInSecrets: true }\n")
            .unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("namespace.rewriteDnsInSecrets: needs rewriteDns: true"),
        "{err}"
    );
}
