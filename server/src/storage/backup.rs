//! Backups of a running server, and bringing one back.
//!
//! A backup is a fresh sled database holding a copy of every tree, made by the
//! sync store's writer thread while it holds every write of records (pushes,
//! schedule commits, upkeep wait in its queue): the sync tree is copied exactly
//! at one commit seq. sled iterators are not snapshots, so a copy made beside a
//! writer could hold half a group; and a file copy of sled's folder is not safe
//! either, since accounts, scopes and photo metadata are written outside the
//! writer and sled rewrites its files in the background. The other trees hold
//! independent entries (accounts, sessions, photo metadata), each copied as it
//! was at some instant, which is what they need. Photo blobs are immutable files
//! named by their SHA-256 and are copied after the database, so every blob the
//! copied metadata names is there.
//!
//! A restore copies the backup into an empty data folder and gives the store a
//! new epoch: tablets that see it send back what they hold from the previous
//! one (`sync_protocol::recovery`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys;

/// The backup's description, written last: a folder without it is not a backup.
pub const MANIFEST: &str = "backup.json";
/// The copied sled database inside a backup folder.
pub const DB_DIR: &str = "db";
/// Photo blobs, below the data folder and the backup folder alike.
pub const BLOBS_DIR: &str = "photos/blobs";

/// Entries copied per sled batch.
const COPY_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{dir} exists and is not empty: give a new or empty folder")]
    NotEmpty { dir: String },
    #[error("{dir} is not a backup (no {MANIFEST})")]
    NotABackup { dir: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("{path} does not decode: {source}")]
    Manifest {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{free} bytes free for the backup in {dir}, {needed} needed")]
    NoSpace { dir: String, free: u64, needed: u64 },
    #[error("this store cannot be backed up (records kept in memory)")]
    Unsupported,
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl BackupError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
        move |source| BackupError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The folder, as the server sees it.
    pub dir: String,
    /// The epoch of the store it was taken from.
    pub epoch: String,
    /// Every record change up to this commit seq is in the backup, none after.
    pub commit_seq: u64,
    pub taken_ms: u64,
    pub trees: usize,
    pub entries: u64,
    #[serde(default)]
    pub photos: u64,
}

/// Where a restored store came from; kept under `META_RESTORE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInfo {
    /// The epoch of the store the backup was taken from: tablets that synced
    /// with it may send back what they hold.
    pub from_epoch: String,
    /// The new epoch.
    pub epoch: String,
    /// The backup's commit seq.
    pub base_seq: u64,
    pub backup_taken_ms: u64,
    pub restored_ms: u64,
}

/// A folder that may receive a backup or a restore: absent or empty.
pub fn check_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::NotEmpty {
                dir: dir.display().to_string(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackupError::io(dir)(e)),
    }
}

/// Refuse a backup the disk under `dir` cannot hold (`bytes` of store, plus a
/// reserve): sled does not survive running out of space mid-copy, and the
/// copy holds every record write.
pub fn check_space(dir: &Path, bytes: u64) -> Result<(), BackupError> {
    let mut probe = dir;
    while !probe.exists() {
        match probe.parent() {
            Some(p) => probe = p,
            None => break,
        }
    }
    let free = fs2::available_space(probe).map_err(BackupError::io(probe))?;
    let needed = bytes.saturating_add(super::sled_store::FREE_SPACE_RESERVE);
    if free < needed {
        return Err(BackupError::NoSpace {
            dir: dir.display().to_string(),
            free,
            needed,
        });
    }
    Ok(())
}

/// Copy every tree of `src` into a new database at `dir/db` and flush it.
/// The caller holds the record writes. Returns (trees, entries).
pub fn copy_db(src: &sled::Db, dir: &Path) -> Result<(usize, u64), BackupError> {
    std::fs::create_dir_all(dir).map_err(BackupError::io(dir))?;
    let dst = sled::Config::new().path(dir.join(DB_DIR)).open()?;
    let copied = copy_trees(src, &dst)?;
    dst.flush()?;
    Ok(copied)
}

fn copy_trees(src: &sled::Db, dst: &sled::Db) -> Result<(usize, u64), BackupError> {
    let mut trees = 0;
    let mut entries = 0u64;
    for name in src.tree_names() {
        let from = src.open_tree(&name)?;
        let to = dst.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in from.iter() {
            let (k, v) = item?;
            batch.insert(k, v);
            n += 1;
            entries += 1;
            if n == COPY_BATCH {
                to.apply_batch(std::mem::take(&mut batch))?;
                n = 0;
            }
        }
        to.apply_batch(batch)?;
        trees += 1;
    }
    Ok((trees, entries))
}

/// Write the manifest, which marks the backup complete.
pub fn write_manifest(dir: &Path, info: &BackupInfo) -> Result<(), BackupError> {
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(info).map_err(|source| BackupError::Manifest {
        path: path.display().to_string(),
        source,
    })?;
    std::fs::write(&path, json).map_err(BackupError::io(&path))?;
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io(&path))
}

pub fn read_manifest(dir: &Path) -> Result<BackupInfo, BackupError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BackupError::NotABackup {
            dir: dir.display().to_string(),
        },
        _ => BackupError::io(&path)(e),
    })?;
    serde_json::from_slice(&bytes).map_err(|source| BackupError::Manifest {
        path: path.display().to_string(),
        source,
    })
}

/// Copy the photo blobs below `from` to `to` (files already there are kept:
/// a blob's name is its content). Returns how many were copied.
pub fn copy_blobs(from: &Path, to: &Path) -> Result<u64, BackupError> {
    let mut copied = 0;
    let mut stack: Vec<(PathBuf, PathBuf)> = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        let entries = match std::fs::read_dir(&src) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BackupError::io(&src)(e)),
        };
        std::fs::create_dir_all(&dst).map_err(BackupError::io(&dst))?;
        for entry in entries {
            let entry = entry.map_err(BackupError::io(&src))?;
            let path = entry.path();
            let target = dst.join(entry.file_name());
            let kind = entry.file_type().map_err(BackupError::io(&path))?;
            if kind.is_dir() {
                stack.push((path, target));
            } else if kind.is_file() && !target.exists() {
                std::fs::copy(&path, &target).map_err(BackupError::io(&path))?;
                std::fs::File::open(&target)
                    .and_then(|f| f.sync_all())
                    .map_err(BackupError::io(&target))?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Bring the backup in `backup` back into the empty data folder `data`, under
/// a new epoch. The server must be stopped (sled's lock on `data` says so).
pub fn restore(backup: &Path, data: &Path, now_ms: u64) -> Result<RestoreInfo, BackupError> {
    let manifest = read_manifest(backup)?;
    check_empty(data)?;
    let src = sled::Config::new().path(backup.join(DB_DIR)).open()?;
    let dst = sled::Config::new().path(data).open()?;
    copy_trees(&src, &dst)?;
    let sync = dst.open_tree(keys::SYNC)?;
    let info = RestoreInfo {
        from_epoch: manifest.epoch.clone(),
        epoch: uuid::Uuid::new_v4().to_string(),
        base_seq: manifest.commit_seq,
        backup_taken_ms: manifest.taken_ms,
        restored_ms: now_ms,
    };
    let json = serde_json::to_vec(&info).map_err(|source| BackupError::Manifest {
        path: data.display().to_string(),
        source,
    })?;
    sync.insert(keys::META_EPOCH, info.epoch.as_bytes())?;
    sync.insert(keys::META_RESTORE, json)?;
    // The server's own replicas start anew, as a restored tablet would: their
    // seqs after the backup were spent on changes tablets may still send back,
    // and a version id must never name two changes.
    let server = dst.open_tree(crate::server_replica::TREE)?;
    for key in crate::server_replica::ALL {
        server.remove(key)?;
    }
    dst.flush()?;
    copy_blobs(&backup.join(BLOBS_DIR), &data.join(BLOBS_DIR))?;
    Ok(info)
}

/// The restore this store came from, if any.
pub fn restore_info(tree: &sled::Tree) -> Result<Option<RestoreInfo>, BackupError> {
    match tree.get(keys::META_RESTORE)? {
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|source| BackupError::Manifest {
                path: "sync tree, key mrestore".into(),
                source,
            }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_restore_copies_every_tree_under_a_new_epoch_and_new_server_replicas() {
        let root = tempfile::tempdir().unwrap();
        let src = sled::Config::new().path(root.path().join("data")).open().unwrap();
        let sync = src.open_tree(keys::SYNC).unwrap();
        sync.insert(keys::META_EPOCH, &b"old-epoch"[..]).unwrap();
        for i in 0u32..2500 {
            sync.insert(i.to_be_bytes(), &b"v"[..]).unwrap();
        }
        src.open_tree(keys::ACCOUNTS).unwrap().insert("u", "alice").unwrap();
        let server = src.open_tree(crate::server_replica::TREE).unwrap();
        for (i, key) in crate::server_replica::ALL.into_iter().enumerate() {
            server.insert(key, &[i as u8 + 1; 16][..]).unwrap();
        }
        let blobs = root.path().join("data").join(BLOBS_DIR).join("ab");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("abcd"), b"photo").unwrap();

        let dir = root.path().join("backup");
        let (trees, entries) = copy_db(&src, &dir).unwrap();
        assert!(trees >= 4);
        assert_eq!(entries, 2500 + 1 + 1 + crate::server_replica::ALL.len() as u64);
        let photos = copy_blobs(&root.path().join("data").join(BLOBS_DIR), &dir.join(BLOBS_DIR)).unwrap();
        assert_eq!(photos, 1);
        let info = BackupInfo {
            dir: dir.display().to_string(),
            epoch: "old-epoch".into(),
            commit_seq: 42,
            taken_ms: 1000,
            trees,
            entries,
            photos,
        };
        // Not a backup until its manifest is written.
        assert!(matches!(
            restore(&dir, &root.path().join("x"), 2000),
            Err(BackupError::NotABackup { .. })
        ));
        write_manifest(&dir, &info).unwrap();
        assert!(matches!(check_empty(&dir), Err(BackupError::NotEmpty { .. })));
        drop((sync, server, src));

        let data = root.path().join("restored");
        let restored = restore(&dir, &data, 2000).unwrap();
        assert_eq!(restored.from_epoch, "old-epoch");
        assert_ne!(restored.epoch, "old-epoch");
        assert_eq!(
            (restored.base_seq, restored.backup_taken_ms, restored.restored_ms),
            (42, 1000, 2000)
        );
        let db = sled::Config::new().path(&data).open().unwrap();
        let sync = db.open_tree(keys::SYNC).unwrap();
        assert_eq!(sync.get(keys::META_EPOCH).unwrap().unwrap(), restored.epoch.as_bytes());
        assert_eq!(restore_info(&sync).unwrap(), Some(restored));
        assert_eq!(sync.get(2499u32.to_be_bytes()).unwrap().unwrap(), &b"v"[..]);
        assert_eq!(
            db.open_tree(keys::ACCOUNTS).unwrap().get("u").unwrap().unwrap(),
            &b"alice"[..]
        );
        let server = db.open_tree(crate::server_replica::TREE).unwrap();
        for key in crate::server_replica::ALL {
            assert!(server.get(key).unwrap().is_none(), "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(
            std::fs::read(data.join(BLOBS_DIR).join("ab").join("abcd")).unwrap(),
            b"photo"
        );
        // Into a folder in use: refused, nothing touched.
        drop((sync, server, db));
        assert!(matches!(restore(&dir, &data, 3000), Err(BackupError::NotEmpty { .. })));
    }
}
