//! Backups of a whole hub and restoring them.
//!
//! A backup is one gzip'd tar (mode 0600: it holds the CA key) with everything a data
//! directory needs: the CA and serving certificates and keys, the admin credential, and a
//! consistent snapshot of the store taken in one read transaction while the hub keeps
//! serving. Restoring it into an empty data directory gives back the same hub: the same CA
//! (so agents' certificates and pins stay valid), the same clusters, workloads, revisions and
//! statuses, so reconnecting agents are sent nothing they already hold.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use tether_common::files;

use crate::admin::datadir::DataDir;
use crate::store::{RedbStore, StoreError};

/// The archive layout version written into every backup.
const FORMAT: u32 = 1;
const MANIFEST: &str = "tether-backup.json";
const STORE: &str = "store.redb";
/// Files of the data directory a backup carries when present, and their modes.
const FILES: &[(&str, u32)] = &[
    ("ca.crt", 0o644),
    ("ca.key", 0o600),
    ("ca-previous.crt", 0o644),
    ("ca-previous.key", 0o600),
    ("ca-bundle.crt", 0o644),
    ("hub.crt", 0o644),
    ("hub.key", 0o600),
    ("admin.yaml", 0o600),
];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a tether-hub backup: {1}")]
    NotABackup(String, String),
    #[error(
        "data directory {0} already holds a hub; restoring replaces it: stop the hub and pass --force"
    )]
    Exists(String),
    #[error(
        "the store in {0} is in use (is the hub running?); stop the hub before restoring or compacting"
    )]
    InUse(String),
    #[error(transparent)]
    Lock(#[from] crate::admin::datadir::LockError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    format: u32,
    created_unix: i64,
    hub_version: String,
    records: u64,
}

/// What a backup or restore did.
#[derive(Debug, Clone)]
pub struct Report {
    pub records: u64,
    pub bytes: u64,
    pub created_unix: i64,
}

/// Writes a backup of `dir` to `out`: `snapshot` copies the store to the path it is given
/// (the running hub's [`crate::store::Durable::backup`], or an opened store when offline).
/// The archive appears at `out` complete or not at all.
pub fn write_archive(
    dir: &DataDir,
    snapshot: impl FnOnce(&Path) -> Result<u64, StoreError>,
    out: &Path,
) -> Result<Report, BackupError> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // Created O_EXCL under a random name, 0600; renamed into place once complete.
    let mut file = tempfile::Builder::new()
        .prefix(".tether-backup-")
        .suffix(".partial")
        .tempfile_in(parent)
        .map_err(io(parent))?;
    let report = write_to(dir, snapshot, file.as_file_mut())?;
    file.persist(out).map_err(|e| io(out)(e.error))?;
    Ok(report)
}

/// Writes the archive of `dir` into `file` (from its start).
fn write_to(
    dir: &DataDir,
    snapshot: impl FnOnce(&Path) -> Result<u64, StoreError>,
    file: &mut std::fs::File,
) -> Result<Report, BackupError> {
    // The store snapshot goes to a private scratch directory inside the data directory: a
    // crash leaves it for the next start of the hub to remove.
    let scratch = dir.staging(".backup-").map_err(io(dir.root()))?;
    let tmp_store = scratch.path().join(STORE);
    let records = snapshot(&tmp_store)?;
    let created_unix = tether_common::time::unix_now();
    let manifest = Manifest {
        format: FORMAT,
        created_unix,
        hub_version: env!("CARGO_PKG_VERSION").to_string(),
        records,
    };
    let what = Path::new("the backup archive");
    let mut tar = tar::Builder::new(GzEncoder::new(&mut *file, Compression::fast()));
    let manifest_json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    append(&mut tar, MANIFEST, &manifest_json, 0o644).map_err(io(what))?;
    for (name, mode) in FILES {
        let path = dir.root().join(name);
        match std::fs::read(&path) {
            Ok(bytes) => append(&mut tar, name, &bytes, *mode).map_err(io(what))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    let mut f = std::fs::File::open(&tmp_store).map_err(io(&tmp_store))?;
    let len = f.metadata().map_err(io(&tmp_store))?.len();
    let mut header = header(STORE, len, 0o600);
    tar.append_data(&mut header, STORE, &mut f)
        .map_err(io(what))?;
    let gz = tar.into_inner().map_err(io(what))?;
    gz.finish().map_err(io(what))?;
    file.sync_all().map_err(io(what))?;
    let bytes = file.metadata().map_err(io(what))?.len();
    Ok(Report {
        records,
        bytes,
        created_unix,
    })
}

/// An online backup of the running hub, as a file with no name (unlinked from the start):
/// the caller reads it to the end and nothing is ever left behind.
pub fn archive_unlinked(
    dir: &DataDir,
    store: &crate::store::Durable,
) -> Result<(Report, std::fs::File), BackupError> {
    let mut file = tempfile::tempfile_in(dir.root()).map_err(io(dir.root()))?;
    let report = write_to(dir, |to| store.backup(to), &mut file)?;
    use std::io::Seek;
    file.rewind().map_err(io(dir.root()))?;
    Ok((report, file))
}

/// An offline backup: opens the store itself (fails if the hub holds it).
pub fn backup_offline(dir: &DataDir, out: &Path) -> Result<Report, BackupError> {
    let store = open_exclusive(dir)?;
    write_archive(dir, |to| crate::store::Store::backup(&store, to), out)
}

/// The record count in a backup's manifest, after reading the whole archive (nothing is
/// written: the keys in it do not touch the disk again).
pub fn records_in(archive: &Path) -> Result<u64, BackupError> {
    read_archive(archive, |_, _, data| {
        std::io::copy(data, &mut std::io::sink())
            .map(drop)
            .map_err(|e| BackupError::NotABackup(archive.display().to_string(), e.to_string()))
    })
    .map(|(m, _)| m.records)
}

/// Restores a backup into `dir`. Refuses a data directory that holds a hub unless `force`,
/// and one whose store is in use always.
pub fn restore(from: &Path, dir: &DataDir, force: bool) -> Result<Report, BackupError> {
    if dir.is_initialized() && !force {
        return Err(BackupError::Exists(dir.root().display().to_string()));
    }
    let existed = dir.root().exists();
    // Never under a serving hub; and the old hub stays as it was unless everything in the
    // archive checks out.
    let lock = dir.lock("restore into it")?;
    let result = (|| {
        let staging = dir.staging(".restore-").map_err(io(dir.root()))?;
        let (manifest, bytes) = unpack(from, staging.path())?;
        let staged = DataDir::new(staging.path());
        staged
            .verify()
            .map_err(|why| BackupError::NotABackup(from.display().to_string(), why))?;
        dir.replace_with(&staged).map_err(io(dir.root()))?;
        Ok(Report {
            records: manifest.records,
            bytes,
            created_unix: manifest.created_unix,
        })
    })();
    drop(lock);
    if result.is_err() && !existed {
        // Nothing was there before: leave nothing behind.
        let _ = std::fs::remove_dir_all(dir.root());
    }
    result
}

/// Compacts the store file of a stopped hub: returns the sizes before and after.
pub fn compact(dir: &DataDir) -> Result<(u64, u64), BackupError> {
    let _lock = dir.lock("compact it")?;
    Ok(open_exclusive(dir)?.compact()?)
}

fn open_exclusive(dir: &DataDir) -> Result<RedbStore, BackupError> {
    if !dir.store().exists() {
        return Err(BackupError::Store(StoreError::Open {
            path: dir.store().display().to_string(),
            detail: "no store here (run tether-hub init, or restore a backup)".into(),
        }));
    }
    RedbStore::open(&dir.store()).map_err(|e| match &e {
        StoreError::Open { detail, .. } if detail.contains("already open") => {
            BackupError::InUse(dir.root().display().to_string())
        }
        _ => BackupError::Store(e),
    })
}

/// Reads a whole archive, checking it is a backup this binary reads, and hands each known
/// entry to `entry` (names are checked against the list, never joined as paths). Returns the
/// manifest and the archive's size.
fn read_archive(
    from: &Path,
    mut entry: impl FnMut(&str, u32, &mut dyn Read) -> Result<(), BackupError>,
) -> Result<(Manifest, u64), BackupError> {
    let not_backup = |why: String| BackupError::NotABackup(from.display().to_string(), why);
    let file = std::fs::File::open(from).map_err(io(from))?;
    let bytes = file.metadata().map_err(io(from))?.len();
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut manifest = None;
    let mut seen = Vec::new();
    let entries = archive.entries().map_err(|e| not_backup(e.to_string()))?;
    for item in entries {
        let mut item = item.map_err(|e| not_backup(e.to_string()))?;
        let name = item
            .path()
            .map_err(|e| not_backup(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if item.header().entry_type() != tar::EntryType::Regular {
            return Err(not_backup(format!(
                "entry {name:?} is not a regular file (links and directories are refused)"
            )));
        }
        if name == MANIFEST {
            let mut text = Vec::new();
            item.read_to_end(&mut text)
                .map_err(|e| not_backup(e.to_string()))?;
            let m: Manifest = serde_json::from_slice(&text)
                .map_err(|e| not_backup(format!("unreadable {MANIFEST}: {e}")))?;
            if m.format > FORMAT {
                return Err(not_backup(format!(
                    "it was written in format {} by tether-hub {}; this binary reads format {FORMAT}",
                    m.format, m.hub_version
                )));
            }
            manifest = Some(m);
            continue;
        }
        let Some((known, mode)) = FILES
            .iter()
            .chain([&(STORE, 0o600)])
            .find(|(n, _)| *n == name)
        else {
            return Err(not_backup(format!("unexpected entry {name:?}")));
        };
        entry(known, *mode, &mut item)?;
        seen.push(*known);
    }
    let manifest = manifest.ok_or_else(|| not_backup(format!("no {MANIFEST}")))?;
    for required in ["ca.crt", "ca.key", "hub.crt", "hub.key", STORE] {
        if !seen.contains(&required) {
            return Err(not_backup(format!("{required} is missing")));
        }
    }
    Ok((manifest, bytes))
}

/// Unpacks the archive's entries into `staging`.
fn unpack(from: &Path, staging: &Path) -> Result<(Manifest, u64), BackupError> {
    files::create_private_dir(staging).map_err(io(staging))?;
    read_archive(from, |name, mode, data| {
        let dst = staging.join(name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&dst)
            .map_err(io(&dst))?;
        std::io::copy(data, &mut out)
            .map_err(|e| BackupError::NotABackup(from.display().to_string(), e.to_string()))?;
        out.sync_all().map_err(io(&dst))
    })
}

fn header(name: &str, len: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(mode);
    h.set_mtime(tether_common::time::unix_now().max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    // Names are short constants: this cannot fail.
    let _ = h.set_path(name);
    h.set_cksum();
    h
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut h = header(name, bytes.len() as u64, mode);
    tar.append_data(&mut h, name, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, Store, Tree};

    /// A real hub's data directory (tether-hub init) with 100 more records in its store.
    fn hub_dir(root: &Path) -> DataDir {
        let dir = DataDir::new(root);
        crate::admin::init::init(&crate::admin::init::InitOptions {
            data_dir: dir.clone(),
            sans: vec![],
            advertise: None,
            force: false,
            ca: None,
        })
        .unwrap();
        let store = RedbStore::open(&dir.store()).unwrap();
        let mut b = Batch::new();
        for i in 0..100u32 {
            b.put(
                Tree::Meta,
                format!("k{i:03}").into_bytes(),
                vec![i as u8; 10],
            );
        }
        store.commit(&[&b]).unwrap();
        dir
    }

    /// One entry of a hand-made archive: name, contents, entry type.
    type Crafted<'a> = (&'a str, Vec<u8>, tar::EntryType);

    /// An archive made of `entries` as given.
    fn craft(out: &Path, entries: &[Crafted]) {
        let file = std::fs::File::create(out).unwrap();
        let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
        for (name, bytes, kind) in entries {
            let mut h = header(name, bytes.len() as u64, 0o600);
            h.set_entry_type(*kind);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            tar.append_data(&mut h, name, bytes.as_slice()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    /// Every entry of a good backup, by name.
    fn entries_of(archive: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        read_archive(archive, |name, _, data| {
            let mut v = Vec::new();
            data.read_to_end(&mut v).unwrap();
            out.push((name.to_string(), v));
            Ok(())
        })
        .unwrap();
        let manifest = serde_json::to_vec(&Manifest {
            format: FORMAT,
            created_unix: 0,
            hub_version: "test".into(),
            records: 1,
        })
        .unwrap();
        out.insert(0, (MANIFEST.to_string(), manifest));
        out
    }

    #[test]
    fn backup_then_restore_gives_back_every_file_and_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = hub_dir(&tmp.path().join("hub"));
        let out = tmp.path().join("hub.backup");
        let made = backup_offline(&dir, &out).unwrap();
        assert!(made.records >= 100);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let target = DataDir::new(tmp.path().join("restored"));
        let got = restore(&out, &target, false).unwrap();
        assert_eq!(got.records, made.records);
        for name in ["ca.crt", "ca.key", "hub.crt", "hub.key", "admin.yaml"] {
            assert_eq!(
                std::fs::read(target.root().join(name)).unwrap(),
                std::fs::read(dir.root().join(name)).unwrap(),
                "{name}"
            );
        }
        let key_mode = std::fs::metadata(target.ca_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let store = RedbStore::open(&target.store()).unwrap();
        let rows = store.scan_prefix(Tree::Meta, b"k").unwrap();
        assert_eq!(rows.len(), 100);
        assert_eq!(rows[42].1, vec![42u8; 10]);
        // Nothing left behind by the staging area.
        let leftovers: Vec<_> = std::fs::read_dir(target.root())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn restore_refuses_an_existing_hub_without_force_and_a_non_backup_always() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = hub_dir(&tmp.path().join("hub"));
        let out = tmp.path().join("hub.backup");
        backup_offline(&dir, &out).unwrap();
        let e = restore(&out, &dir, false).unwrap_err().to_string();
        assert!(
            e.contains("already holds a hub") && e.contains("--force"),
            "{e}"
        );
        restore(&out, &dir, true).unwrap();

        let junk = tmp.path().join("junk.tar.gz");
        std::fs::write(&junk, b"not a tarball").unwrap();
        let fresh = DataDir::new(tmp.path().join("fresh"));
        let e = restore(&junk, &fresh, false).unwrap_err().to_string();
        assert!(e.contains("is not a tether-hub backup"), "{e}");
        assert!(!fresh.is_initialized());
    }

    #[test]
    fn archives_that_would_not_make_a_working_hub_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = hub_dir(&tmp.path().join("hub"));
        let good = tmp.path().join("hub.backup");
        backup_offline(&dir, &good).unwrap();
        let snapshot = |dir: &DataDir| -> (Vec<Vec<u8>>, usize) {
            let files = ["ca.key", "ca.crt", "hub.crt", "hub.key", "admin.yaml"]
                .iter()
                .map(|n| std::fs::read(dir.root().join(n)).unwrap())
                .collect();
            let store = RedbStore::open(&dir.store()).unwrap();
            (files, store.scan_prefix(Tree::Meta, b"k").unwrap().len())
        };
        let before = snapshot(&dir);
        let entries = entries_of(&good);
        let other = hub_dir(&tmp.path().join("other"));
        let cases: Vec<(&str, Vec<Crafted>)> = vec![
            (
                "a garbage CA key",
                entries
                    .iter()
                    .map(|(n, b)| {
                        let b = if n == "ca.key" {
                            b"garbage".to_vec()
                        } else {
                            b.clone()
                        };
                        (n.as_str(), b, tar::EntryType::Regular)
                    })
                    .collect(),
            ),
            (
                "another hub's CA key",
                entries
                    .iter()
                    .map(|(n, b)| {
                        let b = if n == "ca.key" {
                            std::fs::read(other.ca_key()).unwrap()
                        } else {
                            b.clone()
                        };
                        (n.as_str(), b, tar::EntryType::Regular)
                    })
                    .collect(),
            ),
            (
                "a symlinked key",
                entries
                    .iter()
                    .map(|(n, b)| {
                        let kind = if n == "hub.key" {
                            tar::EntryType::Symlink
                        } else {
                            tar::EntryType::Regular
                        };
                        (n.as_str(), b.clone(), kind)
                    })
                    .collect(),
            ),
            (
                "an empty store",
                entries
                    .iter()
                    .map(|(n, b)| {
                        let b = if n == STORE {
                            let p = tmp.path().join("empty.redb");
                            drop(RedbStore::open(&p).unwrap());
                            std::fs::read(&p).unwrap()
                        } else {
                            b.clone()
                        };
                        (n.as_str(), b, tar::EntryType::Regular)
                    })
                    .collect(),
            ),
        ];
        for (what, entries) in cases {
            let bad = tmp.path().join("bad.backup");
            craft(&bad, &entries);
            let e = restore(&bad, &dir, true);
            assert!(e.is_err(), "{what} was restored");
            assert!(
                snapshot(&dir) == before,
                "{what}: the working hub was changed"
            );
            dir.verify().unwrap();
        }
    }

    #[test]
    fn a_hub_serving_the_directory_is_not_restored_over() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = hub_dir(&tmp.path().join("hub"));
        let out = tmp.path().join("hub.backup");
        backup_offline(&dir, &out).unwrap();
        let held = dir.lock("serve it").unwrap();
        let e = restore(&out, &dir, true).unwrap_err().to_string();
        assert!(e.contains("in use"), "{e}");
        drop(held);
        restore(&out, &dir, true).unwrap();
    }
}
