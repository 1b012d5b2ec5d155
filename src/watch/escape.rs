//! Undoing internal-sftp's `strnvis(VIS_CSTYLE|VIS_NL|VIS_TAB|VIS_OCTAL)` escaping.
//!
//! The log escapes `\` as `\\`, newline and tab as `\n`/`\t`, other control bytes and every byte
//! >= 0x80 as three octal digits (`\303\234` is `Ü`). Space and `"` are left alone.

/// Decodes an escaped name into bytes; sequences that are not valid escapes are kept literally.
pub fn unescape(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        // The text up to the next backslash, in one copy.
        let run = memchr::memchr(b'\\', &input[i..]).unwrap_or(input.len() - i);
        out.extend_from_slice(&input[i..i + run]);
        i += run;
        if i >= input.len() {
            break;
        }
        let b = input[i];
        if i + 1 >= input.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = input[i + 1];
        if let Some(value) = octal3(&input[i + 1..]) {
            out.push(value);
            i += 4;
            continue;
        }
        let decoded = match next {
            b'\\' => Some(b'\\'),
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'v' => Some(0x0b),
            b'f' => Some(0x0c),
            b's' => Some(b' '),
            b'0' => Some(0),
            _ => None,
        };
        match decoded {
            Some(v) => {
                out.push(v);
                i += 2;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Three octal digits with a value that fits a byte (`\000`..`\377`).
fn octal3(s: &[u8]) -> Option<u8> {
    if s.len() < 3 {
        return None;
    }
    let mut value: u32 = 0;
    for &d in &s[..3] {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value * 8 + u32::from(d - b'0');
    }
    u8::try_from(value).ok()
}

/// A name for people: escapes decoded, invalid UTF-8 replaced by U+FFFD, and control and
/// invisible format characters shown as escapes again ([`crate::display::visible`]) so that a
/// name can never start a new line in a mail or a header, nor turn its own text around.
pub fn for_people(input: &[u8]) -> String {
    // Most names: printable ASCII without escapes, nothing to decode or show differently.
    // One scan and one copy (this runs for nearly every log line).
    if input
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return String::from_utf8(input.to_vec()).unwrap_or_default();
    }
    let text = if input.contains(&b'\\') {
        match String::from_utf8(unescape(input)) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    } else {
        String::from_utf8_lossy(input).into_owned()
    };
    match crate::display::visible(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(shown) => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_octal_utf8() {
        assert_eq!(
            for_people(br"/data/\303\234bersicht 2026.pdf"),
            "/data/Übersicht 2026.pdf"
        );
    }

    #[test]
    fn decodes_c_style_escapes() {
        assert_eq!(unescape(br"a\\b\tc\nd\se"), b"a\\b\tc\nd e");
        assert_eq!(unescape(br"\001\177"), [1u8, 0x7f]);
    }

    #[test]
    fn keeps_invalid_escapes_literally() {
        assert_eq!(unescape(br"\q\8\400x\"), b"\\q\\8\\400x\\");
        assert_eq!(unescape(br"end\30"), b"end\\30");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(for_people(br"\377x"), "\u{fffd}x");
    }

    #[test]
    fn control_characters_stay_visible() {
        assert_eq!(for_people(br"evil\nSubject: x"), "evil\\nSubject: x");
        assert_eq!(for_people(br"bell\007"), "bell\\u{7}");
    }

    #[test]
    fn right_to_left_override_is_spelled_out() {
        // U+202E is logged as its UTF-8 bytes in octal.
        assert_eq!(
            for_people(br"/data/invoice-\342\200\256fdp.exe"),
            "/data/invoice-<U+202E>fdp.exe"
        );
    }

    #[test]
    fn quotes_and_spaces_pass_through() {
        assert_eq!(
            for_people(br#"quo"te bytes read 0.txt"#),
            r#"quo"te bytes read 0.txt"#
        );
    }
}
