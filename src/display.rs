//! Text from users' trees and logs made safe to show: a file name can never move the cursor,
//! clear a terminal, start a new line in a report, or turn text around.
//!
//! One function for every place that prints a user-controlled name: doctor, the plan printer,
//! the shared-write findings, error lines, and the watcher's reports (through
//! `watch::escape::for_people`).

use std::borrow::Cow;
use std::path::Path;

/// `s` with every character that is not plainly visible spelled out: control characters
/// (`\n`, `\t`, `\r`, ESC and the rest as `\u{1b}`) and invisible or reordering format
/// characters (right-to-left override, zero-width joiners, bidi isolates, soft hyphen, BOM,
/// line/paragraph separators…) as `<U+202E>`. Everything else passes unchanged.
pub fn visible(s: &str) -> Cow<'_, str> {
    if is_plainly_visible(s) || !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        push_visible(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`visible`] keeping the line breaks of a multi-line text (each line escaped on its own).
pub fn visible_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let lines: Vec<Cow<'_, str>> = s.split('\n').map(visible).collect();
    Cow::Owned(lines.join("\n"))
}

/// 1536 → "1.5 KiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A path for people: bytes that are not UTF-8 become U+FFFD, then [`visible`].
pub fn path(p: &Path) -> String {
    visible(&p.to_string_lossy()).into_owned()
}

fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        c if is_invisible_format(c) => out.push_str(&format!("<U+{:04X}>", c as u32)),
        c => out.push(c),
    }
}

/// Printable ASCII and Latin-1 letters (U+00C0-U+00FF, lead byte 0xC3) only: nothing to
/// escape (most names; checked bytewise, without decoding). In valid UTF-8 every continuation
/// byte then belongs to a 0xC3 lead.
fn is_plainly_visible(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == 0xC3 || (0x80..0xC0).contains(&b))
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Unicode general category Cf (format) plus the line and paragraph separators (Zl, Zp):
/// characters that are invisible or change how the text around them is shown. Listed from
/// Unicode 15.1's Cf ranges (stable: new ones are rare and would show as themselves).
pub fn is_invisible_format(c: char) -> bool {
    (c as u32) >= 0xAD
        && matches!(
            c as u32,
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            visible("Übersicht 2026 → final.pdf ✓"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn terminal_escapes_become_visible() {
        assert_eq!(visible("a\x1b[2Jb\x07"), "a\\u{1b}[2Jb\\u{7}");
        assert_eq!(visible("x\ny\tz\r"), "x\\ny\\tz\\r");
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m");
        assert!(!visible("\x1b]0;title\x07").contains('\x1b'));
    }

    #[test]
    fn bidi_and_zero_width_characters_are_spelled_out() {
        assert_eq!(
            visible("invoice-\u{202e}fdp.exe"),
            "invoice-<U+202E>fdp.exe"
        );
        assert_eq!(
            visible("a\u{200d}b\u{2066}c\u{feff}"),
            "a<U+200D>b<U+2066>c<U+FEFF>"
        );
        assert_eq!(visible("line\u{2028}sep"), "line<U+2028>sep");
    }

    #[test]
    fn lines_keep_their_breaks() {
        assert_eq!(visible_lines("a\x1b\nb"), "a\\u{1b}\nb");
    }

    #[test]
    fn non_utf8_paths() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"/d/\xff\x1b[1m"));
        assert_eq!(path(p), "/d/\u{fffd}\\u{1b}[1m");
    }
}
