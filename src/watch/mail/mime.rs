//! A report's mail as bytes: multipart/alternative with a quoted-printable text part and a
//! base64 HTML part, assembled here. lettre still encodes the three headers that carry names
//! (`From`, `To`, `Subject`: RFC 2047 encoded words, folding); its `MessageBuilder` is not
//! used for reports: it parses the headers it has just written back into an envelope, and
//! formats every part through `fmt`, about 115 k instructions a report, as much as the
//! templates (docs/watch.md, "Rendering cost"). The bytes are what lettre wrote, bar the
//! boundary (see [`assemble`]), which `tests` check against lettre's own output.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use lettre::address::Envelope;
use lettre::message::header::{self, Headers};
use lettre::message::{Mailbox, Mailboxes};
use lettre::Message;

/// A mail ready for a transport: who gets it (SMTP envelope) and its bytes, CRLF lines.
pub struct Mail {
    pub envelope: Envelope,
    pub bytes: Vec<u8>,
}

impl From<&Message> for Mail {
    fn from(message: &Message) -> Mail {
        Mail {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        }
    }
}

static BOUNDARIES: AtomicU64 = AtomicU64::new(0);

/// The mail from `from` to `to` with `subject` (one line already), `text` and `html`.
pub fn assemble(
    from: &Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    text: &str,
    html: &str,
) -> Result<Mail> {
    let envelope = Envelope::new(
        Some(from.email.clone()),
        to.iter().map(|m| m.email.clone()).collect(),
    )
    .context("cannot address the report mail")?;
    let mut headers = Headers::new();
    headers.set(header::From::from(Mailboxes::from(from.clone())));
    headers.set(header::Subject::from(subject));
    headers.set(header::To::from(to.into_iter().collect::<Mailboxes>()));
    headers.set(header::MIME_VERSION_1_0);
    headers.set(header::Date::now());
    // `=_` cannot occur in either body: quoted-printable writes `=` only before two hex
    // digits or a line end, base64 only at its end. So the boundary needs no randomness to
    // be safe; the counter and time only keep it different from mail to mail.
    // Short enough for the Content-Type line to stay under 78 characters unfolded.
    let boundary = format!(
        "=_sftpctl_{:x}_{:x}",
        std::process::id(),
        (crate::watch::time::now_unix() as u64)
            .wrapping_mul(1_000_003)
            .wrapping_add(BOUNDARIES.fetch_add(1, Ordering::Relaxed))
            & 0xffff_ffff_ffff
    );
    Ok(Mail {
        envelope,
        bytes: multipart(&headers.to_string(), &boundary, text, html),
    })
}

/// `headers` (formatted, CRLF), then the alternative parts in lettre's layout.
fn multipart(headers: &str, boundary: &str, text: &str, html: &str) -> Vec<u8> {
    let text = quoted_printable(text);
    let html = base64_lines(html);
    let mut out = Vec::with_capacity(headers.len() + text.len() + html.len() + 400);
    for part in [
        headers,
        "Content-Type: multipart/alternative; boundary=\"",
        boundary,
        "\"\r\n\r\n--",
        boundary,
        "\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&text);
    for part in [
        "\r\n--",
        boundary,
        "\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(&html);
    for part in ["\r\n--", boundary, "--\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The text part as quoted-printable (RFC 2045 6.7): line ends become CRLF, `=`, control
/// and non-ASCII bytes `=XX`, a space or tab before a line end `=20`/`=09`, and lines are
/// broken softly (`=` CRLF) before 76 characters. The text's UTF-8 bytes survive any
/// 7-bit path and any line-length limit.
pub fn quoted_printable(text: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() + text.len() / 8 + 16);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let mut col = 0;
        let mut i = 0;
        while i < line.len() {
            // A run of bytes that stand for themselves, up to the column limit, in one copy;
            // the last byte of the line is left to the careful path (a space there is `=20`).
            let end = (line.len() - 1).min(i + 75 - col);
            let mut j = i;
            while j < end && PLAIN[line[j] as usize] {
                j += 1;
            }
            if j > i {
                out.extend_from_slice(&line[i..j]);
                col += j - i;
                i = j;
                continue;
            }
            let b = line[i];
            let last = i + 1 == line.len();
            let plain =
                matches!(b, b'!'..=b'<' | b'>'..=b'~') || (b == b' ' || b == b'\t') && !last;
            let width = if plain { 1 } else { 3 };
            if col + width > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            if plain {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            col += width;
            i += 1;
        }
        if lines.peek().is_some() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Bytes quoted-printable leaves as they are inside a line: printable ASCII but `=`, space, tab.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b' '..=b'<' | b'>'..=b'~' | b'\t');
        b += 1;
    }
    table
};

/// The HTML part as base64 of its CRLF form (text bodies are encoded in canonical form),
/// in lines of 76 characters: 57 bytes a line, encoded straight into the line. Written
/// here rather than the `base64` crate's `encode` and a second pass to cut lines (half the
/// instructions): a table of every 12-bit value's two characters makes a 3-byte group two
/// loads. The test holds it to the crate's output.
pub fn base64_lines(text: &str) -> Vec<u8> {
    let canonical = crlf(text);
    let mut out = Vec::with_capacity(canonical.len() / 57 * 78 + 80);
    let mut lines = canonical.chunks_exact(57);
    let mut line = [0u8; 76];
    for (n, chunk) in lines.by_ref().enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let chunk: &[u8; 57] = chunk.try_into().expect("57 bytes");
        // Six bytes (four 12-bit values) at a time from one 8-byte read; fixed bounds, so
        // the loop unrolls without checks. Bytes 54..57 are the last group of three.
        for g in 0..9 {
            let x = u64::from_be_bytes(chunk[6 * g..6 * g + 8].try_into().expect("8 bytes"));
            for k in 0..4 {
                let v = (x >> (52 - 12 * k)) as usize & 0xfff;
                line[8 * g + 2 * k..8 * g + 2 * k + 2].copy_from_slice(&PAIRS[v]);
            }
        }
        let v = (chunk[54] as usize) << 16 | (chunk[55] as usize) << 8 | chunk[56] as usize;
        line[72..74].copy_from_slice(&PAIRS[v >> 12]);
        line[74..76].copy_from_slice(&PAIRS[v & 0xfff]);
        out.extend_from_slice(&line);
    }
    let rest = lines.remainder();
    if !rest.is_empty() {
        if !out.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
        for group in rest.chunks(3) {
            let byte = |i: usize| group.get(i).map_or(0, |&b| b as usize);
            let v = byte(0) << 16 | byte(1) << 8 | byte(2);
            let chars = [PAIRS[v >> 12], PAIRS[v & 0xfff]].concat();
            out.extend_from_slice(&chars[..group.len() + 1]);
            out.extend(std::iter::repeat_n(b'=', 3 - group.len()));
        }
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The two base64 characters of every 12-bit value.
static PAIRS: [[u8; 2]; 4096] = {
    let mut table = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        table[i] = [BASE64[i >> 6], BASE64[i & 63]];
        i += 1;
    }
    table
};

/// `text` with every line end CRLF (a lone `\r` before a `\n` or at the end dropped, as
/// lettre's canonical form does).
fn crlf(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len() + b.len() / 16 + 2);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', b) {
        let line = &b[start..i];
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
        start = i + 1;
    }
    let last = &b[start..];
    out.extend_from_slice(last.strip_suffix(b"\r").unwrap_or(last));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::{ContentTransferEncoding, ContentType};
    use lettre::message::{Body, MultiPart, SinglePart};

    /// What `mail::build_message_to` sent before this module: lettre's builder.
    fn lettre_mail(
        from: &Mailbox,
        to: &[Mailbox],
        subject: &str,
        text: &str,
        html: &str,
        boundary: &str,
    ) -> Vec<u8> {
        let mut builder = Message::builder().from(from.clone()).subject(subject);
        for t in to {
            builder = builder.to(t.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .boundary(boundary)
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(
                        Body::dangerous_pre_encoded(
                            quoted_printable(text),
                            ContentTransferEncoding::QuotedPrintable,
                        ),
                    ))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(
                        Body::dangerous_pre_encoded(
                            base64_lines(html),
                            ContentTransferEncoding::Base64,
                        ),
                    )),
            )
            .unwrap()
            .formatted()
    }

    /// The same bytes as lettre's builder, for hostile names and non-ASCII subjects too.
    #[test]
    fn bytes_are_lettres() {
        let from: Mailbox = "\"sftp, ctl\" <root@host.example>".parse().unwrap();
        let to: Vec<Mailbox> = ["Jürgen Ü <j@example.com>", "b@example.com"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let long = "ä ".repeat(80);
        for subject in [
            "SFTP alice@vm: 2 uploaded",
            "SFTP jürgen Bcc: evil@example.com@h: 1 uploaded [INCOMPLETE]",
            long.as_str(),
            "=?utf-8?b?SGk=?= \"quoted\" <x>",
        ] {
            let text = "résumé  \nline two\t\n=end\n";
            let html = "<p>\"a\" & ü</p>\n<b>x</b>\n";
            let mail = assemble(&from, to.clone(), subject.to_string(), text, html).unwrap();
            let ours = String::from_utf8(mail.bytes).unwrap();
            let boundary = ours
                .split("boundary=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let theirs = lettre_mail(&from, &to, subject, text, html, boundary);
            let theirs = String::from_utf8(theirs).unwrap();
            // Made a moment apart: the Date lines may differ by a second.
            let date = |m: &str| {
                m.lines()
                    .find(|l| l.starts_with("Date: "))
                    .unwrap()
                    .to_string()
            };
            assert_eq!(
                ours.replace(&date(&ours), ""),
                theirs.replace(&date(&theirs), "")
            );
            assert!(ours.lines().all(|l| l.len() <= 78), "{ours}");
            assert_eq!(mail.envelope.to().len(), 2);
            assert_eq!(
                mail.envelope.from().unwrap().to_string(),
                "root@host.example"
            );
        }
    }

    #[test]
    fn the_boundary_is_in_neither_body() {
        let text = "--=_sftpctl_1_2 =_ ==_\n".repeat(40);
        let qp = String::from_utf8(quoted_printable(&text)).unwrap();
        assert!(!qp.contains("=_"), "{qp}");
        let b64 = String::from_utf8(base64_lines(&text)).unwrap();
        assert!(!b64.contains("=_"));
    }

    #[test]
    fn quoted_printable_keeps_its_rules() {
        let qp = |s: &str| String::from_utf8(quoted_printable(s)).unwrap();
        assert_eq!(qp("a b \nc\t\n"), "a b=20\r\nc=09\r\n");
        assert_eq!(qp("x=y ü"), "x=3Dy =C3=BC");
        let long = "a".repeat(200);
        let out = qp(&long);
        assert!(out.split("\r\n").all(|l| l.len() <= 76), "{out}");
        assert_eq!(out.replace("=\r\n", ""), long);
        let mixed = "ü ".repeat(60) + " ";
        let out = qp(&mixed);
        assert!(out.split("\r\n").all(|l| l.len() <= 76), "{out}");
        assert!(out.ends_with("=20"), "{out}");
    }

    /// The byte-at-a-time encoder the run copying replaced: the oracle.
    fn quoted_printable_bytewise(text: &str) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = Vec::new();
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
            let mut col = 0;
            for (i, &b) in line.iter().enumerate() {
                let last = i + 1 == line.len();
                let plain =
                    matches!(b, b'!'..=b'<' | b'>'..=b'~') || (b == b' ' || b == b'\t') && !last;
                let width = if plain { 1 } else { 3 };
                if col + width > 75 {
                    out.extend_from_slice(b"=\r\n");
                    col = 0;
                }
                if plain {
                    out.push(b);
                } else {
                    out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                }
                col += width;
            }
            if lines.peek().is_some() {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    #[test]
    fn run_copying_is_the_bytewise_encoding() {
        let alphabet = ['a', ' ', '\t', '=', '\n', '\r', 'ü', '€', '~', '\u{1}'];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..3_000 {
            let mut text = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for _ in 0..(state % 300) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly plain letters, so that long runs meet the column limit.
                let c = if state % 3 == 0 {
                    alphabet[(state >> 8) as usize % alphabet.len()]
                } else {
                    'x'
                };
                text.push(c);
            }
            assert_eq!(
                quoted_printable(&text),
                quoted_printable_bytewise(&text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn base64_is_the_crates() {
        use base64::Engine;
        let crate_lines = |text: &str| {
            let mut canonical = Vec::new();
            for (i, line) in text.split('\n').enumerate() {
                if i > 0 {
                    canonical.extend_from_slice(b"\r\n");
                }
                canonical.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(&canonical);
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|l| std::str::from_utf8(l).unwrap())
                .collect();
            lines.join("\r\n").into_bytes()
        };
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for len in 0..400 {
            let mut text = String::new();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push(
                    ['a', '\n', '\r', 'é', '<', '\u{0}', '\u{ff}', '€'][(state % 8) as usize],
                );
            }
            assert_eq!(base64_lines(&text), crate_lines(&text), "{text:?}");
        }
    }
}
