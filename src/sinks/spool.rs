//! The spool: documents on local disk in Elasticsearch's bulk format
//! (NDJSON, an action line and a source line per operation), for runs
//! without Elasticsearch and for what a run could not send; `orderdeck
//! export` sends it later.
//!
//! Each process writes a directory of its own, `<data_dir>/spool/<start>-<pid>`,
//! under an exclusive lock, so processes sharing a data directory never touch
//! each other's files, and an export never reads a directory still being
//! written. Each batch is written whole and synced before the mirror commits
//! its Kafka offsets; a torn tail left by a crash is cut off when the
//! directory is next opened. The whole spool is bounded: past `max_bytes`
//! the oldest segments are deleted and the documents in them not yet
//! exported are counted as dropped.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use super::indexer::Refusal;

const SEGMENT_SUFFIX: &str = ".ndjson";
const LOCK: &str = "lock";
const CURSOR: &str = "export.cursor";
/// Refused documents, one JSON line each with its reason.
pub const DEAD_LETTERS: &str = "dead-letter.ndjson";

/// The dead-letter file's path for a person, or what to call it before
/// one was written.
pub fn dead_letters_named(file: Option<&str>) -> &str {
    file.unwrap_or("the dead-letter file")
}
/// Largest segment; smaller when the bound is small, so it can be kept.
const SEGMENT_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot use the spool in {dir}: {source}")]
    Io { dir: String, source: io::Error },
    #[error("the spool directory {0} is in use by another orderdeck process")]
    InUse(String),
}

fn io_error(dir: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        dir: dir.display().to_string(),
        source,
    }
}

/// A directory held with an exclusive `flock` for as long as this lives;
/// the kernel lets go when the process dies, however it dies.
struct DirLock(#[allow(dead_code)] File);

impl DirLock {
    fn take(dir: &Path) -> Result<Option<Self>, SpoolError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))
            .map_err(io_error(dir))?;
        // SAFETY: flock on a descriptor this function owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        Ok(locked.then_some(Self(file)))
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:08}{SEGMENT_SUFFIX}")
}

/// A directory's segment numbers, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_suffix(SEGMENT_SUFFIX)?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// Every process directory under the spool root, oldest first (names
/// start with the start time).
fn process_dirs(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = match fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path())
            .filter(|path| path.is_dir())
            .collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    dirs.sort();
    Ok(dirs)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Cuts a segment back to its last whole operation: two complete lines,
/// each a JSON object. A crash can leave half a line (or zeros) at the end.
fn repair(path: &Path) -> io::Result<()> {
    let mut reader = BufReader::new(File::open(path)?);
    let (mut whole, mut at, mut lines) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)? as u64;
        if read == 0 || line.last() != Some(&b'\n') || line.first() != Some(&b'{') {
            break;
        }
        at += read;
        lines += 1;
        if lines % 2 == 0 {
            whole = at;
        }
    }
    let file = OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() > whole {
        tracing::warn!(segment = %path.display(), kept = whole, "cut a torn tail off the spool");
        file.set_len(whole)?;
        file.sync_all()?;
    }
    Ok(())
}

fn count_operations(path: &Path, from: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut lines = 0u64;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(lines / 2);
        }
        lines += buffer[..read].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

/// How far an export got in one process directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    seq: u64,
    offset: u64,
}

impl Cursor {
    fn load(dir: &Path) -> Self {
        let text = fs::read_to_string(dir.join(CURSOR)).unwrap_or_default();
        let mut parts = text.split_whitespace().map(str::parse::<u64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(seq)), Some(Ok(offset))) => Cursor { seq, offset },
            _ => Cursor::default(),
        }
    }

    /// Written to a temporary file, synced, renamed over the old one, and
    /// the directory synced: a crash leaves the old cursor or the new one.
    fn save(self, dir: &Path) -> io::Result<()> {
        let temporary = dir.join(format!("{CURSOR}.tmp"));
        let mut file = File::create(&temporary)?;
        writeln!(file, "{} {}", self.seq, self.offset)?;
        file.sync_all()?;
        fs::rename(temporary, dir.join(CURSOR))?;
        sync_dir(dir)
    }

    /// Where the operations an export has not sent start in segment `seq`
    /// (`u64::MAX`: none are left there).
    fn unexported_from(self, seq: u64) -> u64 {
        match seq.cmp(&self.seq) {
            std::cmp::Ordering::Less => u64::MAX,
            std::cmp::Ordering::Equal => self.offset,
            std::cmp::Ordering::Greater => 0,
        }
    }
}

/// This process's directory in the spool; made on the first write.
pub struct SpoolWriter {
    root: PathBuf,
    max_bytes: u64,
    open: Option<OpenSegment>,
}

struct OpenSegment {
    dir: PathBuf,
    _lock: DirLock,
    seq: u64,
    file: File,
    bytes: u64,
}

impl SpoolWriter {
    /// The spool under `data_dir`, bounded to `max_bytes` in all.
    pub fn new(data_dir: &Path, max_bytes: u64) -> Self {
        Self {
            root: data_dir.join("spool"),
            max_bytes,
            open: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn segment_limit(&self) -> u64 {
        (self.max_bytes / 4).clamp(1 << 10, SEGMENT_BYTES)
    }

    fn open(&mut self) -> io::Result<&mut OpenSegment> {
        if self.open.is_none() {
            let name = format!("{}-{}", crate::clock::unix_millis_now(), std::process::id());
            let dir = self.root.join(name);
            fs::create_dir_all(&dir)?;
            let lock = DirLock::take(&dir)
                .map_err(|e| io::Error::other(e.to_string()))?
                .ok_or_else(|| io::Error::other("a fresh spool directory is locked"))?;
            let file = create_synced(&dir, &segment_name(1))?;
            self.open = Some(OpenSegment {
                dir,
                _lock: lock,
                seq: 1,
                file,
                bytes: 0,
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Appends operations as one write and syncs them to disk. Returns the
    /// operations deleted (not yet exported) to stay within the bound.
    pub fn append(&mut self, operations: &[String]) -> io::Result<u64> {
        if operations.is_empty() {
            return Ok(0);
        }
        let limit = self.segment_limit();
        let segment = self.open()?;
        // The bound is checked as a segment fills, so the spool overshoots
        // it by one segment at most.
        let full = segment.bytes >= limit;
        if full {
            segment.seq += 1;
            segment.file = create_synced(&segment.dir, &segment_name(segment.seq))?;
            segment.bytes = 0;
        }
        let body = operations.concat();
        segment.file.write_all(body.as_bytes())?;
        segment.file.sync_data()?;
        segment.bytes += body.len() as u64;
        if full {
            self.enforce_bound()
        } else {
            Ok(0)
        }
    }

    /// Keeps refused documents with their reasons, synced.
    pub fn dead_letter(&mut self, refused: &[Refusal]) -> io::Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        let dir = self.open()?.dir.clone();
        append_dead_letters(&dir.join(DEAD_LETTERS), refused)
    }

    /// Where this process's files are, once it wrote any.
    pub fn dir(&self) -> Option<&Path> {
        self.open.as_ref().map(|segment| segment.dir.as_path())
    }

    /// Deletes the oldest segments (other processes' directories that no
    /// one holds first, never the segment being written) until the spool
    /// fits; returns the unexported operations that went with them.
    fn enforce_bound(&mut self) -> io::Result<u64> {
        let mut total = 0u64;
        let mut candidates = Vec::new();
        let own = self.open.as_ref().map(|s| (s.dir.clone(), s.seq));
        for dir in process_dirs(&self.root)? {
            let mine = own.as_ref().is_some_and(|(d, _)| *d == dir);
            let _lock = if mine {
                None
            } else {
                match DirLock::take(&dir) {
                    Ok(Some(lock)) => Some(lock),
                    _ => continue, // in use: its writer bounds it
                }
            };
            for seq in segments(&dir)? {
                let bytes = fs::metadata(dir.join(segment_name(seq)))?.len();
                total += bytes;
                let writing = own.as_ref().is_some_and(|(d, s)| *d == dir && *s == seq);
                if !writing {
                    candidates.push((dir.clone(), seq, bytes));
                }
            }
        }
        let mut dropped = 0;
        for (dir, seq, bytes) in candidates {
            if total <= self.max_bytes {
                break;
            }
            let path = dir.join(segment_name(seq));
            let from = Cursor::load(&dir).unexported_from(seq);
            if from != u64::MAX {
                dropped += count_operations(&path, from)?;
            }
            fs::remove_file(&path)?;
            total -= bytes;
        }
        Ok(dropped)
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // A directory that only ever held empty files is not kept.
        if let Some(segment) = self.open.take() {
            let empty =
                segment.seq == 1 && segment.bytes == 0 && !segment.dir.join(DEAD_LETTERS).exists();
            if empty {
                let _ = fs::remove_dir_all(&segment.dir);
            }
        }
    }
}

/// Appends refused documents, one JSON line each with its reason, synced.
pub fn append_dead_letters(path: &Path, refused: &[Refusal]) -> io::Result<()> {
    if refused.is_empty() {
        return Ok(());
    }
    let mut body = String::new();
    for refusal in refused {
        let line = serde_json::json!({
            "reason": refusal.reason,
            "operation": refusal.operation,
        });
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(body.as_bytes())?;
    file.sync_data()
}

fn create_synced(dir: &Path, name: &str) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))?;
    sync_dir(dir)?;
    Ok(file)
}

/// Reads the spool for an export: every directory no process holds, in
/// order, each from where the last export stopped.
pub struct SpoolReader {
    dirs: Vec<HeldDir>,
    /// Directories skipped because a running process writes them.
    pub in_use: Vec<PathBuf>,
    peeked: Option<(usize, Cursor)>,
}

struct HeldDir {
    path: PathBuf,
    _lock: DirLock,
    cursor: Cursor,
}

impl SpoolReader {
    /// Opens (and repairs) every directory under `<data_dir>/spool` that no
    /// running process holds; `restart` forgets how far exports got.
    pub fn open(data_dir: &Path, restart: bool) -> Result<Self, SpoolError> {
        let root = data_dir.join("spool");
        let mut dirs = Vec::new();
        let mut in_use = Vec::new();
        for path in process_dirs(&root).map_err(io_error(&root))? {
            let Some(lock) = DirLock::take(&path)? else {
                in_use.push(path);
                continue;
            };
            for seq in segments(&path).map_err(io_error(&path))? {
                repair(&path.join(segment_name(seq))).map_err(io_error(&path))?;
            }
            let cursor = if restart {
                Cursor::default()
            } else {
                Cursor::load(&path)
            };
            dirs.push(HeldDir {
                path,
                _lock: lock,
                cursor,
            });
        }
        Ok(Self {
            dirs,
            in_use,
            peeked: None,
        })
    }

    /// Operations not yet exported.
    pub fn remaining(&self) -> Result<u64, SpoolError> {
        let mut total = 0;
        for dir in &self.dirs {
            for seq in segments(&dir.path).map_err(io_error(&dir.path))? {
                let from = dir.cursor.unexported_from(seq);
                if from != u64::MAX {
                    total += count_operations(&dir.path.join(segment_name(seq)), from)
                        .map_err(io_error(&dir.path))?;
                }
            }
        }
        Ok(total)
    }

    /// Up to `max` of the oldest unexported operations of one directory.
    /// Reading does not move the cursor; `consume` does.
    pub fn peek(&mut self, max: usize) -> Result<Vec<String>, SpoolError> {
        for (index, dir) in self.dirs.iter().enumerate() {
            let error = io_error(&dir.path);
            let mut at = dir.cursor;
            let mut operations = Vec::new();
            for seq in segments(&dir.path).map_err(&error)? {
                if seq < at.seq {
                    continue;
                }
                if seq != at.seq {
                    at = Cursor { seq, offset: 0 };
                }
                let file = File::open(dir.path.join(segment_name(seq))).map_err(&error)?;
                let mut file = BufReader::new(file);
                file.seek(SeekFrom::Start(at.offset)).map_err(&error)?;
                while operations.len() < max {
                    let (mut action, mut source) = (String::new(), String::new());
                    let read = file.read_line(&mut action).map_err(&error)?
                        + file.read_line(&mut source).map_err(&error)?;
                    if !source.ends_with('\n') {
                        break;
                    }
                    at.offset += read as u64;
                    operations.push(action + &source);
                }
                if operations.len() >= max {
                    break;
                }
            }
            if !operations.is_empty() {
                self.peeked = Some((index, at));
                return Ok(operations);
            }
        }
        Ok(Vec::new())
    }

    /// Marks what the last `peek` returned as exported.
    pub fn consume(&mut self) -> Result<(), SpoolError> {
        if let Some((index, at)) = self.peeked.take() {
            let dir = &mut self.dirs[index];
            dir.cursor = at;
            at.save(&dir.path).map_err(io_error(&dir.path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: usize) -> String {
        format!("{{\"index\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n}}}\n")
    }

    fn drain(reader: &mut SpoolReader) -> Vec<String> {
        let mut all = Vec::new();
        loop {
            let batch = reader.peek(2).unwrap();
            if batch.is_empty() {
                return all;
            }
            reader.consume().unwrap();
            all.extend(batch);
        }
    }

    #[test]
    fn every_process_writes_its_own_directory_and_exports_resume() {
        let data = tempfile::tempdir().unwrap();
        let mut first = SpoolWriter::new(data.path(), 1 << 30);
        let mut second = SpoolWriter::new(data.path(), 1 << 30);
        first.append(&(0..3).map(op).collect::<Vec<_>>()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        second.append(&(3..5).map(op).collect::<Vec<_>>()).unwrap();
        assert_ne!(first.dir(), second.dir());

        let reader = SpoolReader::open(data.path(), false).unwrap();
        assert_eq!(reader.in_use.len(), 2, "held directories are not read");
        drop(reader);
        drop((first, second));

        let mut reader = SpoolReader::open(data.path(), false).unwrap();
        assert_eq!(reader.remaining().unwrap(), 5);
        assert_eq!(reader.peek(2).unwrap(), vec![op(0), op(1)]);
        assert_eq!(
            reader.peek(2).unwrap(),
            vec![op(0), op(1)],
            "peek alone does not advance"
        );
        reader.consume().unwrap();
        drop(reader);
        let mut reader = SpoolReader::open(data.path(), false).unwrap();
        assert_eq!(
            drain(&mut reader),
            (2..5).map(op).collect::<Vec<_>>(),
            "resumed"
        );
        assert_eq!(reader.remaining().unwrap(), 0);
        drop(reader);
        let reader = SpoolReader::open(data.path(), true).unwrap();
        assert_eq!(
            reader.remaining().unwrap(),
            5,
            "restart forgets the cursors"
        );
    }

    #[test]
    fn a_torn_tail_is_cut_off_on_open() {
        let data = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::new(data.path(), 1 << 30);
        writer.append(&[op(0), op(1)]).unwrap();
        let segment = writer.dir().unwrap().join(segment_name(1));
        std::mem::forget(writer); // a crash: no clean-up, the lock goes with the "process"
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(b"{\"index\":{\"_id\":\"2\"}}\n{\"n\":")
            .unwrap();
        drop(file);
        // The forgotten writer still holds the flock in this process, so
        // take the repair path directly.
        repair(&segment).unwrap();
        assert_eq!(fs::read_to_string(&segment).unwrap(), op(0) + &op(1));
        fs::write(&segment, op(0) + "{\"index\":{}}\n\0\0\0").unwrap();
        repair(&segment).unwrap();
        assert_eq!(fs::read_to_string(&segment).unwrap(), op(0));
    }

    #[test]
    fn the_bound_deletes_the_oldest_and_counts_what_was_not_exported() {
        let data = tempfile::tempdir().unwrap();
        let one = op(0).len() as u64;
        // Segments of 1 KiB (the smallest), a bound of 4 KiB.
        let mut writer = SpoolWriter::new(data.path(), 4 << 10);
        let mut dropped = 0;
        let mut written = 0;
        for n in 0..400 {
            dropped += writer.append(&[op(n)]).unwrap();
            written += 1;
        }
        let on_disk: u64 = segments(writer.dir().unwrap())
            .unwrap()
            .iter()
            .map(|s| {
                fs::metadata(writer.dir().unwrap().join(segment_name(*s)))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(
            on_disk <= (4 << 10) + (1 << 10) + one,
            "{on_disk} bytes kept"
        );
        drop(writer);
        let reader = SpoolReader::open(data.path(), false).unwrap();
        assert_eq!(
            reader.remaining().unwrap() + dropped,
            written,
            "every operation kept or counted"
        );
        assert!(dropped > 0);
    }
}
