//! RFC 3339 date-times, as the Notary Project signed attributes carry them.
//!
//! Contract: [`parse`] turns `2022-04-06T07:01:20Z` (any offset, optional
//! fractional seconds) into a [`SystemTime`] and rejects anything else;
//! [`Rfc3339`] prints a [`SystemTime`] back as UTC (`2022-04-06T07:01:20Z`)
//! for error messages. No clock is read here.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A signed attribute that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an RFC 3339 date-time")]
pub(crate) struct InvalidDateTime {
    pub(crate) value: String,
}

const SECS_PER_DAY: i64 = 86_400;

/// Parses an RFC 3339 `date-time`.
///
/// [RFC 3339 §5.6](https://datatracker.ietf.org/doc/html/rfc3339#section-5.6):
/// `date-time = full-date "T" full-time`, `full-time = partial-time time-offset`,
/// `time-offset = "Z" / time-numoffset`. The Notary Project signature spec says
/// the fractional second "SHOULD NOT be used", so it is accepted and truncated.
///
/// # Errors
/// [`InvalidDateTime`] naming the value, for anything that is not a date-time.
pub(crate) fn parse(value: &str) -> Result<SystemTime, InvalidDateTime> {
    parse_inner(value.as_bytes()).ok_or_else(|| InvalidDateTime {
        value: value.chars().take(64).collect(),
    })
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn byte_is(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at)? == &c).then_some(())
}

fn parse_inner(b: &[u8]) -> Option<SystemTime> {
    let year = digits(b, 0, 4)?;
    byte_is(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    byte_is(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10)?, b'T' | b't') {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    byte_is(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    byte_is(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        if at == start {
            return None;
        }
    }
    let offset_secs = match b.get(at)? {
        b'Z' | b'z' => {
            at += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let oh = digits(b, at + 1, 2)?;
            byte_is(b, at + 3, b':')?;
            let om = digits(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            at += 6;
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    if at != b.len() {
        return None;
    }
    // Leap second 60 is allowed by RFC 3339; it is folded into the next second.
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * SECS_PER_DAY + hour * 3600 + minute * 60 + second - offset_secs;
    from_unix(secs)
}

fn from_unix(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic
// Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Displays a [`SystemTime`] as an RFC 3339 UTC date-time, whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rfc3339(pub(crate) SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs: i64 = match self.0.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => {
                let d = e.duration();
                // Round towards the past so a sub-second instant before the
                // epoch prints as the whole second it falls in.
                let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() > 0 {
                    -whole - 1
                } else {
                    -whole
                }
            }
        };
        let days = secs.div_euclid(SECS_PER_DAY);
        let rem = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        let z = parse("2023-03-14T08:10:02Z").unwrap();
        let off = parse("2023-03-14T16:10:02+08:00").unwrap();
        assert_eq!(z, off);
        assert_eq!(Rfc3339(z).to_string(), "2023-03-14T08:10:02Z");
        assert_eq!(
            z.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_678_781_402
        );
        assert_eq!(
            Rfc3339(parse("2120-11-09T07:00:00.123Z").unwrap()).to_string(),
            "2120-11-09T07:00:00Z"
        );
        assert_eq!(
            Rfc3339(parse("1969-12-31T23:59:59Z").unwrap()).to_string(),
            "1969-12-31T23:59:59Z"
        );
        assert!(parse("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn rejects_non_rfc3339() {
        for bad in [
            "",
            "2023-03-14",
            "2023-03-14 08:10:02Z",
            "2023-03-14T08:10:02",
            "2023-02-30T08:10:02Z",
            "2023-03-14T08:10:02.Z",
            "2023-03-14T08:10:02+0800",
            "2023-03-14T24:00:00Z",
            "2023-03-14T08:10:02Zjunk",
            "２023-03-14T08:10:02Z",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn display_round_trips(secs in -62_135_596_800i64..253_402_300_799i64) {
            let t = from_unix(secs).unwrap();
            let shown = Rfc3339(t).to_string();
            proptest::prop_assert_eq!(parse(&shown).unwrap(), t);
        }
    }
}
