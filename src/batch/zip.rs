//! One ZIP of `{tracking}.pdf` files, written entry by entry. Entries are *stored* (method
//! 0): PDFs are compressed already, and a stored entry lets the label's bytes go out as they
//! are (the same `Bytes` the cache holds, no copy). What stays until the end is one small
//! record per entry for the central directory.
//!
//! Hand-written rather than the `zip` crate: every label is whole in memory before its
//! entry starts, so its CRC-32 and size go in the local header and no data descriptor or
//! seeking is needed; the crate's writers want `Write + Seek` (or write data descriptors)
//! and copy every byte through a synchronous writer. ZIP64 is not written: a batch stops
//! with an error before it would pass 4 GiB or 65,535 entries (a batch is at most
//! `[batch] max_labels` labels).

use bytes::Bytes;

/// Why the ZIP cannot take another entry.
#[derive(Debug, thiserror::Error)]
#[error("the ZIP would pass the 4 GiB or 65,535-entry limit of a ZIP without ZIP64")]
pub struct TooLarge;

/// One entry, remembered for the central directory.
#[derive(Debug)]
struct Entry {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

/// The ZIP's state between entries.
#[derive(Debug)]
pub struct ZipWriter {
    entries: Vec<Entry>,
    written: u64,
    /// MS-DOS time and date of every entry (the batch's start, UTC).
    dos_time: u16,
    dos_date: u16,
}

/// General purpose flag bit 11: names are UTF-8.
const UTF8_NAMES: u16 = 1 << 11;
/// Version needed to extract: 2.0 (the oldest that any reader supports).
const VERSION: u16 = 20;

impl ZipWriter {
    /// A ZIP whose entries are dated `now`.
    pub fn new(now: std::time::SystemTime) -> ZipWriter {
        let (dos_time, dos_date) = dos_datetime(now);
        ZipWriter {
            entries: Vec::new(),
            written: 0,
            dos_time,
            dos_date,
        }
    }

    /// The local header of the entry `name` holding `data`. Send it, then `data` itself.
    pub fn add(&mut self, name: &str, data: &Bytes) -> Result<Vec<u8>, TooLarge> {
        let offset = u32::try_from(self.written).map_err(|_| TooLarge)?;
        let size = u32::try_from(data.len()).map_err(|_| TooLarge)?;
        let end = self.written + 30 + name.len() as u64 + u64::from(size);
        // The central directory must start below 4 GiB too.
        if end > u64::from(u32::MAX) || self.entries.len() >= usize::from(u16::MAX) {
            return Err(TooLarge);
        }
        let crc = crc32fast::hash(data);
        let mut h = Vec::with_capacity(30 + name.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&UTF8_NAMES.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&size.to_le_bytes()); // compressed size
        h.extend_from_slice(&size.to_le_bytes()); // uncompressed size
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        h.extend_from_slice(name.as_bytes());
        self.written = end;
        self.entries.push(Entry {
            name: name.to_string(),
            crc,
            size,
            offset,
        });
        Ok(h)
    }

    /// The central directory and its end record.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            22 + self
                .entries
                .iter()
                .map(|e| 46 + e.name.len())
                .sum::<usize>(),
        );
        for e in &self.entries {
            out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            out.extend_from_slice(&VERSION.to_le_bytes()); // made by: MS-DOS, 2.0
            out.extend_from_slice(&VERSION.to_le_bytes());
            out.extend_from_slice(&UTF8_NAMES.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&self.dos_time.to_le_bytes());
            out.extend_from_slice(&self.dos_date.to_le_bytes());
            out.extend_from_slice(&e.crc.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
            out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(e.name.as_bytes());
        }
        let count = self.entries.len() as u16;
        let size = out.len() as u32;
        // `add` kept the directory's start below 4 GiB.
        let start = self.written as u32;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // this disk, the directory's disk
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        out
    }
}

/// MS-DOS time and date (2-second resolution, 1980 to 2107) of a UTC instant.
fn dos_datetime(t: std::time::SystemTime) -> (u16, u16) {
    use std::fmt::Write as _;
    // 1980-01-01 is the earliest a DOS date can say.
    let earliest = std::time::UNIX_EPOCH + std::time::Duration::from_secs(315_532_800);
    // humantime's `YYYY-MM-DDTHH:MM:SSZ`, through `fmt::Write`, which returns its refusal
    // of years past 9999 (`io::Write` panics): those get the latest date DOS can say.
    let mut text = String::with_capacity(20);
    let formatted = write!(
        text,
        "{}",
        humantime::format_rfc3339_seconds(t.max(earliest))
    );
    let text = match text.as_bytes().get(..19) {
        Some(text) if formatted.is_ok() => text,
        _ => return ((23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31),
    };
    let field = |at: std::ops::Range<usize>| {
        text[at]
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d.wrapping_sub(b'0')))
    };
    let time = (field(11..13) << 11) | (field(14..16) << 5) | (field(17..19) / 2);
    let year = field(0..4).saturating_sub(1980).min(127);
    let date = (year << 9) | (field(5..7) << 5) | field(8..10);
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dos_dates_follow_the_calendar() {
        // 2024-02-29 13:45:58 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_709_214_358);
        let (time, date) = dos_datetime(t);
        assert_eq!(date >> 9, 2024 - 1980);
        assert_eq!(date >> 5 & 0xf, 2);
        assert_eq!(date & 0x1f, 29);
        assert_eq!(time >> 11, 13);
        assert_eq!(time >> 5 & 0x3f, 45);
        assert_eq!((time & 0x1f) * 2, 58);
        assert_eq!(
            dos_datetime(UNIX_EPOCH).1,
            1 << 5 | 1,
            "clamped to 1980-01-01"
        );
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(
            dos_datetime(far).1 >> 9,
            127,
            "past 9999: the latest DOS date"
        );
    }

    #[test]
    fn entries_are_stored_with_their_crc_and_the_directory_points_at_them() {
        let mut z = ZipWriter::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let a = Bytes::from_static(b"%PDF-1.4 first");
        let b = Bytes::from_static(b"%PDF-1.4 second label");
        let mut out = z.add("A1.pdf", &a).unwrap();
        out.extend_from_slice(&a);
        let second_at = out.len();
        out.extend(z.add("B2.pdf", &b).unwrap());
        out.extend_from_slice(&b);
        out.extend(z.finish());

        let eocd = out.len() - 22;
        assert_eq!(&out[eocd..eocd + 4], b"PK\x05\x06");
        let u16_at = |i: usize| u16::from_le_bytes([out[i], out[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(out[i..i + 4].try_into().unwrap());
        assert_eq!(u16_at(eocd + 10), 2);
        let dir = u32_at(eocd + 16) as usize;
        assert_eq!(u32_at(eocd + 12) as usize, eocd - dir);
        // The second directory record points at the second local header.
        let second = dir + 46 + "A1.pdf".len();
        assert_eq!(&out[second..second + 4], b"PK\x01\x02");
        assert_eq!(u32_at(second + 42) as usize, second_at);
        assert_eq!(u32_at(second + 16), crc32fast::hash(&b));
        assert_eq!(&out[second_at + 30..second_at + 36], b"B2.pdf");
        assert_eq!(&out[second_at + 36..second_at + 36 + b.len()], &b[..]);
    }
}
