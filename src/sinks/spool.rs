//! The on-disk spool: `_bulk` NDJSON in numbered segment files, appended in
//! order and read back in order from a persisted cursor, so a replay can
//! stop anywhere and resume. Memory stays bounded: nothing is held but the
//! batch being written or read.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// Past this size the writer starts a new segment.
const SEGMENT_BYTES: u64 = 64 << 20;

fn segment_name(seq: u64) -> String {
    format!("segment-{seq:010}.ndjson")
}

/// Segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_prefix("segment-")
            .and_then(|rest| rest.strip_suffix(".ndjson"))
            .and_then(|digits| digits.parse().ok())
        {
            found.push(seq);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Appends bulk operations (each two lines: action, source).
pub struct SpoolWriter {
    dir: PathBuf,
    seq: u64,
    file: BufWriter<File>,
    bytes: u64,
}

impl SpoolWriter {
    /// Opens `dir` and starts a fresh segment after any already there.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let seq = segments(dir)?.last().map_or(0, |last| last + 1);
        Self::start(dir, seq)
    }

    fn start(dir: &Path, seq: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(segment_name(seq)))?;
        Ok(Self {
            dir: dir.to_owned(),
            seq,
            file: BufWriter::new(file),
            bytes: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes whole operations and flushes them to the file.
    pub fn append<S: AsRef<str>>(&mut self, operations: &[S]) -> io::Result<()> {
        if self.bytes >= SEGMENT_BYTES {
            *self = Self::start(&self.dir, self.seq + 1)?;
        }
        for operation in operations {
            let operation = operation.as_ref();
            self.file.write_all(operation.as_bytes())?;
            self.bytes += operation.len() as u64;
        }
        self.file.flush()
    }
}

/// Where a reader is: segment and byte offset, kept in a small file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    seq: u64,
    offset: u64,
}

/// Reads operations back in order from a named cursor.
pub struct SpoolReader {
    dir: PathBuf,
    cursor_file: PathBuf,
    cursor: Cursor,
    /// The live mirror deletes what it replayed; an export keeps the spool.
    delete_consumed: bool,
    /// The position after the last `peek`, committed by `consume`.
    peeked: Option<(Cursor, usize)>,
}

impl SpoolReader {
    pub fn open(dir: &Path, cursor_name: &str, delete_consumed: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let cursor_file = dir.join(cursor_name);
        let cursor = match fs::read_to_string(&cursor_file) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(str::parse::<u64>);
                match (parts.next(), parts.next()) {
                    (Some(Ok(seq)), Some(Ok(offset))) => Cursor { seq, offset },
                    _ => Cursor::default(),
                }
            }
            Err(_) => Cursor::default(),
        };
        Ok(Self {
            dir: dir.to_owned(),
            cursor_file,
            cursor,
            delete_consumed,
            peeked: None,
        })
    }

    /// Forgets the saved position: the next read starts at the oldest segment.
    pub fn rewind(&mut self) -> io::Result<()> {
        self.cursor = Cursor::default();
        self.peeked = None;
        self.save()
    }

    /// Up to `max` of the oldest unread operations, each as its two lines.
    /// Reading does not move the cursor; `consume` does.
    pub fn peek(&mut self, max: usize) -> io::Result<Vec<String>> {
        let mut operations = Vec::new();
        let mut at = self.cursor;
        let first = at.seq;
        for seq in segments(&self.dir)?.into_iter().filter(|s| *s >= first) {
            if seq != at.seq {
                at = Cursor { seq, offset: 0 };
            }
            let mut file = BufReader::new(File::open(self.dir.join(segment_name(seq)))?);
            file.seek(SeekFrom::Start(at.offset))?;
            while operations.len() < max {
                let mut action = String::new();
                let mut source = String::new();
                let read = file.read_line(&mut action)? + file.read_line(&mut source)?;
                // Only whole operations: a writer may be mid-line.
                if !action.ends_with('\n') || !source.ends_with('\n') {
                    break;
                }
                at.offset += read as u64;
                operations.push(action + &source);
            }
            if operations.len() >= max {
                break;
            }
        }
        self.peeked = Some((at, operations.len()));
        Ok(operations)
    }

    /// Marks everything returned by the last `peek` as done.
    pub fn consume(&mut self) -> io::Result<()> {
        let Some((at, _)) = self.peeked.take() else {
            return Ok(());
        };
        if self.delete_consumed {
            for seq in segments(&self.dir)?.into_iter().filter(|s| *s < at.seq) {
                fs::remove_file(self.dir.join(segment_name(seq)))?;
            }
        }
        self.cursor = at;
        self.save()
    }

    fn save(&self) -> io::Result<()> {
        let temporary = self.cursor_file.with_extension("tmp");
        fs::write(
            &temporary,
            format!("{} {}\n", self.cursor.seq, self.cursor.offset),
        )?;
        fs::rename(temporary, &self.cursor_file)
    }

    /// Operations not yet consumed (reads the files; for progress, not hot paths).
    pub fn remaining(&self) -> io::Result<u64> {
        let mut lines = 0u64;
        for seq in segments(&self.dir)?
            .into_iter()
            .filter(|s| *s >= self.cursor.seq)
        {
            let mut file = BufReader::new(File::open(self.dir.join(segment_name(seq)))?);
            if seq == self.cursor.seq {
                file.seek(SeekFrom::Start(self.cursor.offset))?;
            }
            lines += file.lines().count() as u64;
        }
        Ok(lines / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: usize) -> String {
        format!("{{\"index\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n}}}\n")
    }

    #[test]
    fn reads_back_in_order_across_segments_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path()).unwrap();
        writer.append(&(0..3).map(op).collect::<Vec<_>>()).unwrap();
        drop(writer);
        let mut writer = SpoolWriter::open(dir.path()).unwrap(); // a new process: a new segment
        writer.append(&(3..5).map(op).collect::<Vec<_>>()).unwrap();

        let mut reader = SpoolReader::open(dir.path(), "cursor", false).unwrap();
        assert_eq!(reader.remaining().unwrap(), 5);
        assert_eq!(reader.peek(2).unwrap(), vec![op(0), op(1)]);
        assert_eq!(
            reader.peek(2).unwrap(),
            vec![op(0), op(1)],
            "peek alone does not advance"
        );
        reader.consume().unwrap();
        drop(reader);

        let mut reader = SpoolReader::open(dir.path(), "cursor", false).unwrap();
        assert_eq!(
            reader.peek(10).unwrap(),
            (2..5).map(op).collect::<Vec<_>>(),
            "resumed"
        );
        reader.consume().unwrap();
        assert_eq!(reader.remaining().unwrap(), 0);
        assert!(reader.peek(10).unwrap().is_empty());
        reader.rewind().unwrap();
        assert_eq!(reader.remaining().unwrap(), 5);
    }

    #[test]
    fn a_half_written_operation_waits() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::open(dir.path()).unwrap();
        writer
            .append(&[op(0), "{\"index\":{}}\n{\"n\":".to_owned()])
            .unwrap();
        let mut reader = SpoolReader::open(dir.path(), "cursor", false).unwrap();
        assert_eq!(reader.peek(10).unwrap(), vec![op(0)]);
    }

    #[test]
    fn the_live_reader_deletes_replayed_segments() {
        let dir = tempfile::tempdir().unwrap();
        SpoolWriter::open(dir.path())
            .unwrap()
            .append(&[op(0)])
            .unwrap();
        SpoolWriter::open(dir.path())
            .unwrap()
            .append(&[op(1)])
            .unwrap();
        let mut reader = SpoolReader::open(dir.path(), "replay", true).unwrap();
        assert_eq!(reader.peek(10).unwrap().len(), 2);
        reader.consume().unwrap();
        assert_eq!(
            segments(dir.path()).unwrap(),
            vec![1],
            "only the segment still open is kept"
        );
    }
}
