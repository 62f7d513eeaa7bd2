//! What a real API server refuses, fixes up and fills in, through kube-rs: validation with
//! Kubernetes' field paths, typed decoding, unknown fields by `fieldValidation`, immutable
//! fields, status dropped on create, quantities in canonical form, defaults.

mod common;

use ferry_e2e::apiserver::{StandIn, StandInConfig};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};

async fn start() -> (StandIn, Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = StandInConfig::new("validation", dir.path().join("cluster"));
    let server = StandIn::start(config).await.unwrap();
    let client = common::client(&server.kubeconfig_path).await;
    (server, client, dir)
}

fn api(
    client: &Client,
    group: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

/// The error's code, message and the fields its causes name.
fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Asserts a write was refused with `code` and a message holding every `needle`; returns the
/// message.
fn refused<T: std::fmt::Debug>(
    result: Result<T, (u16, String)>,
    code: u16,
    needles: &[&str],
) -> String {
    let (got, msg) = result.expect_err("the write must be refused");
    assert_eq!(got, code, "{msg}");
    for needle in needles {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    msg
}

async fn create(api: &Api<DynamicObject>, v: Value) -> Result<Value, (u16, String)> {
    api.create(&PostParams::default(), &obj(v))
        .await
        .map(|o| serde_json::to_value(o).unwrap())
        .map_err(api_error)
}

fn deployment(name: &str, selector: Value, labels: Value, containers: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"selector": selector, "template": {"metadata": {"labels": labels},
                    "spec": {"containers": containers}}}})
}

#[tokio::test]
async fn invalid_objects_are_refused_naming_the_field() {
    let (_server, client, _dir) = start().await;
    let cms = api(&client, "", "ConfigMap", "configmaps", Some("default"));
    refused(
        create(&cms, json!({"metadata": {"name": "Bad_Name"}})).await,
        422,
        &["metadata.name: Invalid value: \"Bad_Name\""],
    );

    // RBAC names are path segments: the colon in system names is fine.
    let roles = api(
        &client,
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        None,
    );
    create(
        &roles,
        json!({"metadata": {"name": "system:aggregated-metrics-reader"}, "rules": []}),
    )
    .await
    .unwrap();

    refused(
        create(
            &cms,
            json!({"metadata": {"name": "l", "labels": {"a/b/c": "x", "ok": "bad value"}}}),
        )
        .await,
        422,
        &["metadata.labels: Invalid value: \"a/b/c\"", "\"bad value\""],
    );

    let big = "x".repeat(300 * 1024);
    refused(
        create(
            &cms,
            json!({"metadata": {"name": "a", "annotations": {"big": big}}}),
        )
        .await,
        422,
        &["metadata.annotations: Too long"],
    );

    refused(
        create(
            &cms,
            json!({"metadata": {"name": "d"}, "data": {"a/b": "x"}}),
        )
        .await,
        422,
        &["data[a/b]"],
    );

    let secrets = api(&client, "", "Secret", "secrets", Some("default"));
    refused(
        create(
            &secrets,
            json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}}),
        )
        .await,
        400,
        &["cannot be handled as a Secret: data.k"],
    );

    let deployments = api(
        &client,
        "apps",
        "Deployment",
        "deployments",
        Some("default"),
    );
    let c = json!([{"name": "c", "image": "nginx"}]);
    refused(
        create(
            &deployments,
            deployment(
                "m",
                json!({"matchLabels": {"app": "x"}}),
                json!({"app": "y"}),
                c.clone(),
            ),
        )
        .await,
        422,
        &[
            "spec.template.metadata.labels: Invalid value",
            "`selector` does not match template `labels`",
        ],
    );
    refused(
        create(
            &deployments,
            deployment(
                "n",
                json!({"matchLabels": {"app": "x"}}),
                json!({"app": "x"}),
                json!([]),
            ),
        )
        .await,
        422,
        &["spec.template.spec.containers: Required value"],
    );
    let (_, msg) = create(
        &deployments,
        deployment(
            "o",
            json!({"matchLabels": {"app": "x"}}),
            json!({"app": "x"}),
            json!([{"name": "c"}, {"name": "c", "image": "x"}]),
        ),
    )
    .await
    .unwrap_err();
    // Every invalid field at once.
    assert!(
        msg.contains("spec.template.spec.containers[0].image: Required value"),
        "{msg}"
    );
    assert!(
        msg.contains("spec.template.spec.containers[1].name: Duplicate value: \"c\""),
        "{msg}"
    );
    let (_, msg) = create(
        &deployments,
        deployment("p", Value::Null, json!({"app": "x"}), c.clone()),
    )
    .await
    .unwrap_err();
    assert!(msg.contains("spec.selector: Required value"), "{msg}");

    let mut typed = deployment(
        "q",
        json!({"matchLabels": {"app": "x"}}),
        json!({"app": "x"}),
        c,
    );
    typed["spec"]["replicas"] = json!("3");
    refused(
        create(&deployments, typed).await,
        400,
        &["spec.replicas: invalid type: string \"3\""],
    );

    let huge = "x".repeat(1100 * 1024);
    refused(
        create(
            &cms,
            json!({"metadata": {"name": "huge"}, "data": {"k": huge}}),
        )
        .await,
        422,
        &["data: Too long: must have at most 1048576 bytes"],
    );
}

#[tokio::test]
async fn immutable_fields_stay_as_created() {
    let (_server, client, _dir) = start().await;
    let patch = |api: Api<DynamicObject>, name: &'static str, p: Value| async move {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&p))
            .await
            .map(|o| serde_json::to_value(o).unwrap())
            .map_err(api_error)
    };
    let deployments = api(
        &client,
        "apps",
        "Deployment",
        "deployments",
        Some("default"),
    );
    create(
        &deployments,
        deployment(
            "web",
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "tier": "x"}),
            json!([{"name": "c", "image": "nginx"}]),
        ),
    )
    .await
    .unwrap();
    refused(
        patch(
            deployments.clone(),
            "web",
            json!({"spec": {"selector": {"matchLabels": {"tier": "x"}}}}),
        )
        .await,
        422,
        &["spec.selector: Invalid value", "field is immutable"],
    );

    let services = api(&client, "", "Service", "services", Some("default"));
    let svc = create(
        &services,
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await
    .unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    refused(
        patch(
            services.clone(),
            "web",
            json!({"spec": {"clusterIP": "10.96.9.9"}}),
        )
        .await,
        422,
        &["spec.clusterIPs[0]", "may not change once set"],
    );
    // A replace that leaves the allocated address out keeps it, as on a real cluster.
    let mut replaced = svc.clone();
    replaced["spec"]
        .as_object_mut()
        .unwrap()
        .remove("clusterIP");
    replaced["spec"]
        .as_object_mut()
        .unwrap()
        .remove("clusterIPs");
    let replaced = services
        .replace("web", &PostParams::default(), &obj(replaced))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(replaced).unwrap()["spec"]["clusterIP"],
        json!(ip)
    );

    let claims = api(
        &client,
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some("default"),
    );
    create(&claims, json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .await
        .unwrap();
    refused(
        patch(
            claims.clone(),
            "data",
            json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
        )
        .await,
        422,
        &["spec: Forbidden: spec is immutable after creation"],
    );
    let grown = patch(
        claims.clone(),
        "data",
        json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        grown["spec"]["resources"]["requests"]["storage"],
        json!("2Gi")
    );

    let cms = api(&client, "", "ConfigMap", "configmaps", Some("default"));
    create(
        &cms,
        json!({"metadata": {"name": "frozen"}, "data": {"k": "v"}, "immutable": true}),
    )
    .await
    .unwrap();
    refused(
        patch(cms.clone(), "frozen", json!({"data": {"k": "w"}})).await,
        422,
        &["data: Forbidden: field is immutable when `immutable` is set"],
    );
    // Metadata of an immutable ConfigMap can still change.
    patch(
        cms.clone(),
        "frozen",
        json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await
    .unwrap();

    let jobs = api(&client, "batch", "Job", "jobs", Some("default"));
    create(&jobs, json!({"metadata": {"name": "once"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}}))
        .await
        .unwrap();
    refused(patch(jobs.clone(), "once", json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}})).await, 422, &["spec.template: Invalid value", "field is immutable"]);

    let bindings = api(
        &client,
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        Some("default"),
    );
    create(&bindings, json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"}, "subjects": []}))
        .await
        .unwrap();
    refused(
        patch(bindings.clone(), "b", json!({"roleRef": {"name": "r2"}})).await,
        422,
        &["roleRef: Invalid value", "cannot change roleRef"],
    );
}

#[tokio::test]
async fn unknown_fields_follow_field_validation() {
    let (server, client, _dir) = start().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "u"}, "data": {"k": "v"}, "spek": {"x": 1}});
    let post = |query: &'static str, body: Value| {
        let client = client.clone();
        async move {
            let req = http::Request::post(format!("/api/v1/namespaces/default/configmaps{query}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
            let resp = client
                .send(req.map(kube::client::Body::from))
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let warnings: Vec<String> = resp
                .headers()
                .get_all("warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                warnings,
                serde_json::from_slice::<Value>(&body).unwrap(),
            )
        }
    };
    let (status, _, body) = post("?fieldValidation=Strict", cm.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("strict decoding error: unknown field \"spek\""),
        "{body}"
    );

    let (status, warnings, body) = post("", cm.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(warnings, ["299 - \"unknown field \\\"spek\\\"\""]);
    assert!(
        body.get("spek").is_none(),
        "unknown fields are not stored: {body}"
    );
    let stored = api(&client, "", "ConfigMap", "configmaps", Some("default"))
        .get("u")
        .await
        .unwrap();
    assert!(serde_json::to_value(stored).unwrap().get("spek").is_none());

    let mut other = cm.clone();
    other["metadata"]["name"] = json!("v");
    let (status, warnings, _) = post("?fieldValidation=Ignore", other).await;
    assert_eq!((status, warnings.len()), (201, 0));
    let (status, _, body) = post("?fieldValidation=Sometimes", cm).await;
    assert_eq!(status, 400, "{body}");
    drop(server);
}

#[tokio::test]
async fn servers_fill_in_and_normalise_what_clients_leave_out() {
    let (_server, client, _dir) = start().await;
    let pods = api(&client, "", "Pod", "pods", Some("default"));
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pod = pods
        .create(&dry, &obj(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80}],
                                     "resources": {"requests": {"cpu": 0.5, "memory": "1024Mi"}, "limits": {"memory": 1073741824}}},
                                    {"name": "d", "image": "registry.example.com:5000/app:1.2"}]},
            "status": {"phase": "Running", "podIP": "1.2.3.4"}})))
        .await
        .unwrap();
    let pod = serde_json::to_value(pod).unwrap();
    let c = &pod["spec"]["containers"][0];
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert_eq!(c["resources"]["limits"], json!({"memory": "1073741824"}));
    assert_eq!(c["terminationMessagePath"], json!("/dev/termination-log"));
    assert_eq!(c["terminationMessagePolicy"], json!("File"));
    assert_eq!(c["imagePullPolicy"], json!("Always"));
    assert_eq!(c["ports"][0]["protocol"], json!("TCP"));
    assert_eq!(
        pod["spec"]["containers"][1]["imagePullPolicy"],
        json!("IfNotPresent")
    );
    assert_eq!(pod["spec"]["securityContext"], json!({}));
    assert_eq!(pod["spec"]["dnsPolicy"], json!("ClusterFirst"));
    // A client's status is dropped at creation: the kubelet reports it.
    assert_eq!(pod["status"]["phase"], json!("Pending"));
    assert!(pod["status"].get("podIP").is_none());
    assert_eq!(pod["status"]["qosClass"], json!("Burstable"));

    let secrets = api(&client, "", "Secret", "secrets", Some("default"));
    let s = create(
        &secrets,
        json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello"}}),
    )
    .await
    .unwrap();
    assert_eq!(s["type"], json!("Opaque"));
    assert_eq!(s["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
    assert!(s.get("stringData").is_none());

    let claims = api(
        &client,
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        Some("default"),
    );
    let pvc = create(&claims, json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1.5Gi"}}}}))
        .await
        .unwrap();
    assert_eq!(
        pvc["spec"]["resources"]["requests"]["storage"],
        json!("1536Mi")
    );
    refused(create(&claims, json!({"metadata": {"name": "d"}, "spec": {"resources": {"requests": {"storage": "lots"}}}})).await, 400, &["spec.resources.requests.storage: quantities must match"]);

    // GET on /status, as `kubectl get --subresource=status` does.
    let deployments = api(
        &client,
        "apps",
        "Deployment",
        "deployments",
        Some("default"),
    );
    create(
        &deployments,
        deployment(
            "web",
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
            json!([{"name": "c", "image": "nginx"}]),
        ),
    )
    .await
    .unwrap();
    let status = deployments.get_status("web").await.unwrap();
    assert_eq!(status.metadata.name.as_deref(), Some("web"));
    let template = serde_json::to_value(deployments.get("web").await.unwrap()).unwrap();
    assert_eq!(
        template["spec"]["template"]["spec"]["restartPolicy"],
        json!("Always")
    );
    assert_eq!(
        template["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        json!("Always")
    );

    // The node carries everything clients such as the Python client require.
    let nodes = api(&client, "", "Node", "nodes", None);
    let node = serde_json::to_value(nodes.get("standin-node").await.unwrap()).unwrap();
    for field in [
        "machineID",
        "systemUUID",
        "bootID",
        "kernelVersion",
        "osImage",
        "containerRuntimeVersion",
        "kubeletVersion",
        "kubeProxyVersion",
        "operatingSystem",
        "architecture",
    ] {
        assert!(
            node["status"]["nodeInfo"][field].is_string(),
            "nodeInfo.{field} missing"
        );
    }
}
