//! Who a pod's process runs as, and what the kubelet changes on the host so that it may reach
//! its sandbox and write its volumes (search permission, `fsGroup`).

use super::str_at;
use serde_json::Value;
use std::path::Path;

/// Who a container's process runs as: `securityContext` of the container over the pod's.
#[derive(Debug, Default, PartialEq)]
pub(super) struct RunAs {
    pub(super) user: Option<u32>,
    /// `runAsGroup`, or else `fsGroup`: std's `Command` cannot add supplementary groups, so the
    /// fsGroup becomes the primary group when no other is asked for.
    pub(super) group: Option<u32>,
    pub(super) fs_group: Option<u32>,
    /// `fsGroupChangePolicy: Always` (the default) rather than `OnRootMismatch`.
    pub(super) fs_group_always: bool,
}

impl RunAs {
    pub(super) fn of(pod: &Value, container: &Value) -> RunAs {
        let id = |field: &str| {
            container
                .pointer(&format!("/securityContext/{field}"))
                .or_else(|| pod.pointer(&format!("/spec/securityContext/{field}")))
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let fs_group = pod
            .pointer("/spec/securityContext/fsGroup")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok());
        RunAs {
            user: id("runAsUser"),
            group: id("runAsGroup").or(fs_group),
            fs_group,
            fs_group_always: str_at(pod, "/spec/securityContext/fsGroupChangePolicy")
                != "OnRootMismatch",
        }
    }
}

/// The stand-in's own user and group, which its processes keep unless a pod asks otherwise
/// (read once: snapshot copies ask for every file).
pub(crate) fn current_uid() -> u32 {
    process_ids().0
}

pub(crate) fn current_gid() -> u32 {
    process_ids().1
}

fn process_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    static IDS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *IDS.get_or_init(|| {
        std::fs::metadata("/proc/self").map_or((u32::MAX, u32::MAX), |m| (m.uid(), m.gid()))
    })
}

/// Adds search permission for others on `path` and each directory above it that lacks it.
pub(super) fn allow_traversal(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path.ancestors().filter(|d| d.is_dir()) {
        let mut perms = std::fs::metadata(dir)?.permissions();
        if perms.mode() & 0o001 == 0 {
            perms.set_mode(perms.mode() | 0o001);
            std::fs::set_permissions(dir, perms)?;
        }
    }
    Ok(())
}

/// What the kubelet does for `fsGroup`: the volume's files belong to the group, which may read
/// and write them; directories are set-group-id so new files join the group. With
/// `OnRootMismatch` nothing below the root changes once the root is right, which is what keeps
/// PostgreSQL's 0700 data directory as PostgreSQL requires.
pub(super) fn apply_fs_group(root: &Path, group: u32, always: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    const DIR_BITS: u32 = 0o2070;
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let root_right = meta.gid() == group && meta.mode() & DIR_BITS == DIR_BITS;
    if root_right && !always {
        return Ok(());
    }
    fn walk(path: &Path, group: u32) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        std::os::unix::fs::lchown(path, None, Some(group))?;
        let mode = meta.mode() & 0o7777;
        let wanted = if meta.is_dir() {
            mode | DIR_BITS
        } else {
            mode | 0o060
        };
        if wanted != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), group)?;
            }
        }
        Ok(())
    }
    walk(root, group)
}
