//! Workload controllers: Deployments make ReplicaSets, ReplicaSets, StatefulSets, DaemonSets and
//! Jobs make Pods, and the stand-in kubelet makes Pods Running and Ready (or Succeeded for Jobs).
//! No container runs here; pods of mapped images belong to the process kubelet (`kubelet`).

use super::{claim_names, name, ns_of, owner_ref, uid, Ctl, NODE_NAME};
use crate::apiserver::core::now;
use serde_json::{json, Value};

fn replicas(o: &Value) -> i64 {
    o.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn generation(o: &Value) -> Value {
    o.pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1))
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn alive(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_none()
}

/// Writes `v` with object keys sorted, so that equal templates hash alike whatever order a
/// client wrote their fields in (`kubectl rollout undo` sends Go's struct order).
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn template_hash(template: &Value) -> String {
    let mut text = String::new();
    canonical_json(template, &mut text);
    let mut h: u32 = 0x811c9dc5;
    for b in text.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    // Kubernetes renders the hash with a vowel-free alphabet; the shape is what matters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 3)) as usize + i) % ALPHABET.len()] as char)
        .collect()
}

/// A Pod (or ReplicaSet) object from a template, owned by `owner`.
fn from_template(
    owner: &Value,
    name: Option<&str>,
    generate: Option<&str>,
    extra_labels: Value,
) -> Value {
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    if let Some(n) = name {
        meta["name"] = json!(n);
    }
    if let Some(g) = generate {
        meta["generateName"] = json!(g);
    }
    meta["namespace"] = owner["metadata"]["namespace"].clone();
    if let Some(extra) = extra_labels.as_object() {
        for (k, v) in extra {
            meta["labels"][k] = v.clone();
        }
    }
    meta["ownerReferences"] = json!([owner_ref(owner)]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
           "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(o: &Value) -> i64 {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn deployments(ctl: &Ctl) -> bool {
    let mut changed = false;
    for d in ctl.of("apps", "deployments").filter(|d| alive(d)) {
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let rs_name = format!("{}-{hash}", name(d));
        let want = replicas(d);
        let owned: Vec<&Value> = ctl.owned_by("apps", "replicasets", d).collect();
        // Each template the Deployment has had is a ReplicaSet with a revision number; the
        // current one has the highest, which `kubectl rollout history` and `undo` rely on.
        let newest = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let current_revision = match owned.iter().find(|rs| name(rs) == rs_name) {
            None => {
                let mut t = template.clone();
                t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut annotations = json!({"deployment.kubernetes.io/desired-replicas": want.to_string(),
                                             REVISION: (newest + 1).to_string()});
                if let Some(cause) = d
                    .pointer("/metadata/annotations/kubernetes.io~1change-cause")
                    .cloned()
                {
                    annotations["kubernetes.io/change-cause"] = cause;
                }
                changed |= ctl.create(
                    "apps",
                    "replicasets",
                    ns_of(d),
                    json!({
                        "metadata": {"name": rs_name, "labels": t["metadata"]["labels"].clone(),
                                     "ownerReferences": [owner_ref(d)], "annotations": annotations},
                        "spec": {"replicas": want, "selector": selector, "template": t},
                    }),
                );
                newest + 1
            }
            // Back to an earlier template (a rollback): it becomes the newest revision again.
            Some(rs) if revision(rs) < newest => {
                changed |= ctl.mutate("apps", "replicasets", rs, |o| {
                    o["metadata"]["annotations"][REVISION] = json!((newest + 1).to_string())
                });
                newest + 1
            }
            Some(rs) => revision(rs),
        };
        // Old revisions beyond revisionHistoryLimit go, oldest first, once scaled down.
        let limit = d
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
            .unwrap_or(10)
            .max(0) as usize;
        let mut old: Vec<&&Value> = owned
            .iter()
            .filter(|rs| name(rs) != rs_name && replicas(rs) == 0)
            .collect();
        old.sort_by_key(|rs| revision(rs));
        for rs in old.iter().take(old.len().saturating_sub(limit)) {
            changed |= ctl.delete("apps", "replicasets", rs);
        }
        let (mut ready, mut total, mut updated) = (0, 0, 0);
        for rs in &owned {
            let target = if name(rs) == rs_name { want } else { 0 };
            changed |= ctl.mutate("apps", "replicasets", rs, |o| {
                o["spec"]["replicas"] = json!(target)
            });
            ready += rs
                .pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            total += rs
                .pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if name(rs) == rs_name {
                updated = rs
                    .pointer("/status/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
            }
        }
        let available = ready >= want;
        let status = json!({
            "observedGeneration": generation(d), "replicas": total, "updatedReplicas": updated,
            "readyReplicas": ready, "availableReplicas": ready,
            "unavailableReplicas": (want - ready).max(0),
            "conditions": [
                {"type": "Available", "status": if available { "True" } else { "False" },
                 "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed.")},
            ],
        });
        changed |= ctl.mutate("apps", "deployments", d, |o| {
            o["metadata"]["annotations"][REVISION] = json!(current_revision.to_string());
            set_status(o, status)
        });
    }
    changed
}

/// Replaces status, keeping transition times of conditions whose status did not change, so a
/// steady object does not change on every pass.
fn set_status(o: &mut Value, mut status: Value) {
    let old = o.get("status").cloned().unwrap_or(json!({}));
    if let Some(conds) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds.iter_mut() {
            let prev = old
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|p| p["type"] == c["type"]));
            let time = match prev {
                Some(p) if p["status"] == c["status"] => {
                    p.get("lastTransitionTime").cloned().unwrap_or(json!(now()))
                }
                _ => json!(now()),
            };
            c["lastTransitionTime"] = time;
        }
    }
    let mut merged = old;
    for (k, v) in status.as_object().cloned().unwrap_or_default() {
        merged[k] = v;
    }
    o["status"] = merged;
}

pub fn replica_sets(ctl: &Ctl) -> bool {
    let mut changed = false;
    for rs in ctl.of("apps", "replicasets").filter(|r| alive(r)) {
        let want = replicas(rs);
        let pods: Vec<&Value> = ctl.owned_by("", "pods", rs).filter(|p| alive(p)).collect();
        let have = pods.len() as i64;
        if have < want {
            for _ in have..want {
                let pod = from_template(rs, None, Some(&format!("{}-", name(rs))), json!({}));
                changed |= ctl.create("", "pods", ns_of(rs), pod);
            }
        } else if have > want {
            for p in pods.iter().rev().take((have - want) as usize) {
                changed |= ctl.delete("", "pods", p);
            }
        }
        let ready = pods.iter().filter(|p| is_ready(p)).count() as i64;
        let status = json!({"replicas": have, "fullyLabeledReplicas": have,
                            "readyReplicas": ready, "availableReplicas": ready,
                            "observedGeneration": generation(rs)});
        changed |= ctl.mutate("apps", "replicasets", rs, |o| set_status(o, status));
    }
    changed
}

pub fn stateful_sets(ctl: &Ctl) -> bool {
    let mut changed = false;
    for sts in ctl.of("apps", "statefulsets").filter(|s| alive(s)) {
        let want = replicas(sts);
        let ns = ns_of(sts).unwrap_or("default");
        let templates: Vec<Value> = sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let pods: Vec<&Value> = ctl.owned_by("", "pods", sts).filter(|p| alive(p)).collect();
        for i in 0..want {
            let pod_name = format!("{}-{i}", name(sts));
            // PVCs first, kept after the pod goes (the default retention policy).
            for t in &templates {
                let claim = format!("{}-{pod_name}", name(t));
                if ctl.find("", "persistentvolumeclaims", ns, &claim).is_none() {
                    let mut meta = t.get("metadata").cloned().unwrap_or(json!({}));
                    meta["name"] = json!(claim);
                    meta["labels"] = sts
                        .pointer("/spec/selector/matchLabels")
                        .cloned()
                        .unwrap_or(json!({}));
                    changed |= ctl.create(
                        "",
                        "persistentvolumeclaims",
                        Some(ns),
                        json!({
                            "metadata": meta, "spec": t.get("spec").cloned().unwrap_or(json!({}))
                        }),
                    );
                }
            }
            if !pods.iter().any(|p| name(p) == pod_name)
                && ctl.find("", "pods", ns, &pod_name).is_none()
            {
                // OrderedReady: the next pod waits for the previous one to be Ready.
                let ordered = sts
                    .pointer("/spec/podManagementPolicy")
                    .and_then(Value::as_str)
                    != Some("Parallel");
                let prev_ready = i == 0
                    || ctl
                        .find("", "pods", ns, &format!("{}-{}", name(sts), i - 1))
                        .is_some_and(is_ready);
                if ordered && !prev_ready {
                    break;
                }
                let mut pod = from_template(
                    sts,
                    Some(&pod_name),
                    None,
                    json!({
                    "statefulset.kubernetes.io/pod-name": pod_name, "apps.kubernetes.io/pod-index": i.to_string()}),
                );
                pod["spec"]["hostname"] = json!(pod_name);
                if let Some(svc) = sts.pointer("/spec/serviceName") {
                    pod["spec"]["subdomain"] = svc.clone();
                }
                let volumes = pod["spec"]["volumes"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let mut volumes: Vec<Value> = volumes;
                for t in &templates {
                    let vname = t.pointer("/metadata/name").cloned().unwrap_or(json!(""));
                    if !volumes.iter().any(|v| v["name"] == vname) {
                        volumes.push(json!({"name": vname, "persistentVolumeClaim": {
                            "claimName": format!("{}-{pod_name}", vname.as_str().unwrap_or(""))}}));
                    }
                }
                if !volumes.is_empty() {
                    pod["spec"]["volumes"] = json!(volumes);
                }
                changed |= ctl.create("", "pods", Some(ns), pod);
            }
        }
        for p in &pods {
            let index = name(p)
                .rsplit('-')
                .next()
                .and_then(|i| i.parse::<i64>().ok())
                .unwrap_or(0);
            if index >= want {
                changed |= ctl.delete("", "pods", p);
            }
        }
        let ready = pods.iter().filter(|p| is_ready(p)).count() as i64;
        let count = pods.len() as i64;
        let status = json!({"observedGeneration": generation(sts), "replicas": count, "readyReplicas": ready,
                            "currentReplicas": count, "updatedReplicas": count, "availableReplicas": ready});
        changed |= ctl.mutate("apps", "statefulsets", sts, |o| set_status(o, status));
    }
    changed
}

pub fn daemon_sets(ctl: &Ctl) -> bool {
    let mut changed = false;
    for ds in ctl.of("apps", "daemonsets").filter(|d| alive(d)) {
        let pods: Vec<&Value> = ctl.owned_by("", "pods", ds).filter(|p| alive(p)).collect();
        if pods.is_empty() {
            let mut pod = from_template(ds, None, Some(&format!("{}-", name(ds))), json!({}));
            pod["spec"]["nodeName"] = json!(NODE_NAME);
            changed |= ctl.create("", "pods", ns_of(ds), pod);
        }
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let status = json!({"observedGeneration": generation(ds), "desiredNumberScheduled": 1,
                            "currentNumberScheduled": pods.len(), "updatedNumberScheduled": pods.len(),
                            "numberReady": ready, "numberAvailable": ready, "numberMisscheduled": 0});
        changed |= ctl.mutate("apps", "daemonsets", ds, |o| set_status(o, status));
    }
    changed
}

pub fn jobs(ctl: &Ctl) -> bool {
    let mut changed = false;
    for job in ctl.of("batch", "jobs").filter(|j| alive(j)) {
        if job.pointer("/spec/suspend") == Some(&json!(true)) {
            continue;
        }
        let pods: Vec<&Value> = ctl.owned_by("", "pods", job).collect();
        let succeeded = pods
            .iter()
            .filter(|p| p.pointer("/status/phase") == Some(&json!("Succeeded")))
            .count() as i64;
        let failed = pods
            .iter()
            .filter(|p| p.pointer("/status/phase") == Some(&json!("Failed")))
            .count() as i64;
        let active = pods.len() as i64 - succeeded - failed;
        let completions = job
            .pointer("/spec/completions")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let backoff = job
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        let done = succeeded >= completions;
        let gave_up = failed > backoff;
        if !done && !gave_up && active == 0 {
            let mut pod = from_template(
                job,
                None,
                Some(&format!("{}-", name(job))),
                json!({
                "batch.kubernetes.io/job-name": name(job), "job-name": name(job),
                "batch.kubernetes.io/controller-uid": uid(job)}),
            );
            if pod.pointer("/spec/restartPolicy").is_none() {
                pod["spec"]["restartPolicy"] = json!("Never");
            }
            changed |= ctl.create("", "pods", ns_of(job), pod);
        }
        let mut status =
            json!({"active": active, "succeeded": succeeded, "failed": failed, "ready": 0});
        if job.pointer("/status/startTime").is_none() {
            status["startTime"] = json!(now());
        }
        if done {
            if job.pointer("/status/completionTime").is_none() {
                status["completionTime"] = json!(now());
            }
            status["conditions"] = json!([{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]);
        } else if gave_up {
            status["conditions"] =
                json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]);
        }
        changed |= ctl.mutate("batch", "jobs", job, |o| set_status(o, status));
    }
    changed
}

/// The scheduler and kubelet in one: a Pending pod whose claims are bound is placed on the node
/// and becomes Running and Ready; a pod of a Job runs to completion.
pub fn pods(ctl: &Ctl) -> bool {
    let mut changed = false;
    for pod in ctl.of("", "pods").filter(|p| alive(p)) {
        if pod.pointer("/status/phase") != Some(&json!("Pending")) {
            continue;
        }
        if crate::apiserver::kubelet::owns(&ctl.config.image_programs, pod) {
            continue;
        }
        let ns = ns_of(pod).unwrap_or("default");
        let claims_bound = claim_names(pod).all(|c| {
            ctl.find("", "persistentvolumeclaims", ns, c)
                .is_some_and(|pvc| pvc.pointer("/status/phase") == Some(&json!("Bound")))
        });
        if !claims_bound {
            continue;
        }
        let runs_to_completion = matches!(
            pod.pointer("/spec/restartPolicy").and_then(Value::as_str),
            Some("Never" | "OnFailure")
        );
        let status = running_status(pod, runs_to_completion);
        changed |= ctl.mutate("", "pods", pod, |o| {
            if o.pointer("/spec/nodeName").is_none() {
                o["spec"]["nodeName"] = json!(NODE_NAME);
            }
            o["status"] = status;
        });
    }
    changed
}

/// The status of a pod whose containers started; `completed` for run-to-completion pods.
pub fn running_status(pod: &Value, completed: bool) -> Value {
    let t = now();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let state = if completed {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}})
            } else {
                json!({"running": {"startedAt": t}})
            };
            json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": !completed,
                   "started": !completed, "restartCount": 0, "state": state,
                   "containerID": format!("standin://{}", uid(pod))})
        })
        .collect();
    let ready = if completed { "False" } else { "True" };
    json!({
        "phase": if completed { "Succeeded" } else { "Running" },
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
            {"type": "Initialized", "status": "True", "lastTransitionTime": t},
            {"type": "ContainersReady", "status": ready, "lastTransitionTime": t},
            {"type": "Ready", "status": ready, "lastTransitionTime": t},
        ],
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": t, "qosClass": "BestEffort",
        "containerStatuses": containers,
    })
}
