//! `cargo bench --bench render`: what rendering one report into its mail costs, in
//! instructions (callgrind counts are stable on a busy machine; wall times are not).
//!
//! The measured path is the delivery thread's for one outbox record, in two parts: the
//! record's JSON → `Report` → the templates' view, a tera context (`deliver.rs: prepare`,
//! `mail::read_report`, `mail::Templates::context`), and "render": subject, text and HTML
//! templates → the multipart mail's bytes (`mail.rs`, `mail/mime.rs`; the 250 k target). The
//! report mix: `REPORTS` sessions like `bench --bench watch`'s (8 uploads, 8 downloads, a
//! rename, a delete, a mkdir, a chmod), plus one report with something in every list
//! (`example()`). It prints both counts and their sum (JSON → mail bytes).
//!
//! With valgrind on PATH the bench runs itself under `valgrind --tool=callgrind
//! --toggle-collect=render_reports` (then `parse_records`) and prints "render: N
//! instructions per report"; without it, the wall time per report (noisy) and a hint to
//! install valgrind. Measured in release (docs/watch.md, "Rendering cost"): render 843 k →
//! 341 k → 154 k per report (templates of pre-rendered blocks), JSON → context/view 230 k →
//! 196 k → 173 k (target 250 k for render: met).
//!
//! `RENDER_BENCH_DUMP=FILE` on the bench binary writes every mail's subject, text, HTML and
//! bytes instead: dumps before and after a change must differ only in boundaries and `Date`.

use std::process::Command;
use std::time::Instant;

use sftpctl::config::Config;
use sftpctl::watch::mail::{build_message_to, read_report, Addresses, Templates};
use sftpctl::watch::parse::parse_line;
use sftpctl::watch::session::{Ending, Limits, Sessions};

const REPORTS: usize = 200;

/// One session of the watch bench: open, 8 uploads, 8 downloads, rename, remove, mkdir,
/// chmod, close; one second between lines.
fn session_log(n: usize, out: &mut String) {
    let user = format!("user{}", n % 100);
    let mut m = vec![format!(
        "session opened for local user {user} from [192.0.2.7]"
    )];
    for i in 0..8 {
        m.push(format!(
            "open \"/data/in/file-{n}-{i}.pdf\" flags WRITE,CREATE,TRUNCATE mode 0644"
        ));
        m.push(format!(
            "close \"/data/in/file-{n}-{i}.pdf\" bytes read 0 written {}",
            1000 + i * 4096
        ));
    }
    for i in 0..8 {
        m.push(format!(
            "open \"/data/out/r\\303\\251sum\\303\\251-{i}.txt\" flags READ mode 0666"
        ));
        m.push(format!(
            "close \"/data/out/r\\303\\251sum\\303\\251-{i}.txt\" bytes read {} written 0",
            500 + i
        ));
    }
    m.push(format!(
        "posix-rename old \"/data/in/file-{n}-0.pdf\" new \"/data/in/done-{n}.pdf\""
    ));
    m.push(format!("remove name \"/data/in/file-{n}-1.pdf\""));
    m.push(format!("mkdir name \"/data/archive-{n}\" mode 0777"));
    m.push(format!("set \"/data/in/file-{n}-2.pdf\" mode 0600"));
    m.push(format!(
        "session closed for local user {user} from [192.0.2.7]"
    ));
    for (i, msg) in m.iter().enumerate() {
        out.push_str(&format!(
            "2026-11-27T16:{:02}:{:02}.000000+00:00 vm internal-sftp[{}]: {msg}\n",
            i / 60,
            i % 60,
            10_000 + n
        ));
    }
}

/// The outbox records (report JSON) of the mix.
fn records() -> Vec<Vec<u8>> {
    let mut log = String::new();
    for n in 0..REPORTS {
        session_log(n, &mut log);
    }
    let mut sessions = Sessions::new(Limits::default(), "/data");
    let mut reports = Vec::new();
    for line in log.lines() {
        sessions.apply(parse_line(line.as_bytes(), 0), 0, &mut reports);
    }
    sessions.finish_all(Ending::EndOfInput, &mut reports);
    assert_eq!(reports.len(), REPORTS);
    reports.push(sftpctl::watch::report::example());
    reports
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect()
}

/// The outbox records as the delivery thread reads them (deliver.rs: prepare): each into a
/// `Report`, then the templates' view of it.
#[no_mangle]
#[inline(never)]
pub fn parse_records(templates: &Templates, records: &[Vec<u8>]) -> Vec<tera::Context> {
    records
        .iter()
        .map(|r| templates.context(&read_report(r).unwrap()))
        .collect()
}

/// What the delivery thread does next per record (deliver.rs: prepare): templates and MIME.
/// Its name is what callgrind's `--toggle-collect` counts.
#[no_mangle]
#[inline(never)]
pub fn render_reports(
    templates: &Templates,
    addresses: &Addresses,
    contexts: &[tera::Context],
) -> usize {
    let mut bytes = 0;
    for context in contexts {
        let rendered = templates.render_context(context).unwrap();
        let to = addresses.admins().to_vec();
        let mail = build_message_to(addresses, "alice", to, rendered).unwrap();
        bytes += mail.bytes.len();
    }
    bytes
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let records = records();
    let templates = Templates::load(None).unwrap();
    let addresses = Addresses::from_config(&Config::default()).unwrap();
    // Every mail's subject, text, HTML and bytes into one file: dumps taken before and after
    // a change to the templates or the view must be identical.
    if let Some(path) = std::env::var_os("RENDER_BENCH_DUMP") {
        let mut dump = Vec::new();
        for context in parse_records(&templates, &records) {
            let rendered = templates.render_context(&context).unwrap();
            for part in [&rendered.subject, &rendered.text, &rendered.html] {
                dump.extend_from_slice(part.as_bytes());
                dump.extend_from_slice(b"\n----\n");
            }
            let to = addresses.admins().to_vec();
            dump.extend(
                build_message_to(&addresses, "alice", to, rendered)
                    .unwrap()
                    .bytes,
            );
            dump.extend_from_slice(b"\n====\n");
        }
        std::fs::write(path, dump).unwrap();
        return;
    }
    if std::env::var_os("RENDER_BENCH_CHILD").is_some() {
        let contexts = parse_records(&templates, &records);
        let bytes = render_reports(&templates, &addresses, &contexts);
        println!("mail bytes: {bytes}");
        return;
    }
    let n = records.len();
    let start = Instant::now();
    let contexts = parse_records(&templates, &records);
    let bytes = render_reports(&templates, &addresses, &contexts);
    let wall = start.elapsed();
    println!(
        "render: {n} reports, {:.1} KB of mail each, {:.1} us per report (wall, noisy)",
        bytes as f64 / n as f64 / 1000.0,
        wall.as_secs_f64() * 1e6 / n as f64
    );
    let have_valgrind = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_valgrind {
        println!("render: instruction count needs valgrind (apt-get install -y valgrind)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sftpctl-render-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let render = instructions(&dir, "render_reports") / n as u64;
    let parse = instructions(&dir, "parse_records") / n as u64;
    println!(
        "render: {render} instructions per report (text + HTML + MIME, {n} reports; target <= 250,000)"
    );
    println!(
        "outbox JSON -> Report -> template view (deliver.rs): {parse} instructions per report"
    );
    println!(
        "total, outbox JSON -> mail bytes: {} instructions per report",
        parse + render
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Instructions spent in `function` (and what it calls) in one run of this bench.
fn instructions(dir: &std::path::Path, function: &str) -> u64 {
    let out_file = dir.join(format!("callgrind.{function}"));
    let out = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--toggle-collect={function}"))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(std::env::current_exe().unwrap())
        .env("RENDER_BENCH_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("callgrind summary line")
}
