//! Wall-clock times as the admin API shows them: RFC 3339 in UTC with
//! milliseconds, from the host's Unix time in milliseconds.

/// `2026-11-26T19:04:05.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        unix_ms % 1000
    )
}

/// Parses what `rfc3339` writes, and the same without milliseconds
/// (`2027-03-31T00:00:00Z`). UTC only (`Z`): an offset is refused rather than
/// guessed.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not an instant like \"2027-03-31T00:00:00Z\" (UTC, with Z)");
    let text = text.trim();
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .ok_or_else(bad)?;
    let (date, time) = body.split_once(['T', 't']).ok_or_else(bad)?;
    let (time, millis) = match time.split_once('.') {
        Some((time, fraction)) if (1..=3).contains(&fraction.len()) && fraction.bytes().all(|b| b.is_ascii_digit()) => {
            (time, format!("{fraction:0<3}").parse::<u64>().map_err(|_| bad())?)
        }
        Some(_) => return Err(bad()),
        None => (time, 0),
    };
    let number = |part: &str, digits: usize| -> Result<u64, String> {
        if part.len() != digits || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let date: Vec<&str> = date.split('-').collect();
    let time: Vec<&str> = time.split(':').collect();
    let ([year, month, day], [hour, minute, second]) = (date.as_slice(), time.as_slice()) else {
        return Err(bad());
    };
    let (year, month, day) = (number(year, 4)?, number(month, 2)?, number(day, 2)?);
    let (hour, minute, second) = (number(hour, 2)?, number(minute, 2)?, number(second, 2)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || hour > 23 || minute > 59 || second > 59 {
        return Err(bad());
    }
    let days = days_from_civil(year as i64, month as u32, day as u32);
    // A day past the month's end would roll over: refuse it.
    if day == 0 || civil_from_days(days) != (year as i64, month as u32, day as u32) {
        return Err(bad());
    }
    Ok((days as u64 * 86_400 + hour * 3600 + minute * 60 + second) * 1000 + millis)
}

/// `90d`, `12h`, `30m`, `45s`: a whole number and one unit; in milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration like \"90d\", \"12h\", \"30m\" or \"45s\"");
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let number = text.get(..text.len() - 1).ok_or_else(bad)?;
    if number.is_empty() || number.len() > 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let amount: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        'd' => 86_400_000,
        'h' => 3_600_000,
        'm' => 60_000,
        's' => 1000,
        _ => return Err(bad()),
    };
    Ok(amount * unit_ms)
}

/// A proleptic Gregorian date to days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let day_of_year = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_parse_back() {
        for ms in [0, 1_795_719_845_123, 1_804_464_000_000, 951_782_400_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Ok(ms));
        }
        assert_eq!(parse_rfc3339("2027-03-31T00:00:00Z"), Ok(1_806_451_200_000));
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00.5Z"), Ok(951_825_600_500));
        for bad in [
            "2027-02-29T00:00:00Z",
            "2027-03-31T00:00:00+02:00",
            "2027-03-31 00:00:00Z",
            "2027-13-01T00:00:00Z",
            "2027-03-31T24:00:00Z",
            "27-03-31T00:00:00Z",
            "2027-03-31T00:00:00.1234Z",
            "",
            "tomorrow",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_duration(" 12h "), Ok(12 * 3_600_000));
        assert_eq!(parse_duration("2s"), Ok(2000));
        for bad in ["", "d", "-1d", "1.5d", "10w", "1234567890d", "９d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @1795719845` -> Thu Nov 26 19:04:05 UTC 2026
        assert_eq!(rfc3339(1_795_719_845_123), "2026-11-26T19:04:05.123Z");
        // A leap day and the turn of a century.
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }
}
