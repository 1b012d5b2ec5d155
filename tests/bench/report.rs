//! `cargo bench --bench report`: `sftpctl report` over a year of a busy host.
//!
//! 1. A data set of 10 million lines (≈1.2 GB) as logrotate leaves it: `sftp.log`,
//!    `sftp.log.1` and six `sftp.log.N.gz` holding half of the uncompressed bytes, sessions
//!    running across every rotation. Made once and kept under `target/bench-report/`
//!    (`REPORT_BENCH_DIR` to put it elsewhere, e.g. /dev/shm; `REPORT_BENCH_LINES` for
//!    another size: the data set is made again when the size differs).
//! 2. `zcat -f FILES | grep -c internal-sftp` on the same files, then `sftpctl report
//!    --format json` and `--format text` reading every rotation (no FILE: the config's
//!    `rsyslog.log_file`), output to /dev/null: MB/s of uncompressed input for each, and
//!    the ratio, measured in the same run (best and median of `REPORT_BENCH_RUNS`, default 3).
//! 3. Instructions per line (`valgrind --tool=callgrind`, when installed) for `report
//!    --format json` over a sample of 200,000 lines, plain and gzip-compressed: stable on a
//!    noisy machine where wall times are not. Counted by thread (parse+apply, printing,
//!    reading): on two cores the wall time follows the busier core.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sftpctl");
const DEFAULT_LINES: usize = 10_000_000;
const SAMPLE_LINES: usize = 200_000;
/// Sessions open at once (a busy host); pids repeat as they would.
const CONCURRENT: usize = 64;
/// 2025-12-01T00:00:00Z: a year of lines from there.
const YEAR_START: u64 = 1_764_547_200;
/// Bump when the generated data changes, so that a cached set is made again.
const FORMAT: u32 = 1;
/// Rotations, oldest first, and their share of the uncompressed bytes (in 1/24ths): the six
/// compressed ones hold half.
const FILES: [(&str, u64); 8] = [
    ("sftp.log.7.gz", 2),
    ("sftp.log.6.gz", 2),
    ("sftp.log.5.gz", 2),
    ("sftp.log.4.gz", 2),
    ("sftp.log.3.gz", 2),
    ("sftp.log.2.gz", 2),
    ("sftp.log.1", 6),
    ("sftp.log", 6),
];

/// The 42 messages of one session: open, a directory listing, 8 uploads, 8 downloads, a
/// modification time set, a rename, a remove, a mkdir, a chmod, close.
fn session_messages(n: usize) -> Vec<String> {
    let user = format!("client{:03}", n % 150);
    let mut m = vec![
        format!(
            "session opened for local user {user} from [198.51.100.{}]",
            n % 250
        ),
        "opendir \"/data/in\"".to_string(),
        "closedir \"/data/in\"".to_string(),
    ];
    for i in 0..8 {
        m.push(format!(
            "open \"/data/in/2026/invoice-{n:07}-{i}.pdf\" flags WRITE,CREATE,TRUNCATE mode 0644"
        ));
        m.push(format!(
            "close \"/data/in/2026/invoice-{n:07}-{i}.pdf\" bytes read 0 written {}",
            1000 + (n % 7919) * 4096 + i
        ));
    }
    m.push(format!(
        "set \"/data/in/2026/invoice-{n:07}-0.pdf\" modtime 20260301-10:11:12"
    ));
    for i in 0..8 {
        m.push(format!(
            "open \"/data/out/r\\303\\251sum\\303\\251-{i}.txt\" flags READ mode 0666"
        ));
        m.push(format!(
            "close \"/data/out/r\\303\\251sum\\303\\251-{i}.txt\" bytes read {} written 0",
            500 + (n % 1013) * 977 + i
        ));
    }
    m.push(format!(
        "posix-rename old \"/data/in/2026/invoice-{n:07}-0.pdf\" new \"/data/in/done-{n:07}.pdf\""
    ));
    m.push(format!(
        "remove name \"/data/in/2026/invoice-{n:07}-1.pdf\""
    ));
    m.push(format!("mkdir name \"/data/archive/{n:07}\" mode 0777"));
    m.push(format!(
        "set \"/data/in/2026/invoice-{n:07}-2.pdf\" mode 0600"
    ));
    m.push(format!(
        "session closed for local user {user} from [198.51.100.{}]",
        n % 250
    ));
    m
}

/// Writes `lines` lines of interleaved sessions, spread over a year, to `out` as rsyslog's
/// file format; calls `next_file` whenever `budget(file)` bytes are written.
struct Generator {
    slots: Vec<(usize, Vec<String>, usize)>,
    next: usize,
    written: usize,
    step_us: u64,
}

impl Generator {
    fn new(lines: usize) -> Generator {
        Generator {
            slots: Vec::new(),
            next: 0,
            written: 0,
            step_us: 365 * 86_400 * 1_000_000 / lines as u64,
        }
    }

    /// One line into `out`; false when `limit` lines are written.
    fn line(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        if self.written == limit {
            return false;
        }
        while self.slots.len() < CONCURRENT {
            self.slots.push((self.next, session_messages(self.next), 0));
            self.next += 1;
        }
        let i = self.written * 7919 % self.slots.len();
        let (n, msgs, pos) = &mut self.slots[i];
        let t = YEAR_START * 1_000_000 + self.written as u64 * self.step_us;
        let secs = t / 1_000_000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, mo, d) = civil_from_days(days as i64);
        writeln!(
            out,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00 gw1 internal-sftp[{}]: {}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60,
            t % 1_000_000,
            20_000 + (*n % 30_000),
            msgs[*pos]
        )
        .unwrap();
        *pos += 1;
        if *pos == msgs.len() {
            self.slots.swap_remove(i);
        }
        self.written += 1;
        true
    }
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

struct DataSet {
    dir: PathBuf,
    lines: usize,
    /// Uncompressed bytes of all files.
    bytes: u64,
}

fn data_dir() -> PathBuf {
    std::env::var_os("REPORT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report"))
}

/// The cached data set, or a new one when it is missing or of another size or format.
fn data_set(lines: usize) -> DataSet {
    let dir = data_dir();
    let stamp = dir.join("COMPLETE");
    let want = format!("format {FORMAT} lines {lines}\n");
    if let Ok(have) = std::fs::read_to_string(&stamp) {
        if let Some(bytes) = have.strip_prefix(&want).and_then(|b| b.trim().parse().ok()) {
            println!("data set: {} (cached)", dir.display());
            return DataSet { dir, lines, bytes };
        }
    }
    println!("data set: making {lines} lines in {} (once)", dir.display());
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // The byte shares are approximated by line shares (the lines are of one length).
    let total: u64 = FILES.iter().map(|f| f.1).sum();
    let mut gen = Generator::new(lines);
    let mut bytes = 0u64;
    let mut compressors = Vec::new();
    for (k, (name, share)) in FILES.iter().enumerate() {
        let quota = if k + 1 == FILES.len() {
            lines
        } else {
            gen.written + (lines as u64 * share / total) as usize
        };
        let mut text = Vec::with_capacity((quota - gen.written) * 130);
        while gen.line(&mut text, quota) {}
        bytes += text.len() as u64;
        let path = dir.join(name);
        if name.ends_with(".gz") {
            // gzip's default level, as logrotate's `compress` leaves it; on its own thread.
            compressors.push(std::thread::spawn(move || {
                let file = BufWriter::new(std::fs::File::create(&path).unwrap());
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::new(6));
                gz.write_all(&text).unwrap();
                gz.finish().unwrap().flush().unwrap();
            }));
        } else {
            std::fs::write(&path, &text).unwrap();
        }
    }
    for c in compressors {
        c.join().unwrap();
    }
    std::fs::write(&stamp, format!("{want}{bytes}\n")).unwrap();
    println!("  made in {:.1} s", started.elapsed().as_secs_f64());
    DataSet { dir, lines, bytes }
}

fn files(set: &DataSet) -> Vec<PathBuf> {
    FILES.iter().map(|(n, _)| set.dir.join(n)).collect()
}

fn config(set: &DataSet) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("sftpctl-bench-report-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[rsyslog]\nlog_file = \"{}/sftp.log\"\n[watch]\nstate_dir = \"/nonexistent\"\n",
            set.dir.display()
        ),
    )
    .unwrap();
    path
}

/// Best and median wall time of `runs` runs of `cmd`, which must succeed.
fn time(runs: usize, mut cmd: impl FnMut() -> Command) -> (Duration, Duration, Vec<u8>) {
    let mut times = Vec::new();
    let mut stdout = Vec::new();
    for _ in 0..runs {
        let mut c = cmd();
        let start = Instant::now();
        let out = c.stderr(Stdio::piped()).output().unwrap();
        times.push(start.elapsed());
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout = out.stdout;
    }
    times.sort();
    (times[0], times[times.len() / 2], stdout)
}

fn rate(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs us too: keep that quick.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let lines = std::env::var("REPORT_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_LINES);
    let runs = std::env::var("REPORT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let set = data_set(lines);
    let compressed: u64 = files(&set)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    println!(
        "input: {} lines, {:.1} MB uncompressed in {} files ({:.1} MB of it as {:.1} MB of gzip)",
        set.lines,
        set.bytes as f64 / 1e6,
        FILES.len(),
        set.bytes as f64 / 2e6,
        compressed as f64 / 1e6
    );
    // Warm the page cache: every run then reads from memory.
    for f in files(&set) {
        std::fs::read(&f).map(drop).unwrap();
    }

    let list: Vec<String> = files(&set)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let (grep_best, grep_median, counted) = time(runs, || {
        let mut c = Command::new("sh");
        c.args(["-c", "zcat -f \"$@\" | grep -c internal-sftp", "sh"])
            .args(&list);
        c
    });
    let counted = String::from_utf8_lossy(&counted).trim().to_string();
    assert_eq!(counted, set.lines.to_string(), "grep counted");
    println!(
        "zcat -f | grep -c:        best {:>6.2} s {:>6.0} MB/s   median {:>6.2} s {:>6.0} MB/s",
        grep_best.as_secs_f64(),
        rate(set.bytes, grep_best),
        grep_median.as_secs_f64(),
        rate(set.bytes, grep_median),
    );

    let cfg = config(&set);
    for format in ["json", "text"] {
        let (best, median, _) = time(runs, || {
            let mut c = Command::new(BIN);
            c.arg("--config")
                .arg(&cfg)
                .args(["report", "--trust-unverified", "--format", format])
                .stdout(Stdio::null());
            c
        });
        println!(
            "report --format {format:<5}    best {:>6.2} s {:>6.0} MB/s   median {:>6.2} s {:>6.0} MB/s   ratio to zcat|grep (medians) {:.2}  (target >= 300 MB/s)",
            best.as_secs_f64(),
            rate(set.bytes, best),
            median.as_secs_f64(),
            rate(set.bytes, median),
            median.as_secs_f64() / grep_median.as_secs_f64(),
        );
    }
    let _ = std::fs::remove_file(&cfg);
    instructions_per_line(&set);
}

/// Callgrind's instruction count for `report --format json` over the first
/// [`SAMPLE_LINES`] lines of the newest log, plain and gzip-compressed.
fn instructions_per_line(set: &DataSet) {
    if Command::new("valgrind")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        println!("callgrind: valgrind is not installed (apt-get install -y valgrind)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sftpctl-bench-cg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read(set.dir.join("sftp.log")).unwrap();
    let end = text
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(SAMPLE_LINES - 1)
        .map_or(text.len(), |(i, _)| i + 1);
    let plain = dir.join("sample.log");
    std::fs::write(&plain, &text[..end]).unwrap();
    let gz = dir.join("sample.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::new(6),
    );
    enc.write_all(&text[..end]).unwrap();
    enc.finish().unwrap();
    let lines = SAMPLE_LINES.min(text[..end].iter().filter(|&&b| b == b'\n').count());
    for (what, file) in [("plain", &plain), ("gzip", &gz)] {
        let out_file = dir.join(format!("callgrind.{what}"));
        let out = Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg("--separate-threads=yes")
            .arg(format!("--callgrind-out-file={}", out_file.display()))
            .arg(BIN)
            .args(["report", "--trust-unverified", "--format", "json"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // One profile a thread (`FILE-01` the main one: parse and apply), in order of start.
        let mut threads = Vec::new();
        for n in 1.. {
            let Ok(profile) = std::fs::read_to_string(format!("{}-{n:02}", out_file.display()))
            else {
                break;
            };
            let count: u64 = profile
                .lines()
                .find_map(|l| {
                    l.strip_prefix("summary: ")
                        .or_else(|| l.strip_prefix("totals: "))
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            threads.push(count);
        }
        let total: u64 = threads.iter().sum();
        let per_line = |n: u64| n as f64 / lines as f64;
        let each: Vec<String> = threads
            .iter()
            .map(|&n| format!("{:.0}", per_line(n)))
            .collect();
        println!(
            "callgrind, report --format json, {lines} lines ({what}): {:.1} M instructions, {:.0} a line (by thread: {} = parse+apply, printing, reading)",
            total as f64 / 1e6,
            per_line(total),
            each.join(" + ")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
