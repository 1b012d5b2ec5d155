//! The pure part of a quota run: from the last record and a new count to the next record and
//! the notices it calls for. No I/O, so every crossing rule has a unit test.

use std::collections::BTreeMap;

use super::state::{percent, State};
use crate::perms::Usage;

/// The level that stands for "full" in [`State::warned`].
pub const FULL: u8 = 100;

/// The next record of a client after a scan that found `usage` against `quota` bytes, with
/// warnings at `levels` percent. A level reached keeps the time it was first reached; a level
/// left is forgotten, so reaching it again is a new crossing.
pub fn next(prev: &State, usage: Usage, quota: u64, levels: &[u8], now: i64) -> State {
    let pct = percent(usage.bytes, quota);
    let full = usage.bytes >= quota;
    let mut warned = BTreeMap::new();
    for &level in levels.iter().chain(std::iter::once(&FULL)) {
        let reached = if level == FULL {
            full
        } else {
            pct >= u64::from(level)
        };
        if reached {
            warned.insert(level, prev.warned.get(&level).copied().unwrap_or(now));
        }
    }
    State {
        quota,
        bytes: usage.bytes,
        files: usage.files,
        scanned_at: now,
        full,
        warned,
        enforced: prev.enforced,
        uid: prev.uid,
    }
}

/// The levels to tell the admin about, as `(level, since)`: every level reached, except one
/// reached at the same time as a higher one (usage that jumps from 50 % to full gets one
/// notice, not three). Notices are queued by id, once ever, so asking again is harmless.
pub fn levels_to_tell(state: &State) -> Vec<(u8, i64)> {
    let reached: Vec<(u8, i64)> = state.warned.iter().map(|(l, s)| (*l, *s)).collect();
    reached
        .iter()
        .enumerate()
        .filter(|(i, (_, since))| reached.get(i + 1).is_none_or(|(_, above)| above != since))
        .map(|(_, x)| *x)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(bytes: u64) -> Usage {
        Usage {
            bytes,
            files: 1,
            errors: 0,
        }
    }

    const LEVELS: [u8; 2] = [80, 95];

    #[test]
    fn each_level_is_told_once_per_crossing() {
        let s0 = State::default();
        let s1 = next(&s0, usage(50), 100, &LEVELS, 10);
        assert!(s1.warned.is_empty() && !s1.full);
        assert!(levels_to_tell(&s1).is_empty());
        let s2 = next(&s1, usage(85), 100, &LEVELS, 20);
        assert_eq!(levels_to_tell(&s2), vec![(80, 20)]);
        // Still at 85 % later: the same level with the same time, so the same notice id.
        let s3 = next(&s2, usage(86), 100, &LEVELS, 30);
        assert_eq!(levels_to_tell(&s3), vec![(80, 20)]);
        let s4 = next(&s3, usage(96), 100, &LEVELS, 40);
        assert_eq!(levels_to_tell(&s4), vec![(80, 20), (95, 40)]);
        let s5 = next(&s4, usage(101), 100, &LEVELS, 50);
        assert!(s5.full);
        assert_eq!(levels_to_tell(&s5), vec![(80, 20), (95, 40), (FULL, 50)]);
        // Exactly the quota is full.
        assert!(next(&s4, usage(100), 100, &LEVELS, 50).full);
        // Back below 80 %, then over again: a new time, a new notice.
        let s6 = next(&s5, usage(10), 100, &LEVELS, 60);
        assert!(!s6.full && s6.warned.is_empty());
        let s7 = next(&s6, usage(90), 100, &LEVELS, 70);
        assert_eq!(levels_to_tell(&s7), vec![(80, 70)]);
    }

    #[test]
    fn a_jump_gets_one_notice_for_the_highest_level() {
        let s = next(&State::default(), usage(150), 100, &LEVELS, 5);
        assert_eq!(levels_to_tell(&s), vec![(FULL, 5)]);
        let s = next(&State::default(), usage(97), 100, &LEVELS, 5);
        assert_eq!(levels_to_tell(&s), vec![(95, 5)]);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let s = next(&State::default(), usage(u64::MAX), 1, &LEVELS, 1);
        assert!(s.full);
        assert_eq!(s.percent(), u64::MAX);
    }
}
