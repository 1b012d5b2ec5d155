//! Every log's lines, in order, parsed: one thread of its own reads (and inflates the `.gz`
//! rotations) while the caller's thread parses the lines and applies them. Text moves in
//! chunks of whole lines, handed back for reuse, so the memory in flight is a few chunks
//! whatever the size of the logs. (Parsing on a third thread was slower on two cores: every
//! name would be allocated on one thread and freed on another, which glibc's malloc makes
//! pay in locks and cold caches.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{Context, Result};

use super::logs::{reader, OpenLog};
use crate::watch::parse::{parse_feed_line, Parsed, Sender};

/// Bytes read at a time: large enough that a channel hand-over costs nothing per line.
const CHUNK: usize = 1 << 20;
/// Chunks queued between the two threads.
const QUEUED: usize = 2;
/// Lines parsed before they are applied: few enough that the names they allocate are freed
/// while glibc's per-thread cache still holds them and the batch stays in L1 (a whole
/// chunk's batch, ~8,000 lines, made every allocation a trip into the main arena).
const BATCH: usize = 32;

/// The parsed lines of one chunk, in order; emptied by the caller and reused.
pub type Batch = Vec<(Sender, Parsed)>;

/// Reads `logs` in the order given, each to its end on its own (a last line without a newline
/// stays a line), parses every line with `now` for the year the forward format leaves out,
/// and calls `apply` with every [`BATCH`] lines in order. An error of reading or of `apply`
/// stops all. `skip_repeats` (a collector's log, which holds every forwarded line twice):
/// a line the same as one of the last few thousand is skipped ([`crate::fleet::dedupe`]).
pub fn parse_logs(
    logs: Vec<(PathBuf, OpenLog)>,
    now: i64,
    skip_repeats: bool,
    mut apply: impl FnMut(&mut Batch) -> Result<()>,
) -> Result<()> {
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = sync_channel::<Result<Vec<u8>>>(QUEUED);
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(QUEUED + 2);
        scope.spawn(move || read_all(logs, &chunk_tx, &spare_rx));
        let mut batch = Vec::new();
        let mut recent = skip_repeats.then(crate::fleet::dedupe::Recent::default);
        for chunk in chunk_rx {
            let chunk = chunk?;
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let (line, after) = match memchr::memchr(b'\n', rest) {
                    Some(at) => (&rest[..at], &rest[at + 1..]),
                    None => (rest, &rest[rest.len()..]),
                };
                rest = after;
                if let Some(recent) = &mut recent {
                    if recent.repeat("", line) {
                        continue;
                    }
                }
                batch.push(parse_feed_line(line, now));
                if batch.len() == BATCH {
                    apply(&mut batch)?;
                    batch.clear();
                }
            }
            let _ = spare_tx.try_send(chunk);
            if !batch.is_empty() {
                apply(&mut batch)?;
                batch.clear();
            }
        }
        Ok(())
    })
}

/// The reading thread: chunks that end at a line end, or at the end of a file.
fn read_all(
    logs: Vec<(PathBuf, OpenLog)>,
    chunks: &SyncSender<Result<Vec<u8>>>,
    spare: &Receiver<Vec<u8>>,
) {
    let mut carry = Vec::new();
    for (path, log) in logs {
        if let Err(e) = read_one(&path, log, &mut carry, chunks, spare) {
            let _ = chunks.send(Err(e));
            return;
        }
    }
}

/// One file; false from `send` means the consumer is gone (an error there): stop quietly.
fn read_one(
    path: &Path,
    log: OpenLog,
    carry: &mut Vec<u8>,
    chunks: &SyncSender<Result<Vec<u8>>>,
    spare: &Receiver<Vec<u8>>,
) -> Result<()> {
    let mut input = reader(log, path)?;
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.clear();
        buf.reserve(CHUNK + carry.len());
        buf.append(carry);
        // A line longer than a chunk (the carry) grows the next one.
        let want = CHUNK.max(buf.len() + (64 << 10)) - buf.len();
        // read_to_end fills the spare capacity without zeroing it first.
        let got = (&mut input)
            .take(want as u64)
            .read_to_end(&mut buf)
            .with_context(|| format!("cannot read the log {}", path.display()))?;
        let end_of_file = got < want;
        if !end_of_file {
            // Hold back the part after the last line end: it is continued by the next read.
            let keep = memchr::memrchr(b'\n', &buf).map_or(0, |at| at + 1);
            carry.extend_from_slice(&buf[keep..]);
            buf.truncate(keep);
        }
        if !buf.is_empty() && chunks.send(Ok(buf)).is_err() {
            return Ok(());
        }
        if end_of_file {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(files: &[&[u8]]) -> Vec<Parsed> {
        let dir = std::env::temp_dir().join(format!(
            "sftpctl-stream-{}-{}",
            std::process::id(),
            files.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut logs = Vec::new();
        for (i, content) in files.iter().enumerate() {
            let path = dir.join(format!("log{i}"));
            std::fs::write(&path, content).unwrap();
            logs.push((path.clone(), super::super::logs::open_log(&path).unwrap()));
        }
        let mut got = Vec::new();
        parse_logs(logs, 0, false, |batch| {
            got.extend(batch.drain(..).map(|(_, p)| p));
            Ok(())
        })
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        got
    }

    fn line(pid: u32, msg: &str) -> String {
        format!("2026-01-01T00:00:00Z h internal-sftp[{pid}]: {msg}\n")
    }

    #[test]
    fn every_line_in_order_across_chunks_and_files() {
        // More than one chunk, lines cut at chunk ends, a last line without a newline in
        // the first file (still its own line), blank lines kept as lines.
        let mut first = String::new();
        let mut n = 0;
        while first.len() < CHUNK * 2 + 1000 {
            first.push_str(&line(
                n,
                &format!("remove name \"/data/{}\"", "x".repeat(n as usize % 97)),
            ));
            n += 1;
        }
        first.push('\n');
        first.push_str(line(n, "remove name \"/data/last\"").trim_end());
        let second = line(n + 1, "remove name \"/data/next\"");
        let got = lines_of(&[first.as_bytes(), second.as_bytes()]);
        assert_eq!(got.len() as u32, n + 3);
        let pid = |p: &Parsed| match p {
            Parsed::Sftp(l) => Some(l.pid),
            _ => None,
        };
        for (i, p) in got.iter().enumerate().take(n as usize) {
            assert_eq!(pid(p), Some(i as u32), "{i}");
        }
        assert_eq!(got[n as usize], Parsed::Foreign);
        assert_eq!(pid(&got[n as usize + 1]), Some(n));
        assert_eq!(pid(&got[n as usize + 2]), Some(n + 1));
    }

    #[test]
    fn gzip_rotations_are_inflated() {
        use std::io::Write;
        let text = line(7, "remove name \"/data/z\"").repeat(50_000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let got = lines_of(&[&gz, b"no newline at the end"]);
        assert_eq!(got.len(), 50_001);
        assert!(got[..50_000]
            .iter()
            .all(|p| matches!(p, Parsed::Sftp(l) if l.pid == 7)));
        assert_eq!(got[50_000], Parsed::Foreign);
    }
}
