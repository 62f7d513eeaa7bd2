//! The stand-in's built-in controllers: enough of kube-controller-manager, the scheduler, the
//! kubelet and a CSI driver for applications to look alive.
//!
//! They run as one loop that wakes on every store change and reconciles everything until
//! nothing changes. That is O(objects) per pass, which is what a test cluster of a few thousand
//! objects can afford, and it keeps each controller a plain function over the current state.

mod gc;
pub(crate) mod storage;
pub(crate) mod workloads;

use super::core::{ApiCore, DeleteOptions, WriteOptions};
use super::error::ApiResult;
use super::resources::ResourceRef;
use super::store::Key;
use super::StandInConfig;
use serde_json::{json, Value};
use std::sync::Arc;

pub const NODE_NAME: &str = "standin-node";
pub const PROVISIONER: &str = "ferry.dev/local-path";

pub struct Ctl<'a> {
    pub core: &'a ApiCore,
    pub config: &'a StandInConfig,
    /// Every object at the start of this pass.
    pub objects: Vec<(Key, Value)>,
}

impl<'a> Ctl<'a> {
    pub fn rt(&self, group: &str, plural: &str) -> ResourceRef {
        self.core
            .resource(group, plural)
            .expect("controllers only touch built-in resources")
    }

    /// Objects of one resource. `objects` is in key order (group, resource, namespace, name),
    /// so a resource is one contiguous run, found by binary search.
    pub fn of(&self, group: &str, plural: &str) -> impl Iterator<Item = &Value> + '_ {
        fn resource(k: &Key) -> (&str, &str) {
            (&k.group, &k.resource)
        }
        let start = self
            .objects
            .partition_point(|(k, _)| resource(k) < (group, plural));
        let end = self
            .objects
            .partition_point(|(k, _)| resource(k) <= (group, plural));
        self.objects[start..end].iter().map(|(_, v)| v)
    }

    pub fn find(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<&Value> {
        let key = Key::new(group, plural, ns, name);
        self.objects
            .binary_search_by(|(k, _)| k.cmp(&key))
            .ok()
            .map(|i| &self.objects[i].1)
    }

    /// Objects whose controller owner reference points at `owner`'s uid.
    pub fn owned_by<'b>(
        &'b self,
        group: &str,
        plural: &str,
        owner: &'b Value,
    ) -> impl Iterator<Item = &'b Value> + 'b {
        let uid = uid(owner).to_string();
        self.of(group, plural).filter(move |o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
        })
    }

    pub fn create(&self, group: &str, plural: &str, ns: Option<&str>, obj: Value) -> bool {
        match self
            .core
            .create(&self.rt(group, plural), ns, obj, &WriteOptions::internal())
        {
            Ok(_) => true,
            Err(e) if e.code == 409 => false,
            Err(e) => {
                tracing::warn!(group, plural, error = %e, "controller create failed");
                false
            }
        }
    }

    /// Changes an object if `f` changes it; returns whether it did.
    pub fn mutate(
        &self,
        group: &str,
        plural: &str,
        obj: &Value,
        f: impl FnOnce(&mut Value),
    ) -> bool {
        let mut new = obj.clone();
        f(&mut new);
        if new == *obj {
            return false;
        }
        let result: ApiResult<Value> =
            self.core
                .replace_if_unchanged(&self.rt(group, plural), obj, new);
        if let Err(e) = &result {
            // 404 and 409: the object changed or went away since this pass read it; the change
            // itself wakes the next pass.
            if e.code != 404 && e.code != 409 {
                tracing::warn!(group, plural, name = name(obj), error = %e, "controller update failed");
            }
        }
        result.is_ok()
    }

    pub fn delete(&self, group: &str, plural: &str, obj: &Value) -> bool {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return false;
        }
        self.core
            .delete(
                &self.rt(group, plural),
                ns_of(obj),
                name(obj),
                // Not a namesake created since this pass read the object.
                &DeleteOptions {
                    precondition_uid: Some(uid(obj).to_string()),
                    ..DeleteOptions::default()
                },
            )
            .is_ok()
    }
}

pub fn name(o: &Value) -> &str {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn ns_of(o: &Value) -> Option<&str> {
    o.pointer("/metadata/namespace").and_then(Value::as_str)
}

/// The claims a pod's volumes name.
pub fn claim_names(pod: &Value) -> impl Iterator<Item = &str> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
}

/// A list of strings at `pointer` (finalizers, args), empty when absent.
pub fn strings(v: &Value, pointer: &str) -> Vec<String> {
    ferry_transform::rules::strings_at(v, &format!("{pointer}/*"))
}

pub fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}

/// Objects every cluster has from the start.
pub fn bootstrap(core: &ApiCore) {
    let mk = |group: &str, plural: &str, obj: Value| {
        let rt = core.resource(group, plural).expect("built in");
        let _ = core.create(&rt, None, obj, &WriteOptions::internal());
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        mk("", "namespaces", json!({"metadata": {"name": ns}}));
    }
    mk(
        "",
        "nodes",
        json!({
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                                                      "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/control-plane": ""}},
            "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "stand-in kubelet is ready"}],
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
                       "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
                       "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
                       "nodeInfo": {"machineID": "f0e1d2c3b4a5968778695a4b3c2d1e0f", "systemUUID": "4c4c4544-0000-1000-8000-000000000001",
                                    "bootID": "8c6f2b1e-9a1d-4e55-b0f1-3d2c1b0a9f8e", "kernelVersion": std::env::consts::OS,
                                    "osImage": "Ferry stand-in", "containerRuntimeVersion": "process://ferry-standin",
                                    "kubeletVersion": "v1.33.0-ferry-standin", "kubeProxyVersion": "v1.33.0-ferry-standin",
                                    "operatingSystem": "linux", "architecture": "amd64"},
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                       "images": []}
        }),
    );
    mk(
        "storage.k8s.io",
        "storageclasses",
        json!({
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": true,
        }),
    );
    mk(
        "snapshot.storage.k8s.io",
        "volumesnapshotclasses",
        json!({
            "metadata": {"name": "standard-snapshots", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
            "driver": PROVISIONER, "deletionPolicy": "Delete",
        }),
    );
    let default_rt = core.resource("", "services").expect("built in");
    let _ = core.create(&default_rt, Some("default"), json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}
    }), &WriteOptions::internal());
}

/// One reconcile pass over everything; returns whether anything changed.
pub fn reconcile_once(core: &ApiCore, config: &StandInConfig) -> bool {
    let objects: Vec<(Key, Value)> = {
        let s = core.store.lock();
        s.all().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let ctl = Ctl {
        core,
        config,
        objects,
    };
    let mut changed = false;
    changed |= gc::namespaces(&ctl);
    changed |= gc::owners(&ctl);
    changed |= workloads::deployments(&ctl);
    changed |= workloads::replica_sets(&ctl);
    changed |= workloads::stateful_sets(&ctl);
    changed |= workloads::daemon_sets(&ctl);
    changed |= workloads::jobs(&ctl);
    changed |= storage::claims(&ctl);
    changed |= storage::released_volumes(&ctl);
    changed |= storage::snapshots(&ctl);
    changed |= workloads::pods(&ctl);
    changed
}

/// Runs the controllers until the stand-in stops.
pub async fn run(core: Arc<super::http::Shared>) {
    let mut changes = core.core.store.changes();
    loop {
        // A pass may itself change things; repeat until quiet (bounded, so a controller bug
        // cannot spin forever).
        for _ in 0..20 {
            let shared = core.clone();
            let changed =
                tokio::task::spawn_blocking(move || reconcile_once(&shared.core, &shared.config))
                    .await
                    .unwrap_or(false);
            if !changed {
                break;
            }
        }
        if changes.changed().await.is_err() {
            return;
        }
        // Coalesce bursts of writes into one pass.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        changes.borrow_and_update();
    }
}
