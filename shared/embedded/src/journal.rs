//! The journal: the embedded store's file. Every committed write is one line appended to it,
//! and opening the store replays the lines into memory.
//!
//! Format: a header line `closedloop-journal <version>`, then one line per write,
//! `<crc32 of the JSON, 8 hex digits> <JSON array of ops>`. A write's ops share one line, so a
//! transaction is replayed whole or not at all. Replay stops at the first line that is cut short
//! or fails its checksum (the tail of a write the machine lost power during) and cuts the file
//! there, as SQLite's WAL does with a torn frame.
//!
//! The journal only grows, so now and then it is rewritten as a snapshot of what is live
//! (compaction): written to `<file>.compact`, flushed, then renamed over the journal.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use closedloop_core::store::{Item, Key, Value};
use serde::{Deserialize, Serialize};

use crate::state::{Op, Snapshot, State};

/// Bumped when the format changes; a journal written by a newer build is refused.
pub(crate) const FORMAT_VERSION: u32 = 1;
const HEADER: &str = "closedloop-journal";
/// A journal is compacted once it is four times its last snapshot (and at least
/// `compact_after_bytes`, 64 MiB by default).
pub(crate) const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;
const COMPACT_GROWTH: u64 = 4;
/// Snapshot lines hold about this much JSON each.
const SNAPSHOT_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum JournalError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it was written by a newer build (format {found}; this build reads {supported})")]
    TooNew { found: u32, supported: u32 },
    #[error("it is not a closedloop journal (first line {0:?})")]
    NotAJournal(String),
}

/// An op as written: short tags keep lines small.
#[derive(Serialize, Deserialize)]
enum Wire<'a> {
    #[serde(rename = "p")]
    Put(Cow<'a, Item>),
    #[serde(rename = "d")]
    Delete(Cow<'a, str>, Cow<'a, str>),
    #[serde(rename = "t")]
    TrimStream(u64),
    #[serde(rename = "c")]
    Checkpoint(Cow<'a, str>, u64),
    #[serde(rename = "r")]
    Restore(Cow<'a, Item>),
    #[serde(rename = "s")]
    RestoreStream(u64, Cow<'a, Item>),
    #[serde(rename = "q")]
    StreamSeq(u64),
}

impl<'a> From<&'a Op> for Wire<'a> {
    fn from(op: &'a Op) -> Self {
        match op {
            Op::Put(item) => Wire::Put(Cow::Borrowed(item)),
            Op::Delete(key) => Wire::Delete(Cow::Borrowed(&key.pk), Cow::Borrowed(&key.sk)),
            Op::TrimStream(seq) => Wire::TrimStream(*seq),
            Op::Checkpoint { consumer, seq } => Wire::Checkpoint(Cow::Borrowed(consumer), *seq),
            Op::Restore(item) => Wire::Restore(Cow::Borrowed(item)),
            Op::RestoreStream { seq, image } => Wire::RestoreStream(*seq, Cow::Borrowed(image)),
            Op::StreamSeq(seq) => Wire::StreamSeq(*seq),
        }
    }
}

impl From<Wire<'_>> for Op {
    fn from(wire: Wire<'_>) -> Self {
        match wire {
            Wire::Put(item) => Op::Put(item.into_owned()),
            Wire::Delete(pk, sk) => Op::Delete(Key::new(pk.into_owned(), sk.into_owned())),
            Wire::TrimStream(seq) => Op::TrimStream(seq),
            Wire::Checkpoint(consumer, seq) => Op::Checkpoint {
                consumer: consumer.into_owned(),
                seq,
            },
            Wire::Restore(item) => Op::Restore(Arc::new(item.into_owned())),
            Wire::RestoreStream(seq, image) => Op::RestoreStream {
                seq,
                image: Arc::new(image.into_owned()),
            },
            Wire::StreamSeq(seq) => Op::StreamSeq(seq),
        }
    }
}

/// One journal line holding `ops`, in a buffer sized for it up front.
pub(crate) fn encoded_line(ops: &[Op]) -> Vec<u8> {
    let mut line = Vec::with_capacity(32 + ops.iter().map(op_size_hint).sum::<usize>());
    encode_line(ops, &mut line);
    line
}

/// Appends one journal line holding `ops` to `out`.
pub(crate) fn encode_line(ops: &[Op], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(b"00000000 [");
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match op {
            // Every write puts items, and a compaction restores every item: those are written
            // here, byte for byte as serde_json writes the `Wire` (a test holds them to it),
            // without its generic machinery.
            Op::Put(item) => {
                out.extend_from_slice(br#"{"p":"#);
                write_item(out, item);
                out.push(b'}');
            }
            Op::Restore(item) => {
                out.extend_from_slice(br#"{"r":"#);
                write_item(out, item);
                out.push(b'}');
            }
            Op::RestoreStream { seq, image } => {
                out.extend_from_slice(format!(r#"{{"s":[{seq},"#).as_bytes());
                write_item(out, image);
                out.extend_from_slice(b"]}");
            }
            // Items hold only strings, numbers, booleans, lists and maps: this cannot fail.
            other => serde_json::to_writer(&mut *out, &Wire::from(other)).expect("ops encode"),
        }
    }
    out.push(b']');
    let crc = crc32fast::hash(&out[start + 9..]);
    for (i, digit) in out[start..start + 8].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((crc >> (28 - 4 * i)) & 0xf) as usize];
    }
    out.push(b'\n');
}

/// An item as serde_json writes `Item`: a map of DynamoDB-JSON values, in key order.
fn write_item(out: &mut Vec<u8>, item: &Item) {
    out.push(b'{');
    for (i, (name, value)) in item.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::S(s) => {
            out.extend_from_slice(br#"{"S":"#);
            write_str(out, s);
        }
        Value::N(n) => {
            out.extend_from_slice(br#"{"N":"#);
            write_str(out, n);
        }
        Value::Bool(b) => {
            out.extend_from_slice(br#"{"BOOL":"#);
            out.extend_from_slice(if *b { b"true" } else { b"false" });
        }
        Value::Null(b) => {
            out.extend_from_slice(br#"{"NULL":"#);
            out.extend_from_slice(if *b { b"true" } else { b"false" });
        }
        Value::L(values) => {
            out.extend_from_slice(br#"{"L":["#);
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, value);
            }
            out.push(b']');
        }
        Value::M(map) => {
            out.extend_from_slice(br#"{"M":"#);
            write_item(out, map);
        }
    }
    out.push(b'}');
}

/// A JSON string escaped as serde_json escapes it. Plain bytes are skipped eight at a time
/// and copied in runs.
fn write_str(out: &mut Vec<u8>, s: &str) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// A high bit set in the byte of the first `"`, `\\` or control character among the 8,
    /// if any (bits above it may be set spuriously, never below).
    fn specials(chunk: u64) -> u64 {
        let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        let quote = zero_in(chunk ^ (ONES * u64::from(b'"')));
        let backslash = zero_in(chunk ^ (ONES * u64::from(b'\\')));
        let control = chunk.wrapping_sub(ONES * 0x20) & !chunk & HIGH;
        quote | backslash | control
    }
    let bytes = s.as_bytes();
    // Room for every byte escaped as two (`\u00XX` reserves its own).
    out.reserve(2 * bytes.len() + 2);
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    loop {
        // Find the next byte to escape.
        while let Some(chunk) = bytes.get(i..i + 8) {
            let found = specials(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
            if found != 0 {
                i += found.trailing_zeros() as usize / 8;
                break;
            }
            i += 8;
        }
        while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0x00..=0x1f) {
            i += 1;
        }
        let Some(&byte) = bytes.get(i) else {
            break;
        };
        out.extend_from_slice(&bytes[start..i]);
        let short = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => 0,
        };
        if short != 0 {
            out.push(b'\\');
            out.push(short);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let (high, low) = (HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]);
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The ops of one line, or `None` when the line is torn or corrupt.
fn decode_line(line: &[u8]) -> Option<Vec<Op>> {
    let line = line.strip_suffix(b"\n")?;
    let (crc, json) = (line.get(..8)?, line.get(9..)?);
    let crc = u32::from_str_radix(std::str::from_utf8(crc).ok()?, 16).ok()?;
    if crc32fast::hash(json) != crc {
        return None;
    }
    let wires: Vec<Wire<'_>> = serde_json::from_slice(json).ok()?;
    Some(wires.into_iter().map(Op::from).collect())
}

/// The open journal file, positioned at its end.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    bytes: u64,
    /// Size after the last compaction (or replay), to decide the next one.
    snapshot_bytes: u64,
    compact_after_bytes: u64,
    sync: bool,
}

/// What opening found.
pub(crate) struct Replayed {
    pub(crate) state: State,
    pub(crate) lines: u64,
    /// Bytes of a torn or corrupt tail that were cut off.
    pub(crate) cut_bytes: u64,
}

impl Journal {
    /// Opens (creating) the journal at `path` and replays it. `sync`: flush every append to
    /// the disk before it counts.
    pub(crate) fn open(
        path: &Path,
        sync: bool,
        compact_after_bytes: u64,
    ) -> Result<(Journal, Replayed), JournalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut state = State::default();
        let mut valid_bytes = 0u64;
        let mut lines = 0u64;
        {
            let mut reader = BufReader::with_capacity(1 << 20, &mut file);
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? > 0 {
                check_header(&line)?;
                valid_bytes = line.len() as u64;
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        break;
                    }
                    let Some(ops) = decode_line(&line) else {
                        break;
                    };
                    for op in ops {
                        state.apply(op);
                    }
                    valid_bytes += line.len() as u64;
                    lines += 1;
                }
            }
        }
        let total = file.metadata()?.len();
        let cut_bytes = total - valid_bytes;
        if valid_bytes == 0 {
            file.set_len(0)?;
            file.write_all(format!("{HEADER} {FORMAT_VERSION}\n").as_bytes())?;
            file.sync_all()?;
            sync_dir(path)?;
            valid_bytes = file.metadata()?.len();
        } else if cut_bytes > 0 {
            file.set_len(valid_bytes)?;
            file.sync_all()?;
        }
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            bytes: valid_bytes,
            snapshot_bytes: valid_bytes,
            compact_after_bytes,
            sync,
        };
        Ok((
            journal,
            Replayed {
                state,
                lines,
                cut_bytes,
            },
        ))
    }

    /// Appends encoded lines. On failure the file is cut back to where it was, so a partial
    /// line never sits in front of later writes.
    pub(crate) fn append(&mut self, lines: &[u8]) -> std::io::Result<()> {
        let written = self.file.write_all(lines).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.bytes += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.file.set_len(self.bytes)?;
                Err(e)
            }
        }
    }

    pub(crate) fn wants_compaction(&self) -> bool {
        self.bytes > self.compact_after_bytes && self.bytes > COMPACT_GROWTH * self.snapshot_bytes
    }

    /// Rewrites the journal as a snapshot of `state`, which must hold every written line.
    pub(crate) fn compact(&mut self, state: &State) -> std::io::Result<()> {
        let temp = self.compaction_path();
        write_snapshot(&temp, &state.snapshot())?;
        let tail_from = self.bytes;
        self.install_snapshot(&temp, tail_from)
    }

    /// Where a snapshot is written before it replaces the journal.
    pub(crate) fn compaction_path(&self) -> PathBuf {
        let mut temp = self.path.as_os_str().to_owned();
        temp.push(".compact");
        PathBuf::from(temp)
    }

    /// Replaces the journal with the snapshot at `temp`, followed by the lines written since
    /// the snapshot's state was taken (from byte `tail_from` of the current journal).
    pub(crate) fn install_snapshot(&mut self, temp: &Path, tail_from: u64) -> std::io::Result<()> {
        let mut snapshot = OpenOptions::new().append(true).open(temp)?;
        if self.bytes > tail_from {
            use std::io::{Read, Seek, SeekFrom};
            let mut current = File::open(&self.path)?;
            current.seek(SeekFrom::Start(tail_from))?;
            std::io::copy(&mut current.take(self.bytes - tail_from), &mut snapshot)?;
        }
        snapshot.sync_all()?;
        drop(snapshot);
        std::fs::rename(temp, &self.path)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.bytes = self.file.metadata()?.len();
        self.snapshot_bytes = self.bytes;
        Ok(())
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Writes a journal holding exactly `snapshot` to `temp`, flushed to the disk.
pub(crate) fn write_snapshot(temp: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let file = File::create(temp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(format!("{HEADER} {FORMAT_VERSION}\n").as_bytes())?;
    let mut line = Vec::with_capacity(SNAPSHOT_LINE_BYTES * 2);
    let mut ops = Vec::new();
    let mut pending = 0usize;
    for op in snapshot.ops() {
        pending += op_size_hint(&op);
        ops.push(op);
        if pending >= SNAPSHOT_LINE_BYTES {
            line.clear();
            encode_line(&ops, &mut line);
            out.write_all(&line)?;
            ops.clear();
            pending = 0;
        }
    }
    if !ops.is_empty() {
        line.clear();
        encode_line(&ops, &mut line);
        out.write_all(&line)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn check_header(line: &[u8]) -> Result<(), JournalError> {
    let text = String::from_utf8_lossy(line);
    let version = text
        .trim_end()
        .strip_prefix(HEADER)
        .and_then(|rest| rest.trim().parse::<u32>().ok())
        .ok_or_else(|| JournalError::NotAJournal(text.chars().take(40).collect()))?;
    if version > FORMAT_VERSION {
        return Err(JournalError::TooNew {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Roughly how many bytes an op takes in a snapshot line (only to size the lines).
fn op_size_hint(op: &Op) -> usize {
    match op {
        Op::Put(item) => closedloop_core::store::item_size(item) + 16 * item.len(),
        Op::Restore(item) | Op::RestoreStream { image: item, .. } => {
            closedloop_core::store::item_size(item) + 16 * item.len()
        }
        _ => 64,
    }
}

/// Makes a rename or a new file in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use closedloop_core::store::Value;

    /// The line as serde_json writes the ops' `Wire` form (what `encode_line` must match).
    fn serde_line(ops: &[Op]) -> Vec<u8> {
        let wires: Vec<Wire<'_>> = ops.iter().map(Wire::from).collect();
        let json = serde_json::to_vec(&wires).unwrap();
        let mut line = format!("{:08x} ", crc32fast::hash(&json)).into_bytes();
        line.extend_from_slice(&json);
        line.push(b'\n');
        line
    }

    #[test]
    fn items_are_written_byte_for_byte_as_serde_json_writes_them() {
        // Strings from an alphabet of every ASCII byte, some UTF-8 and JSON-in-JSON, of
        // every length around the 8-byte chunks, from a fixed pseudo-random sequence.
        let alphabet: Vec<String> = (0u8..0x80)
            .map(|b| char::from(b).to_string())
            .chain(["é", "€", "😀", "\u{7f}", "\u{2028}", r#"{"a":"\"b\""}"#].map(String::from))
            .collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let text = |next: &mut dyn FnMut(usize) -> usize| -> String {
            let len = next(40);
            (0..len)
                .map(|_| alphabet[next(alphabet.len())].as_str())
                .collect()
        };
        for round in 0..300 {
            let mut item = Key::new(text(&mut next), text(&mut next)).to_item();
            for _ in 0..next(8) {
                let value = match next(6) {
                    0 => Value::S(text(&mut next)),
                    1 => Value::N(format!("-{}.5", next(1000))),
                    2 => Value::Bool(next(2) == 0),
                    3 => Value::Null(true),
                    4 => Value::L(vec![
                        Value::S(text(&mut next)),
                        Value::L(vec![]),
                        Value::n(7),
                    ]),
                    _ => Value::M(
                        [
                            (text(&mut next), Value::S(text(&mut next))),
                            ("m".into(), Value::M(Item::new())),
                        ]
                        .into_iter()
                        .collect(),
                    ),
                };
                item.insert(text(&mut next), value);
            }
            let mut ops = vec![Op::Put(item.clone())];
            if round % 3 == 0 {
                ops.push(Op::Delete(Key::new(text(&mut next), "d")));
                ops.push(Op::Checkpoint {
                    consumer: "relay".into(),
                    seq: round,
                });
                ops.push(Op::Restore(Arc::new(item.clone())));
                ops.push(Op::RestoreStream {
                    seq: round,
                    image: Arc::new(item),
                });
                ops.push(Op::Put(Key::new("p", "s").to_item()));
            }
            let mut line = Vec::new();
            encode_line(&ops, &mut line);
            assert_eq!(
                String::from_utf8(line.clone()).unwrap(),
                String::from_utf8(serde_line(&ops)).unwrap()
            );
            assert_eq!(decode_line(&line), Some(ops));
        }
    }

    #[test]
    fn a_line_round_trips_and_a_flipped_byte_is_refused() {
        let mut item = Key::new("T#a#X", "1").to_item();
        item.insert("note".into(), Value::s("naïve \"quoted\"\nline"));
        let ops = vec![
            Op::Put(item),
            Op::Delete(Key::new("T#a#X", "2")),
            Op::Checkpoint {
                consumer: "relay".into(),
                seq: 7,
            },
        ];
        let mut line = Vec::new();
        encode_line(&ops, &mut line);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        assert_eq!(decode_line(&line), Some(ops));
        let middle = line.len() / 2;
        line[middle] ^= 0x01;
        assert_eq!(decode_line(&line), None);
    }
}
