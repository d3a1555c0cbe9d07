//! GOST's `metadata: map[string]any` with its typed, case-insensitive accessors
//! (config.md §1.3).

use std::fmt;
use std::time::Duration;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::flags::parse_go_bool;

/// One metadata value as written in YAML / JSON (CLI values are always strings).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `null` / `~`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    List(Vec<MetaValue>),
    /// A nested mapping (keys kept as written).
    Map(Vec<(String, MetaValue)>),
}

impl Serialize for MetaValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MetaValue::Null => s.serialize_unit(),
            MetaValue::Bool(b) => s.serialize_bool(*b),
            MetaValue::Int(i) => s.serialize_i64(*i),
            MetaValue::Float(f) => s.serialize_f64(*f),
            MetaValue::Str(v) => s.serialize_str(v),
            MetaValue::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            MetaValue::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Str(s) => write!(f, "{s:?}"),
            other => write!(
                f,
                "{}",
                serde_json::to_string(other).unwrap_or_else(|_| "?".into())
            ),
        }
    }
}

/// A metadata entry: key as written, value, and the source line (0 = unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaEntry {
    /// The key as written.
    pub key: String,
    /// The value.
    pub value: MetaValue,
    /// 1-based source line, 0 when unknown (CLI, JSON).
    pub line: u32,
}

/// An ordered metadata map with case-insensitive lookup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// The entries in source order.
    pub entries: Vec<MetaEntry>,
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for e in &self.entries {
            map.serialize_entry(&e.key, &e.value)?;
        }
        map.end()
    }
}

/// A metadata value that has the wrong type or form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaError {
    /// The key as written in the source.
    pub key: String,
    /// 1-based source line, 0 when unknown.
    pub line: u32,
    /// What is wrong, e.g. `invalid duration "abc"`.
    pub message: String,
}

impl Metadata {
    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Set `key` (replacing a case-insensitively equal key) to a string value.
    pub fn set_str(&mut self, key: &str, value: &str) {
        self.entries.retain(|e| !e.key.eq_ignore_ascii_case(key));
        self.entries.push(MetaEntry {
            key: key.to_string(),
            value: MetaValue::Str(value.to_string()),
            line: 0,
        });
    }

    /// The entry for `key`, compared case-insensitively; the first match wins.
    pub fn get(&self, key: &str) -> Option<&MetaEntry> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// The first of `keys` that is present (GOST's "first spelling wins").
    pub fn first(&self, keys: &[&str]) -> Option<&MetaEntry> {
        keys.iter().find_map(|k| self.get(k))
    }

    /// A bool: YAML bool, int (non-zero = true) or Go `strconv.ParseBool` spellings.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, MetaError> {
        self.get(key).map(entry_bool).transpose()
    }

    /// A duration: int = seconds, Go duration string (`1m30s`), or integer string = seconds.
    /// Negative durations are returned as zero.
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>, MetaError> {
        self.get(key).map(entry_duration).transpose()
    }

    /// An integer: YAML int or decimal string.
    pub fn get_int(&self, key: &str) -> Result<Option<i64>, MetaError> {
        self.get(key).map(entry_int).transpose()
    }

    /// A string: strings as they are, other scalars formatted.
    pub fn get_string(&self, key: &str) -> Result<Option<String>, MetaError> {
        self.get(key).map(entry_string).transpose()
    }
}

fn err(e: &MetaEntry, message: String) -> MetaError {
    MetaError {
        key: e.key.clone(),
        line: e.line,
        message,
    }
}

/// Interpret an entry as a bool (see [`Metadata::get_bool`]).
pub fn entry_bool(e: &MetaEntry) -> Result<bool, MetaError> {
    match &e.value {
        MetaValue::Bool(b) => Ok(*b),
        MetaValue::Int(i) => Ok(*i != 0),
        MetaValue::Str(s) => {
            parse_go_bool(s.trim()).ok_or_else(|| err(e, format!("invalid bool {s:?}")))
        }
        v => Err(err(e, format!("invalid bool {v}"))),
    }
}

/// Interpret an entry as an integer (see [`Metadata::get_int`]).
pub fn entry_int(e: &MetaEntry) -> Result<i64, MetaError> {
    match &e.value {
        MetaValue::Int(i) => Ok(*i),
        MetaValue::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| err(e, format!("invalid integer {s:?}"))),
        v => Err(err(e, format!("invalid integer {v}"))),
    }
}

/// Interpret an entry as a duration (see [`Metadata::get_duration`]).
pub fn entry_duration(e: &MetaEntry) -> Result<Duration, MetaError> {
    match &e.value {
        MetaValue::Int(i) => Ok(Duration::from_secs((*i).max(0) as u64)),
        MetaValue::Str(s) => {
            let t = s.trim();
            if let Ok(secs) = t.parse::<i64>() {
                return Ok(Duration::from_secs(secs.max(0) as u64));
            }
            parse_go_duration(t).ok_or_else(|| err(e, format!("invalid duration {s:?}")))
        }
        v => Err(err(e, format!("invalid duration {v}"))),
    }
}

/// Interpret an entry as a string (see [`Metadata::get_string`]).
pub fn entry_string(e: &MetaEntry) -> Result<String, MetaError> {
    match &e.value {
        MetaValue::Str(s) => Ok(s.clone()),
        MetaValue::Bool(b) => Ok(b.to_string()),
        MetaValue::Int(i) => Ok(i.to_string()),
        MetaValue::Float(f) => Ok(f.to_string()),
        v => Err(err(e, format!("invalid string {v}"))),
    }
}

/// Parse a Go `time.ParseDuration` string (`15s`, `1m30s`, `1.5h`, `500ms`, `-1s`).
/// Negative values clamp to zero; `None` on syntax errors or overflow.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * nanos_per;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    if neg {
        return Some(Duration::ZERO);
    }
    Some(Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, MetaValue)]) -> Metadata {
        Metadata {
            entries: pairs
                .iter()
                .map(|(k, v)| MetaEntry {
                    key: k.to_string(),
                    value: v.clone(),
                    line: 3,
                })
                .collect(),
        }
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s);
        assert_eq!(d("15s"), Some(Duration::from_secs(15)));
        assert_eq!(d("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(d("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(d("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(d("2us"), Some(Duration::from_micros(2)));
        assert_eq!(d("-3s"), Some(Duration::ZERO));
        assert_eq!(d("0"), Some(Duration::ZERO));
        for bad in ["", "abc", "15", "1x", "s", ".s", "1..2s", "-"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn accessors_case_insensitive() {
        let m = md(&[
            ("noDelay", MetaValue::Str("T".into())),
            ("readTimeout", MetaValue::Int(30)),
            ("ttl", MetaValue::Str("10".into())),
            ("dt", MetaValue::Str("1m".into())),
            ("n", MetaValue::Str("42".into())),
            ("b", MetaValue::Int(2)),
            ("bad", MetaValue::Str("abc".into())),
        ]);
        assert_eq!(m.get_bool("NODELAY"), Ok(Some(true)));
        assert_eq!(m.get_bool("b"), Ok(Some(true)));
        assert_eq!(m.get_bool("missing"), Ok(None));
        assert_eq!(
            m.get_duration("readtimeout"),
            Ok(Some(Duration::from_secs(30)))
        );
        assert_eq!(m.get_duration("ttl"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(m.get_duration("dt"), Ok(Some(Duration::from_secs(60))));
        assert_eq!(m.get_int("n"), Ok(Some(42)));
        assert_eq!(m.get_string("b"), Ok(Some("2".into())));
        let e = m.get_duration("bad").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (3, "invalid duration \"abc\"")
        );
        assert!(m.get_bool("bad").is_err());
        assert!(m.get_int("bad").is_err());
    }

    #[test]
    fn go_bool_spellings() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Some(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Some(false));
        }
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_go_bool("tRUE"), None);
    }
}
