//! Times as people and admin APIs write them: RFC 3339 in UTC to and from Unix seconds,
//! and the short forms the CLI accepts for `--since` (`90s`, `15m`, `24h`, `7d`, a date).
//!
//! Pure functions; the caller passes `now`. The calendar arithmetic is the proleptic
//! Gregorian day count (days since 1970-01-01), exact for every date from year 1 on.

/// `2024-05-01T12:00:00Z` for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (a space may stand for `T`) or a
/// bare `YYYY-MM-DD` (midnight UTC). Times before 1970 are refused.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = text.trim();
    let date = t.get(..10)?;
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if date.as_bytes().get(4) != Some(&b'-') || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    if d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let rest = &t[10..];
    let secs_of_day: i64 = if rest.is_empty() {
        0
    } else {
        let rest = rest.strip_prefix(['T', 't', ' '])?;
        let hh: i64 = rest.get(0..2)?.parse().ok()?;
        let mm: i64 = rest.get(3..5)?.parse().ok()?;
        let ss: i64 = rest.get(6..8)?.parse().ok()?;
        if rest.get(2..3) != Some(":") || rest.get(5..6) != Some(":") {
            return None;
        }
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let mut zone = &rest[8..];
        if let Some(frac) = zone.strip_prefix('.') {
            let digits = frac.chars().take_while(char::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            zone = &frac[digits..];
        }
        let offset: i64 = match zone {
            "Z" | "z" => 0,
            _ => {
                let sign = match zone.get(0..1)? {
                    "+" => 1,
                    "-" => -1,
                    _ => return None,
                };
                let oh: i64 = zone.get(1..3)?.parse().ok()?;
                let om: i64 = zone.get(4..6)?.parse().ok()?;
                if zone.len() != 6 || zone.get(3..4) != Some(":") {
                    return None;
                }
                sign * (oh * 3600 + om * 60)
            }
        };
        hh * 3600 + mm * 60 + ss - offset
    };
    u64::try_from(days * 86_400 + secs_of_day).ok()
}

/// `90s`, `15m`, `24h`, `7d`, `2w` as seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let unit = t.chars().last()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let n: u64 = t[..t.len() - 1].parse().ok()?;
    n.checked_mul(factor)
}

/// A point in time as the admin API and the CLI accept it: Unix seconds, RFC 3339, a
/// date, or a duration meaning that long before `now`.
pub fn parse_time(text: &str, now: u64) -> Option<u64> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    if let Some(d) = parse_duration(t) {
        return Some(now.saturating_sub(d));
    }
    parse_rfc3339(t)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.250+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2001-02-29"), None);
        assert_eq!(parse_rfc3339("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20"),
            None,
            "a zone is required"
        );
    }

    #[test]
    fn every_day_round_trips() {
        for day in (0..80_000u64).step_by(13) {
            let secs = day * 86_400 + 4_321;
            assert_eq!(
                parse_rfc3339(&rfc3339(secs)),
                Some(secs),
                "{}",
                rfc3339(secs)
            );
        }
    }

    #[test]
    fn durations_and_relative_times() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("7x"), None);
        assert_eq!(parse_time("1700000000", 5), Some(1_700_000_000));
        assert_eq!(parse_time("1h", 10_000), Some(6_400));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", 0), Some(1_700_000_000));
        assert_eq!(parse_time("yesterday", 0), None);
    }
}
