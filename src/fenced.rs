//! Fenced blocks: the text sftpctl adds to files it does not own (`/etc/pam.d/sshd`, the main
//! `sshd_config`) lives between `# BEGIN sftpctl <id>` and `# END sftpctl <id>` and is
//! replaced in place on every run, so re-running never duplicates it.

/// Where a new block goes when the file has none yet.
#[derive(Debug, Clone, Copy)]
pub enum Placement {
    /// At the end of the file.
    End,
    /// Replace the first line for which the predicate holds (kept inside the block as a
    /// comment); if none, before the first line matching `before`, else at the end.
    Replace {
        line: fn(&str) -> bool,
        before: fn(&str) -> bool,
    },
}

fn begin(id: &str) -> String {
    format!("# BEGIN sftpctl {id}")
}

fn end(id: &str) -> String {
    format!("# END sftpctl {id}")
}

/// Finds an existing block: (index of BEGIN line, index of END line).
fn find(lines: &[&str], id: &str) -> Option<(usize, usize)> {
    let (b, e) = (begin(id), end(id));
    let start = lines.iter().position(|l| l.trim_end() == b)?;
    let stop = lines[start..].iter().position(|l| l.trim_end() == e)? + start;
    Some((start, stop))
}

/// Returns `text` with the block `id` holding `body` (lines without the fences).
pub fn upsert(text: &str, id: &str, body: &str, placement: Placement) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let body = body.trim_end_matches('\n');
    let mut block = vec![begin(id)];
    if let Some((start, stop)) = find(&lines, id) {
        // Keep the record of the line we replaced, so the block can be undone by hand.
        block.extend(
            lines[start + 1..stop]
                .iter()
                .filter(|l| l.starts_with("# was: "))
                .map(|l| l.to_string()),
        );
        block.extend(body.lines().map(str::to_string));
        block.push(end(id));
        return join(&lines[..start], &block, &lines[stop + 1..]);
    }
    match placement {
        Placement::End => {
            block.extend(body.lines().map(str::to_string));
            block.push(end(id));
            join(&lines, &block, &[])
        }
        Placement::Replace { line, before } => {
            if let Some(i) = lines.iter().position(|l| line(l)) {
                block.push(format!("# was: {}", lines[i]));
                block.extend(body.lines().map(str::to_string));
                block.push(end(id));
                join(&lines[..i], &block, &lines[i + 1..])
            } else {
                block.extend(body.lines().map(str::to_string));
                block.push(end(id));
                match lines.iter().position(|l| before(l)) {
                    Some(i) => join(&lines[..i], &block, &lines[i..]),
                    None => join(&lines, &block, &[]),
                }
            }
        }
    }
}

/// The line a block replaced (its `# was: ` record), when the file has the block and it
/// holds one.
pub fn recorded(text: &str, id: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (start, stop) = find(&lines, id)?;
    lines[start + 1..stop]
        .iter()
        .find_map(|l| l.strip_prefix("# was: "))
        .map(str::to_string)
}

/// True when the file has the block `id`.
pub fn contains(text: &str, id: &str) -> bool {
    find(&text.lines().collect::<Vec<_>>(), id).is_some()
}

/// `text` without the block `id` (fences included); unchanged when it has none.
pub fn remove(text: &str, id: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    match find(&lines, id) {
        Some((start, stop)) => join(&lines[..start], &[], &lines[stop + 1..]),
        None => text.to_string(),
    }
}

fn join(head: &[&str], block: &[String], tail: &[&str]) -> String {
    let mut out = String::new();
    for l in head {
        out.push_str(l);
        out.push('\n');
    }
    for l in block {
        out.push_str(l);
        out.push('\n');
    }
    for l in tail {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_subsystem(l: &str) -> bool {
        let mut w = l.split_whitespace();
        w.next()
            .is_some_and(|k| k.eq_ignore_ascii_case("subsystem"))
            && w.next() == Some("sftp")
    }
    fn is_match(l: &str) -> bool {
        l.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("match"))
    }
    const SUB: Placement = Placement::Replace {
        line: is_subsystem,
        before: is_match,
    };

    #[test]
    fn appends_then_replaces_in_place() {
        let once = upsert("a\nb\n", "pam", "x 1", Placement::End);
        assert_eq!(once, "a\nb\n# BEGIN sftpctl pam\nx 1\n# END sftpctl pam\n");
        let twice = upsert(&(once.clone() + "c\n"), "pam", "x 2", Placement::End);
        assert_eq!(
            twice,
            "a\nb\n# BEGIN sftpctl pam\nx 2\n# END sftpctl pam\nc\n"
        );
        assert_eq!(upsert(&once, "pam", "x 1", Placement::End), once);
    }

    #[test]
    fn replaces_the_subsystem_line_and_remembers_it() {
        let text = "Port 22\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\nMatch User x\n  Y n\n";
        let new = upsert(text, "subsystem", "Subsystem sftp internal-sftp", SUB);
        assert_eq!(
            new,
            "Port 22\n# BEGIN sftpctl subsystem\n# was: Subsystem\tsftp\t/usr/lib/openssh/sftp-server\nSubsystem sftp internal-sftp\n# END sftpctl subsystem\nMatch User x\n  Y n\n"
        );
        // re-run: idempotent, the record of the original is kept
        assert_eq!(
            upsert(&new, "subsystem", "Subsystem sftp internal-sftp", SUB),
            new
        );
    }

    #[test]
    fn without_a_subsystem_line_goes_before_the_first_match() {
        let new = upsert("Port 22\nMatch all\n", "s", "S", SUB);
        assert_eq!(
            new,
            "Port 22\n# BEGIN sftpctl s\nS\n# END sftpctl s\nMatch all\n"
        );
        assert_eq!(
            upsert("Port 22\n", "s", "S", SUB),
            "Port 22\n# BEGIN sftpctl s\nS\n# END sftpctl s\n"
        );
    }

    #[test]
    fn removes_a_block() {
        let with = upsert("a\nb\n", "m", "x\ny", Placement::End);
        assert_eq!(remove(&with, "m"), "a\nb\n");
        assert_eq!(remove("a\n", "m"), "a\n");
    }

    #[test]
    fn blocks_with_other_ids_are_left_alone() {
        let a = upsert("", "one", "1", Placement::End);
        let b = upsert(&a, "two", "2", Placement::End);
        assert!(contains(&b, "one") && contains(&b, "two"));
        assert_eq!(upsert(&b, "one", "1", Placement::End), b);
    }
}
