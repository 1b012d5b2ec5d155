//! Forwarded lines that arrive twice. rsyslog's queues deliver at least once: a batch that
//! was sent but not confirmed before a broken connection or a restart is sent again (seen
//! here with omfwd and omrelp, memory and disk queues). A forwarded line carries its host's
//! time of receipt to the microsecond, the sender's pid and the whole message, so the same
//! bytes twice are the same line: the collector keeps the last lines of each host and skips
//! a repeat.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;

/// Lines remembered per host: far more than one batch of a queue (rsyslog's default
/// dequeue batch is 128 lines, RELP's window 128).
pub const PER_HOST: usize = 4096;
/// Hosts remembered; beyond that the least recently added one is forgotten.
pub const HOSTS: usize = 10_000;

#[derive(Default)]
struct Host {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

pub struct Recent {
    hasher: RandomState,
    hosts: HashMap<String, Host>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            hasher: RandomState::new(),
            hosts: HashMap::new(),
        }
    }
}

impl Recent {
    /// True when `line` of `host` was seen among its last [`PER_HOST`] lines; else it is
    /// remembered.
    pub fn repeat(&mut self, host: &str, line: &[u8]) -> bool {
        let mut line = line;
        while let [rest @ .., b'\n' | b'\r' | b'\0'] = line {
            line = rest;
        }
        let hash = self.hasher.hash_one(line);
        if !self.hosts.contains_key(host) && self.hosts.len() >= HOSTS {
            self.hosts.clear();
        }
        let h = self.hosts.entry(host.to_string()).or_default();
        if !h.seen.insert(hash) {
            return true;
        }
        h.order.push_back(hash);
        if h.order.len() > PER_HOST {
            if let Some(old) = h.order.pop_front() {
                h.seen.remove(&old);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_told_and_old_lines_are_forgotten() {
        let mut r = Recent::default();
        assert!(!r.repeat("a", b"line 1\n"));
        assert!(r.repeat("a", b"line 1"));
        assert!(!r.repeat("b", b"line 1"), "another host's line");
        for i in 0..PER_HOST {
            assert!(!r.repeat("a", format!("other {i}").as_bytes()));
        }
        assert!(!r.repeat("a", b"line 1"), "forgotten after PER_HOST lines");
    }
}
