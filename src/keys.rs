//! OpenSSH public keys: validated before they reach an authorized_keys file.

use std::path::Path;

use anyhow::{bail, Context, Result};

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One public key: type, base64 blob and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kind: String,
    pub blob: String,
    pub comment: String,
}

impl PublicKey {
    /// The authorized_keys line, without options: sftpctl writes plain keys only.
    pub fn line(&self) -> String {
        if self.comment.is_empty() {
            format!("{} {}", self.kind, self.blob)
        } else {
            format!("{} {} {}", self.kind, self.blob, self.comment)
        }
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let blob = base64_decode(&self.blob).unwrap_or_default();
        let digest = sha2::Sha256::digest(&blob);
        format!("SHA256:{}", base64_encode_unpadded(&digest))
    }

    /// Same key, whatever the comment.
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.kind == other.kind && self.blob == other.blob
    }
}

/// Parses one line `type base64 [comment]`, checking that the blob decodes and names the
/// same key type inside (what sshd itself checks).
pub fn parse_line(line: &str) -> Result<PublicKey> {
    if line.chars().any(|c| c.is_control() && c != '\t') {
        bail!("key line contains a control character");
    }
    let mut words = line.split_whitespace();
    let kind = words.next().context("empty key line")?;
    if !KEY_TYPES.contains(&kind) {
        // The line itself is not echoed: it may come from a file that holds a secret.
        bail!(
            "it does not start with an OpenSSH public key type (options before the key are not accepted); expected one of {}",
            KEY_TYPES.join(", ")
        );
    }
    let blob = words.next().context("key line has no base64 key data")?;
    let bytes = base64_decode(blob).context("key data is not valid base64")?;
    if bytes.len() < 4 {
        bail!("key data is too short");
    }
    let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    if bytes.get(4..4 + n) != Some(kind.as_bytes()) {
        bail!("key data does not hold a {kind} key");
    }
    let comment = words.collect::<Vec<_>>().join(" ");
    Ok(PublicKey {
        kind: kind.to_string(),
        blob: blob.to_string(),
        comment,
    })
}

/// Parses authorized_keys text: one key a line, blank lines and `#` comments skipped.
pub fn parse_text(text: &str) -> Result<Vec<PublicKey>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| parse_line(l.trim()).with_context(|| format!("line {}", i + 1)))
        .collect()
}

/// Reads and validates a key file given on the command line (a usage error when bad).
pub fn read_key_file(path: &Path) -> Result<Vec<PublicKey>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::usage(format!("cannot read key file {}: {e}", path.display()))
    })?;
    if text.contains("PRIVATE KEY") {
        return Err(crate::error::usage(format!(
            "{} is a PRIVATE key: give the public key (the .pub file) instead",
            path.display()
        )));
    }
    let keys = parse_text(&text).map_err(|e| {
        crate::error::usage(format!(
            "{} is not an OpenSSH public key file: {e:#}",
            path.display()
        ))
    })?;
    if keys.is_empty() {
        return Err(crate::error::usage(format!(
            "{} holds no public key",
            path.display()
        )));
    }
    Ok(keys)
}

/// `existing` plus every key of `new` that is not in it yet, as authorized_keys text.
pub fn merge(existing: &[PublicKey], new: &[PublicKey]) -> String {
    let mut all: Vec<&PublicKey> = existing.iter().collect();
    for k in new {
        if !all.iter().any(|e| e.same_key(k)) {
            all.push(k);
        }
    }
    all.iter().map(|k| k.line() + "\n").collect()
}

fn base64_encode_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.as_bytes();
    if s.is_empty() || s.len() % 4 != 0 {
        return None;
    }
    let pad = s.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let mut acc = 0u32;
        let mut n = 0;
        for &c in chunk {
            if c == b'=' {
                break;
            }
            acc = (acc << 6) | val(c)?;
            n += 1;
        }
        acc <<= 6 * (4 - n);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..n.max(1)]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "SHA256:aSmXtDKcQ/RYex0bwn4Oldw+N/TnKvJ9ZLv/8uwHiu0";
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIERM+TvEz/PNGRxCuPvWn1SrOXeoQ7XilUerRX+NekUr alice@laptop";

    #[test]
    fn accepts_a_real_key() {
        let k = parse_line(ED).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.comment, "alice@laptop");
        assert_eq!(k.line(), ED);
    }

    #[test]
    fn refuses_bad_keys() {
        for bad in [
            "",
            "not-a-key AAAA",
            "command=\"/bin/sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIERM+TvEz/PNGRxCuPvWn1SrOXeoQ7XilUerRX+NekUr",
            "ssh-ed25519",
            "ssh-ed25519 !!!!",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIERM+TvEz/PNGRxCuPvWn1SrOXeoQ7XilUerRX+NekUr",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIERM+TvEz/PNGRxCuPvWn1SrOXeoQ7XilUerRX+NekUr a\rb",
        ] {
            assert!(parse_line(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn merge_keeps_existing_and_skips_duplicates() {
        let a = parse_line(ED).unwrap();
        let mut b = a.clone();
        b.comment = "other comment".into();
        assert_eq!(merge(std::slice::from_ref(&a), &[b]), format!("{ED}\n"));
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        // what ssh-keygen -lf prints for this key
        let k = parse_line(ED).unwrap();
        assert_eq!(k.fingerprint(), FP);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert!(base64_decode("a").is_none());
    }
}
