//! The object store: every object of every kind under one lock, one resourceVersion counter
//! shared across kinds (as etcd's revision is), and a bounded event history that watches replay
//! from. Events older than the history are gone, and a watch asking for them gets 410 Expired,
//! as a compacted etcd would answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, watch};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub group: String,
    pub resource: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Key {
        Key {
            group: group.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreEvent {
    pub type_: EventType,
    pub key: Key,
    pub object: Value,
    pub rv: u64,
}

pub struct Inner {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    history: VecDeque<Arc<StoreEvent>>,
    history_cap: usize,
    /// Events at or below this revision are no longer in the history.
    compacted: u64,
    tx: broadcast::Sender<Arc<StoreEvent>>,
    changed: watch::Sender<u64>,
}

pub struct Store {
    inner: Mutex<Inner>,
    changed: watch::Receiver<u64>,
    persist_path: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    resource_version: u64,
    objects: Vec<(Key, Value)>,
}

impl Store {
    pub fn new(history_cap: usize, persist_dir: Option<&Path>) -> std::io::Result<Store> {
        let (tx, _) = broadcast::channel(16 * 1024);
        let (changed_tx, changed) = watch::channel(0);
        let mut inner = Inner {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 1,
            tx,
            changed: changed_tx,
        };
        let persist_path = persist_dir.map(|d| d.join("objects.json"));
        if let Some(path) = &persist_path {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let snap: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                    inner.rv = snap.resource_version;
                    inner.compacted = snap.resource_version;
                    inner.objects = snap.objects.into_iter().collect();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Store {
            inner: Mutex::new(inner),
            changed,
            persist_path,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind, still consistent per object.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fires after every write; controllers and persistence wait on it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Writes the whole store to the data directory, atomically (temp file, then rename).
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.persist_path else {
            return Ok(());
        };
        let bytes = {
            let inner = self.lock();
            let snap = Snapshot {
                resource_version: inner.rv,
                objects: inner
                    .objects
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            serde_json::to_vec(&snap).map_err(std::io::Error::other)?
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}

/// What a watch starts from: events to replay, then the live stream.
pub struct WatchStart {
    pub replay: Vec<Arc<StoreEvent>>,
    pub live: broadcast::Receiver<Arc<StoreEvent>>,
    pub current_rv: u64,
}

pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

impl Inner {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one resource, optionally in one namespace, in key order.
    pub fn range<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.range_after(group, resource, namespace, None)
    }

    /// As [`Inner::range`], starting after `after` (a list's continue key) when given: a page
    /// costs what it returns, not what came before it.
    pub fn range_after<'a>(
        &'a self,
        group: &'a str,
        resource: &'a str,
        namespace: Option<&'a str>,
        after: Option<&Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(Key::new(group, resource, namespace.unwrap_or(""), "")),
        };
        self.objects
            .range((start, Bound::Unbounded))
            .take_while(move |(k, _)| {
                k.group == group
                    && k.resource == resource
                    && namespace.is_none_or(|ns| k.namespace == ns)
            })
    }

    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    fn record(&mut self, type_: EventType, key: Key, object: Value) {
        let ev = Arc::new(StoreEvent {
            type_,
            key,
            object,
            rv: self.rv,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
        self.changed.send_replace(self.rv);
    }

    /// Stores an object under a fresh resourceVersion and returns the stored form.
    pub fn put(&mut self, key: Key, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let type_ = if self.objects.contains_key(&key) {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(type_, key, object.clone());
        object
    }

    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(EventType::Deleted, key.clone(), object.clone());
        Some(object)
    }

    /// Starts a watch after `from` (exclusive), or at the current revision.
    pub fn watch(&self, from: Option<u64>) -> Result<WatchStart, Expired> {
        let live = self.tx.subscribe();
        let replay = match from {
            None => Vec::new(),
            Some(rv) if rv >= self.rv => Vec::new(),
            Some(rv) if rv < self.compacted => {
                return Err(Expired {
                    requested: rv,
                    oldest: self.compacted,
                })
            }
            Some(rv) => self.history.iter().filter(|e| e.rv > rv).cloned().collect(),
        };
        Ok(WatchStart {
            replay,
            live,
            current_rv: self.rv,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revisions_are_shared_and_history_compacts() {
        let store = Store::new(3, None).unwrap();
        let mut s = store.lock();
        let a = s.put(
            Key::new("", "configmaps", "d", "a"),
            json!({"metadata": {}}),
        );
        let b = s.put(
            Key::new("apps", "deployments", "d", "b"),
            json!({"metadata": {}}),
        );
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        assert_eq!(b["metadata"]["resourceVersion"], "3");
        let w = s.watch(Some(2)).ok().unwrap();
        assert_eq!(w.replay.len(), 1);
        for i in 0..5 {
            s.put(
                Key::new("", "configmaps", "d", &format!("x{i}")),
                json!({"metadata": {}}),
            );
        }
        assert!(s.watch(Some(2)).is_err());
        assert_eq!(s.range("", "configmaps", Some("d")).count(), 6);
        assert_eq!(s.range("", "configmaps", Some("e")).count(), 0);
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(10, Some(dir.path())).unwrap();
        store.lock().put(
            Key::new("", "namespaces", "", "shop"),
            json!({"metadata": {"name": "shop"}}),
        );
        store.persist().unwrap();
        let again = Store::new(10, Some(dir.path())).unwrap();
        let s = again.lock();
        assert_eq!(s.resource_version(), 2);
        assert!(s.get(&Key::new("", "namespaces", "", "shop")).is_some());
    }
}
