//! UTC calendar dates from Unix time, for SigV4's `x-amz-date` and the log timestamps
//! (no date crate needed for these two fixed formats).

/// The UTC calendar fields of a Unix time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// The calendar fields of `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn of_unix(secs: u64) -> Utc {
        let (days, rem) = (secs / 86_400, (secs % 86_400) as u32);
        let (year, month, day) = civil_from_days(days as i64);
        Utc {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }
}

/// Writes `v` into `out` as exactly `out.len()` decimal digits, zero-padded on the left
/// (digits beyond the width are dropped): the fixed-width fields of both formats.
pub fn put_digits(out: &mut [u8], mut v: u64) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (the classic
/// era-based days-to-civil conversion, exact for every date).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_map_to_their_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(15_849), (2013, 5, 24));
        assert_eq!(civil_from_days(20_453), (2025, 12, 31));
        assert_eq!(civil_from_days(47_482), (2100, 1, 1));
    }

    #[test]
    fn unix_times_split_into_their_fields_and_digits_pad() {
        let t = Utc::of_unix(951_782_400 + 86_399);
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
        assert_eq!((t.hour, t.minute, t.second), (23, 59, 59));
        let mut out = *b"......";
        put_digits(&mut out[1..5], 42);
        assert_eq!(&out, b".0042.");
    }
}
