//! `storageClass`: every place a claim or volume names its class.

use super::{for_each_string_at, group_of, kind_of, set};
use serde_json::Value;

pub fn apply(obj: &mut Value, from: &str, to: &str) -> Vec<String> {
    let mut changes = Vec::new();
    let pointers: &[&str] = match (group_of(obj), kind_of(obj)) {
        ("", "PersistentVolumeClaim") => &[
            "/spec/storageClassName",
            "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
        ],
        ("", "PersistentVolume") => &[
            "/spec/storageClassName",
            "/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
        ],
        ("apps", "StatefulSet") => &[
            "/spec/volumeClaimTemplates/*/spec/storageClassName",
            "/spec/volumeClaimTemplates/*/metadata/annotations/volume.beta.kubernetes.io~1storage-class",
        ],
        _ => &[],
    };
    for p in pointers {
        for_each_string_at(obj, p, &mut |at, s| {
            if s == from {
                set(at, s, to.to_string(), &mut changes);
            }
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_volumes_and_templates() {
        let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "gp2"}},
            "spec": {"storageClassName": "gp2"}});
        assert_eq!(apply(&mut pvc, "gp2", "premium-rwo").len(), 2);
        assert_eq!(pvc["spec"]["storageClassName"], "premium-rwo");
        assert_eq!(
            pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"],
            "premium-rwo"
        );
        let mut sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"volumeClaimTemplates": [
            {"spec": {"storageClassName": "gp2"}}, {"spec": {"storageClassName": "fast"}}]}});
        assert_eq!(
            apply(&mut sts, "gp2", "premium-rwo"),
            ["/spec/volumeClaimTemplates/0/spec/storageClassName: gp2 → premium-rwo"]
        );
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][1]["spec"]["storageClassName"],
            "fast"
        );
        let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "spec": {"storageClassName": "gp2"}});
        assert_eq!(apply(&mut pv, "gp2", "x").len(), 1);
        let mut cm =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"storageClassName": "gp2"}});
        assert!(apply(&mut cm, "gp2", "x").is_empty());
    }
}
