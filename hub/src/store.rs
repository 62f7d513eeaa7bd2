//! The hub's durable state in sled: operations, the fleet, the restore-point catalog, client
//! idempotency keys and the stream sequence of each sent command. Every write is flushed before
//! the event or request that caused it is acknowledged.

use ferry_protocol::api::{ClusterStatus, RestorePointDetails};
use ferry_protocol::operation::Operation;
use serde::{de::DeserializeOwned, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("hub database: {0}")]
    Sled(#[from] sled::Error),
    #[error("hub database: record {key} in {tree} is unreadable: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
}

pub struct Store {
    db: sled::Db,
    operations: sled::Tree,
    /// Ids of operations not yet final, so the once-a-second deadline check and a restart read
    /// only those, not the whole history.
    running: sled::Tree,
    clusters: sled::Tree,
    catalog: sled::Tree,
    idempotency: sled::Tree,
    sequences: sled::Tree,
}

fn get<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match tree.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                tree: name,
                key: key.into(),
                message: e.to_string(),
            }),
    }
}

fn all<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .map(|kv| {
            let (k, v) = kv?;
            serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                tree: name,
                key: String::from_utf8_lossy(&k).into(),
                message: e.to_string(),
            })
        })
        .collect()
}

fn put<T: Serialize>(tree: &sled::Tree, key: &str, value: &T) -> Result<(), StoreError> {
    tree.insert(
        key,
        serde_json::to_vec(value).expect("hub records serialize"),
    )?;
    Ok(())
}

impl Store {
    pub fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        let db = sled::open(path)?;
        Ok(Store {
            operations: db.open_tree("operations")?,
            running: db.open_tree("running-operations")?,
            clusters: db.open_tree("clusters")?,
            catalog: db.open_tree("restore-points")?,
            idempotency: db.open_tree("idempotency")?,
            sequences: db.open_tree("command-sequences")?,
            db,
        })
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    pub fn operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        get(&self.operations, "operations", id)
    }

    pub fn operations(&self) -> Result<Vec<Operation>, StoreError> {
        all(&self.operations, "operations")
    }

    /// Operations not yet final.
    pub fn running_operations(&self) -> Result<Vec<Operation>, StoreError> {
        let mut out = Vec::new();
        for id in self.running.iter().keys() {
            let id = String::from_utf8_lossy(&id?).into_owned();
            if let Some(op) = self.operation(&id)? {
                out.push(op);
            }
        }
        Ok(out)
    }

    pub fn put_operation(&self, op: &Operation) -> Result<(), StoreError> {
        put(&self.operations, &op.id, op)?;
        if op.phase.is_final() {
            self.running.remove(&op.id)?;
        } else {
            self.running.insert(&op.id, &[])?;
        }
        Ok(())
    }

    pub fn cluster(&self, name: &str) -> Result<Option<ClusterStatus>, StoreError> {
        get(&self.clusters, "clusters", name)
    }

    pub fn clusters(&self) -> Result<Vec<ClusterStatus>, StoreError> {
        all(&self.clusters, "clusters")
    }

    pub fn put_cluster(&self, c: &ClusterStatus) -> Result<(), StoreError> {
        put(&self.clusters, &c.registration.cluster, c)
    }

    pub fn restore_point(&self, id: &str) -> Result<Option<RestorePointDetails>, StoreError> {
        get(&self.catalog, "restore-points", id)
    }

    pub fn restore_points(&self) -> Result<Vec<RestorePointDetails>, StoreError> {
        all(&self.catalog, "restore-points")
    }

    pub fn put_restore_point(&self, rp: &RestorePointDetails) -> Result<(), StoreError> {
        put(&self.catalog, &rp.summary.id, rp)
    }

    pub fn remove_restore_point(&self, id: &str) -> Result<(), StoreError> {
        self.catalog.remove(id)?;
        Ok(())
    }

    /// The operation a client's idempotency key started, if any.
    pub fn started_by(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .idempotency
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn put_started_by(&self, key: &str, operation: &str) -> Result<(), StoreError> {
        self.idempotency.insert(key, operation.as_bytes())?;
        Ok(())
    }

    /// The command stream's sequence number of a sent command (to withdraw it on cancel).
    pub fn sequence(&self, command: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.sequences.get(command)?.and_then(|v| {
            let bytes: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }))
    }

    pub fn put_sequence(&self, command: &str, seq: u64) -> Result<(), StoreError> {
        self.sequences.insert(command, &seq.to_be_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_protocol::operation::{BackupSpec, OperationPhase, OperationSpec};

    #[test]
    fn only_unfinished_operations_are_listed_as_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let spec = || {
            OperationSpec::Backup(BackupSpec {
                cluster: "a".into(),
                selection: Default::default(),
                hooks: vec![],
                volume_data: false,
            })
        };
        let mut one = crate::machine::new_operation("one", spec(), "t");
        let two = crate::machine::new_operation("two", spec(), "t");
        store.put_operation(&one).unwrap();
        store.put_operation(&two).unwrap();
        one.phase = OperationPhase::Succeeded;
        store.put_operation(&one).unwrap();
        let running: Vec<String> = store
            .running_operations()
            .unwrap()
            .into_iter()
            .map(|o| o.id)
            .collect();
        assert_eq!(running, ["two"]);
        assert_eq!(store.operations().unwrap().len(), 2);
    }
}
