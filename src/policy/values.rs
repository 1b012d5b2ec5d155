//! The value types of per-client policy, each validated when parsed: nothing that reaches a
//! template, the shadow file or a deletion has not been through one of these.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a client may do in its jail (internal-sftp's request lists, docs/policy.md).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// Everything (the jail group's block).
    #[default]
    ReadWrite,
    /// Listing and downloads only.
    ReadOnly,
    /// A drop box: uploads only, no listing, no download, no delete.
    UploadOnly,
    /// Downloads of files the client knows the name of: no listing, no writes.
    DownloadOnly,
}

impl Access {
    pub const ALL: [Access; 4] = [
        Access::ReadWrite,
        Access::ReadOnly,
        Access::UploadOnly,
        Access::DownloadOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadWrite => "rw",
            Access::ReadOnly => "read-only",
            Access::UploadOnly => "upload-only",
            Access::DownloadOnly => "download-only",
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Access::ReadWrite
    }
}

impl FromStr for Access {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Access> {
        Access::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "access: {s:?} is not an access mode; use rw, read-only, upload-only or download-only"
                )
            })
    }
}

/// An address or a network (`ADDR/LEN`, no host bits set) in sshd's syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Network {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    fn max_prefix(addr: IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }
}

impl FromStr for Network {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Network> {
        crate::config::check_address_or_network("allow_from", s)?;
        let (addr, prefix) = match s.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>()?, l.parse::<u8>()?),
            None => {
                let addr = s.parse::<IpAddr>()?;
                (addr, Network::max_prefix(addr))
            }
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == Network::max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// A calendar day (UTC), `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    /// Days since 1970-01-01.
    pub days: i64,
}

impl Day {
    pub fn today() -> Day {
        Day {
            days: crate::watch::time::now_unix().div_euclid(86_400),
        }
    }

    /// The first second after the end of this day (UTC).
    pub fn end_unix(self) -> i64 {
        (self.days + 1) * 86_400
    }
}

impl FromStr for Day {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Day> {
        let bad = || {
            anyhow::anyhow!(
                "expires: {s:?} is not a date; write YYYY-MM-DD, e.g. 2027-03-31, or \"never\""
            )
        };
        let parts: Vec<&str> = s.split('-').collect();
        if parts.len() != 3
            || parts[0].len() != 4
            || parts[1].len() != 2
            || parts[2].len() != 2
            || !s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        {
            return Err(bad());
        }
        let year: i64 = parts[0].parse().map_err(|_| bad())?;
        let month: i64 = parts[1].parse().map_err(|_| bad())?;
        let day: i64 = parts[2].parse().map_err(|_| bad())?;
        if year < 1970 {
            return Err(bad());
        }
        // None for 2027-02-30: not a date.
        let start = crate::tz::unix_of((year, month, day), (0, 0, 0), 0).ok_or_else(bad)?;
        Ok(Day {
            days: start.div_euclid(86_400),
        })
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match crate::tz::utc_date(self.days) {
            Some((y, m, d)) => write!(f, "{y:04}-{m:02}-{d:02}"),
            None => write!(f, "day {}", self.days),
        }
    }
}

/// A byte count written `5G`, `500M`, `1T`, `1048576` (K, M, G, T are powers of 1024;
/// KB, MB, GB, TB of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size {
    pub bytes: u64,
}

impl FromStr for Size {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Size> {
        let bad = || {
            anyhow::anyhow!(
                "quota: {s:?} is not a size; write e.g. \"5G\" (GiB), \"500M\", \"2T\" or \"none\""
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        if number.is_empty() || number.len() > 20 {
            return Err(bad());
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        let factor: u64 = match unit {
            "" | "B" => 1,
            "K" | "KiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        let bytes = n.checked_mul(factor).ok_or_else(bad)?;
        if bytes == 0 {
            bail!("quota: {s:?} is zero; use \"none\" for no quota, or a size such as \"5G\"");
        }
        Ok(Size { bytes })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [
            ("T", 1u64 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ] {
            if self.bytes >= factor && self.bytes % factor == 0 {
                return write!(f, "{}{unit}", self.bytes / factor);
            }
        }
        write!(f, "{}", self.bytes)
    }
}

/// How long files are kept: `90d`, `12w`, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Retention {
    Off,
    Days(u32),
}

impl Retention {
    pub fn days(self) -> Option<u32> {
        match self {
            Retention::Off => None,
            Retention::Days(d) => Some(d),
        }
    }
}

impl FromStr for Retention {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Retention> {
        if s == "off" {
            return Ok(Retention::Off);
        }
        let bad = || {
            anyhow::anyhow!(
                "retention: {s:?} is not a duration; write e.g. \"90d\" (days), \"12w\" (weeks) or \"off\""
            )
        };
        let (number, factor) = if let Some(n) = s.strip_suffix('d') {
            (n, 1)
        } else if let Some(n) = s.strip_suffix('w') {
            (n, 7)
        } else {
            return Err(bad());
        };
        if number.is_empty() || number.len() > 6 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let days = number.parse::<u32>().map_err(|_| bad())? * factor;
        if days == 0 {
            bail!(
                "retention: {s:?} would delete every file at once; use at least \"1d\", or \"off\""
            );
        }
        Ok(Retention::Days(days))
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Off => write!(f, "off"),
            Retention::Days(d) => write!(f, "{d}d"),
        }
    }
}

/// Serde through the text form, so the user file and USERS.toml say `"5G"`, `"90d"`.
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = Text::deserialize(d)?;
                text.0.parse().map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
            }
        }
    )*};
}
serde_as_text!(Access, Network, Size, Retention, Day);

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string, or a TOML date (`expires = 2027-03-31` unquoted) taken as its text.
#[derive(Debug)]
pub struct Text(pub String);

/// For an optional field that takes a string or a TOML date (`apply`'s `expires`).
pub fn text_or_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(Text::deserialize(d)?.0))
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Date(toml::value::Datetime),
        }
        Ok(Text(match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Date(dt) => {
                if dt.time.is_some() || dt.offset.is_some() {
                    return Err(serde::de::Error::custom(
                        "a date without a time is expected, e.g. 2027-03-31",
                    ));
                }
                dt.to_string()
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes_round_trip() {
        for a in Access::ALL {
            assert_eq!(a.as_str().parse::<Access>().unwrap(), a);
        }
        for bad in ["", "RW", "readonly", "rw\n", "read-only "] {
            assert!(bad.parse::<Access>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn networks() {
        let n: Network = "203.0.113.0/24".parse().unwrap();
        assert!(n.contains("203.0.113.9".parse().unwrap()));
        assert!(!n.contains("203.0.114.9".parse().unwrap()));
        assert_eq!(n.to_string(), "203.0.113.0/24");
        let one: Network = "127.0.0.2".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.2");
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("198.51.100.1".parse().unwrap()));
        for bad in [
            "",
            "203.0.113.5/24",
            "10.0.0.0/33",
            "a.b",
            "10.0.0.0/8,*",
            "10.0.0.1\n",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn days() {
        let d: Day = "2027-03-31".parse().unwrap();
        assert_eq!(d.to_string(), "2027-03-31");
        assert_eq!(
            Some(d.end_unix()),
            crate::tz::unix_of((2027, 4, 1), (0, 0, 0), 0)
        );
        for bad in [
            "2027-02-30",
            "2027-3-31",
            "31.03.2027",
            "2027-03-31T00:00",
            "",
            "0999-01-01",
        ] {
            assert!(bad.parse::<Day>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("5G".parse::<Size>().unwrap().bytes, 5 << 30);
        assert_eq!("5GB".parse::<Size>().unwrap().bytes, 5_000_000_000);
        assert_eq!("1024".parse::<Size>().unwrap().bytes, 1024);
        assert_eq!("5G".parse::<Size>().unwrap().to_string(), "5G");
        assert_eq!("1500".parse::<Size>().unwrap().to_string(), "1500");
        for bad in [
            "",
            "0",
            "G",
            "5 G",
            "5g",
            "-5G",
            "99999999999999999999T",
            "5G\n",
        ] {
            assert!(bad.parse::<Size>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retentions() {
        assert_eq!("90d".parse::<Retention>().unwrap(), Retention::Days(90));
        assert_eq!("2w".parse::<Retention>().unwrap(), Retention::Days(14));
        assert_eq!("off".parse::<Retention>().unwrap(), Retention::Off);
        for bad in ["", "0d", "90", "d", "3m", "-1d", "1.5d"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_dates_and_strings() {
        #[derive(Deserialize)]
        struct T {
            a: Day,
            b: Day,
        }
        let t: T = toml::from_str("a = 2027-03-31\nb = \"2027-04-01\"").unwrap();
        assert_eq!(t.a.to_string(), "2027-03-31");
        assert_eq!(t.b.to_string(), "2027-04-01");
        assert!(toml::from_str::<T>("a = 2027-03-31T10:00:00\nb = \"2027-04-01\"").is_err());
    }
}
