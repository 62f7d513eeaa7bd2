//! Restore points in the repository: one archive snapshot holding `objects.jsonl` (one object per
//! line, streamed as captured) and `manifest.json` (written last, naming every object with the
//! hash of its line), tagged so that the repository alone says which restore points exist.
//! `docs/restore-points.md` specifies the layout.

mod writer;

pub use writer::{RestorePointWriter, SpooledEntries};

use crate::error::{Result, SpokeError};
use ferry_protocol::restore_point::{
    Manifest, MANIFEST_FILE, MANIFEST_TAG, OBJECTS_FILE, RESTORE_POINT_TAG,
};
use ferry_protocol::ObjectRef;
use ferry_repository::backup::archive::ArchiveFile;
use ferry_repository::repo::Repository;
use ferry_repository::tree::Snapshot;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn id_tag(id: &str) -> String {
    format!("{RESTORE_POINT_TAG}={id}")
}

/// `Deployment.apps`, `Secret`: a kind as the headline counts it.
pub fn kind_label(object: &ObjectRef) -> String {
    if object.group.is_empty() {
        object.kind.clone()
    } else {
        format!("{}.{}", object.kind, object.group)
    }
}

/// The manifest snapshot of a restore point, if the repository has one.
pub async fn find(repo: &Repository, id: &str) -> Result<Option<(String, Snapshot)>> {
    let tag = id_tag(id);
    Ok(repo
        .snapshots()
        .await?
        .into_iter()
        .rev()
        .find(|(_, s)| s.tags.iter().any(|t| t == MANIFEST_TAG) && s.tags.contains(&tag)))
}

/// Every restore point's manifest snapshot, oldest first.
pub async fn all(repo: &Repository) -> Result<Vec<(String, Snapshot)>> {
    Ok(repo
        .snapshots()
        .await?
        .into_iter()
        .filter(|(_, s)| s.tags.iter().any(|t| t == MANIFEST_TAG))
        .collect())
}

/// Every repository snapshot belonging to a restore point (its manifest's and its volumes').
pub async fn snapshots_of(repo: &Repository, id: &str) -> Result<Vec<String>> {
    let tag = id_tag(id);
    Ok(repo
        .snapshots()
        .await?
        .into_iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .map(|(n, _)| n)
        .collect())
}

fn damaged(id: &str, object: Option<&ObjectRef>, message: impl Into<String>) -> SpokeError {
    SpokeError::Damaged {
        restore_point: id.to_string(),
        object: object.cloned().map(Box::new),
        message: message.into(),
    }
}

pub async fn read_manifest(
    repo: Arc<Repository>,
    id: &str,
    snapshot: &Snapshot,
) -> Result<Manifest> {
    let bytes = ArchiveFile::open(repo, snapshot, MANIFEST_FILE)
        .await?
        .read_all()
        .await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| damaged(id, None, format!("{MANIFEST_FILE}: {e}")))?;
    if manifest.id != id {
        return Err(damaged(
            id,
            None,
            format!("{MANIFEST_FILE} names restore point {:?}", manifest.id),
        ));
    }
    Ok(manifest)
}

/// Reads a restore point: its manifest and its objects, each checked against the manifest (a
/// damaged or altered object is named, never restored).
pub async fn read(repo: Arc<Repository>, id: &str) -> Result<(Manifest, Vec<Value>)> {
    // Another spoke may have written it since this one loaded the index.
    repo.reload_index().await?;
    let (_, snapshot) = find(&repo, id).await?.ok_or_else(|| SpokeError::NotFound {
        what: format!("restore point {id}"),
    })?;
    let manifest = read_manifest(repo.clone(), id, &snapshot).await?;
    let mut file = ArchiveFile::open(repo, &snapshot, OBJECTS_FILE).await?;
    let mut objects = Vec::with_capacity(manifest.objects.len());
    let mut pending: Vec<u8> = Vec::new();
    let mut entries = manifest.objects.iter();
    let mut take_line = |line: &[u8], objects: &mut Vec<Value>| -> Result<()> {
        let Some(entry) = entries.next() else {
            return Err(damaged(
                id,
                None,
                format!("{OBJECTS_FILE} has more objects than the manifest names"),
            ));
        };
        if line.len() as u64 != entry.bytes || blake3::hash(line).to_hex().as_str() != entry.blake3
        {
            return Err(damaged(
                id,
                Some(&entry.object),
                "the object's bytes differ from what the manifest recorded",
            ));
        }
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| damaged(id, Some(&entry.object), format!("not JSON: {e}")))?;
        if ObjectRef::from_object(&value).as_ref() != Some(&entry.object) {
            return Err(damaged(
                id,
                Some(&entry.object),
                "the object is not the one the manifest names",
            ));
        }
        objects.push(value);
        Ok(())
    };
    while let Some(chunk) = file.next_chunk().await? {
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            take_line(&pending[start..start + end + 1], &mut objects)?;
            start += end + 1;
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        take_line(&pending, &mut objects)?;
    }
    if objects.len() != manifest.objects.len() {
        return Err(damaged(
            id,
            manifest.objects.get(objects.len()).map(|e| &e.object),
            format!(
                "{OBJECTS_FILE} ends after {} of {} objects",
                objects.len(),
                manifest.objects.len()
            ),
        ));
    }
    Ok((manifest, objects))
}

/// What the hub's catalog holds of every restore point in the repository, newest first; those
/// whose manifest cannot be read are named with why.
pub async fn catalog(
    repo: Arc<Repository>,
) -> Result<(Vec<ferry_protocol::api::RestorePointDetails>, Vec<String>)> {
    repo.reload_index().await?;
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for (name, snapshot) in all(&repo).await?.into_iter().rev() {
        let Some(id) = snapshot
            .tags
            .iter()
            .find_map(|t| t.strip_prefix(&format!("{RESTORE_POINT_TAG}=")))
        else {
            continue;
        };
        match read_manifest(repo.clone(), id, &snapshot).await {
            Ok(m) => {
                let mut kinds = BTreeMap::new();
                for e in &m.objects {
                    *kinds.entry(kind_label(&e.object)).or_default() += 1;
                }
                found.push(ferry_protocol::api::RestorePointDetails {
                    summary: m.summary(&name, snapshot.summary.stored_bytes),
                    source: m.source,
                    selection: m.selection,
                    kinds,
                    hooks: m.hooks,
                    volumes: m.volumes,
                });
            }
            Err(e) => unreadable.push(format!("{id}: {e}")),
        }
    }
    Ok((found, unreadable))
}
