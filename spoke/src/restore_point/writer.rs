//! Writing a restore point in bounded memory, however many objects it holds: each object goes
//! into the archive's `objects.jsonl` as it is captured, its manifest entry into a scratch file
//! (unlinked, so nothing is left behind if the spoke dies), and at the end `manifest.json` is
//! serialized from that file straight into the archive.

use super::{id_tag, kind_label};
use crate::error::{Result, SpokeError};
use ferry_protocol::restore_point::{
    manifest_source, Manifest, ObjectCount, ObjectEntry, MANIFEST_FILE, MANIFEST_TAG, OBJECTS_FILE,
};
use ferry_protocol::ObjectRef;
use ferry_repository::backup::archive::ArchiveWriter;
use ferry_repository::backup::BackupOptions;
use ferry_repository::repo::Repository;
use ferry_repository::tree::Snapshot;
use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Pieces of `manifest.json` handed from the serializing thread to the archive.
const MANIFEST_PIECE: usize = 1 << 20;

fn scratch(source: io::Error) -> SpokeError {
    SpokeError::Scratch {
        what: "manifest entries",
        source,
    }
}

/// Writes one restore point: objects as they come, then the manifest.
pub struct RestorePointWriter {
    archive: ArchiveWriter,
    id: String,
    entries: BufWriter<File>,
    count: u64,
    kinds: BTreeMap<String, u64>,
    line: Vec<u8>,
}

impl RestorePointWriter {
    pub async fn begin(repo: Arc<Repository>, id: &str) -> Result<RestorePointWriter> {
        let entries = BufWriter::new(tempfile::tempfile().map_err(scratch)?);
        let options = BackupOptions {
            tags: vec![id_tag(id), MANIFEST_TAG.to_string()],
            parent: Some(String::new()),
            ..Default::default()
        };
        let mut archive = ArchiveWriter::begin(repo, &manifest_source(id), options).await?;
        if let Err(e) = archive.start_file(OBJECTS_FILE).await {
            let _ = archive.abandon().await;
            return Err(e.into());
        }
        Ok(RestorePointWriter {
            archive,
            id: id.to_string(),
            entries,
            count: 0,
            kinds: BTreeMap::new(),
            line: Vec::new(),
        })
    }

    /// Appends one object (as one line) and records it for the manifest.
    pub async fn add(&mut self, object: &Value, reason: String) -> Result<()> {
        let r = ObjectRef::from_object(object).ok_or_else(|| SpokeError::Damaged {
            restore_point: self.id.clone(),
            object: None,
            message: "an object without apiVersion, kind or name cannot be captured".into(),
        })?;
        self.line.clear();
        serde_json::to_writer(&mut self.line, object).expect("JSON values serialize");
        self.line.push(b'\n');
        *self.kinds.entry(kind_label(&r)).or_default() += 1;
        let entry = ObjectEntry {
            object: r,
            reason,
            bytes: self.line.len() as u64,
            blake3: blake3::hash(&self.line).to_hex().to_string(),
        };
        serde_json::to_writer(&mut self.entries, &entry).map_err(|e| scratch(e.into()))?;
        self.entries.write_all(b"\n").map_err(scratch)?;
        self.count += 1;
        self.archive.write(&self.line).await?;
        Ok(())
    }

    /// Objects added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn kinds(&self) -> &BTreeMap<String, u64> {
        &self.kinds
    }

    /// Gives up: nothing becomes a restore point; what was stored is left for a retry to reuse
    /// (or prune to remove) and the repository lock is released.
    pub async fn abandon(self) {
        if let Err(e) = self.archive.abandon().await {
            tracing::warn!(restore_point = %self.id, error = %e, "abandoning the restore point's archive");
        }
    }

    /// Writes the manifest (its object list is the entries recorded by [`Self::add`]) and the
    /// snapshot.
    pub async fn finish(
        mut self,
        manifest: Manifest<()>,
    ) -> Result<(String, Manifest<SpooledEntries>, Snapshot)> {
        let file = match self.entries.into_inner() {
            Ok(f) => f,
            Err(e) => {
                self.archive.abandon().await.ok();
                return Err(scratch(e.into_error()));
            }
        };
        let manifest = Arc::new(manifest.with_objects(SpooledEntries {
            file,
            count: self.count,
        }));
        let written = write_manifest(&mut self.archive, manifest.clone()).await;
        if let Err(e) = written {
            self.archive.abandon().await.ok();
            return Err(e);
        }
        let (name, snapshot) = self.archive.finish().await?;
        let manifest = Arc::try_unwrap(manifest)
            .unwrap_or_else(|_| unreachable!("the serializing thread has ended"));
        Ok((name, manifest, snapshot))
    }
}

/// Serializes the manifest on a blocking thread (it reads the entries file) and writes it into
/// the archive a piece at a time.
async fn write_manifest(
    archive: &mut ArchiveWriter,
    manifest: Arc<Manifest<SpooledEntries>>,
) -> Result<()> {
    archive.start_file(MANIFEST_FILE).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let serializing = tokio::task::spawn_blocking(move || {
        let mut out = Pieces {
            tx,
            piece: Vec::with_capacity(MANIFEST_PIECE),
        };
        serde_json::to_writer_pretty(&mut out, &*manifest).map_err(io::Error::from)?;
        out.send()
    });
    while let Some(piece) = rx.recv().await {
        archive.write(&piece).await?;
    }
    serializing
        .await
        .map_err(|e| scratch(io::Error::other(e)))?
        .map_err(scratch)
}

/// A writer that gathers the manifest into pieces and hands each full one to the archive's
/// side (moved, not copied).
struct Pieces {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    piece: Vec<u8>,
}

impl Pieces {
    fn send(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(MANIFEST_PIECE));
        self.tx
            .blocking_send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the archive stopped"))
    }
}

impl Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.piece.extend_from_slice(buf);
        if self.piece.len() >= MANIFEST_PIECE {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A manifest's object list kept in a scratch file, one JSON entry per line; it serializes as
/// the manifest's `objects` array, reading the file as it goes.
pub struct SpooledEntries {
    file: File,
    count: u64,
}

impl ObjectCount for SpooledEntries {
    fn object_count(&self) -> u64 {
        self.count
    }
}

impl Serialize for SpooledEntries {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0)).map_err(S::Error::custom)?;
        let mut seq = serializer.serialize_seq(Some(self.count as usize))?;
        let entries =
            serde_json::Deserializer::from_reader(BufReader::new(file)).into_iter::<ObjectEntry>();
        let mut seen = 0;
        for entry in entries {
            seq.serialize_element(&entry.map_err(S::Error::custom)?)?;
            seen += 1;
        }
        if seen != self.count {
            return Err(S::Error::custom(format!(
                "the manifest entries file holds {seen} of {} entries",
                self.count
            )));
        }
        seq.end()
    }
}
