//! The committed fuzz seeds and fixed mutants of them: the bounded, deterministic runs of
//! the differential fuzz targets that the normal suite makes every time.

use std::path::{Path, PathBuf};

/// Every seed of `fuzz/seeds/{target}` (sorted), each followed by `mutants` fixed mutants,
/// with the seed's path (for a failure's message).
pub fn cases(target: &str, mutants: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .expect("the seeds")
        .map(|e| e.expect("entry").path())
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 40, "{} seeds", seeds.len());
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut out = Vec::new();
    for path in seeds {
        let seed = std::fs::read(&path).expect("seed");
        for _ in 0..mutants {
            out.push((path.clone(), mutate(&seed, &mut state)));
        }
        out.push((path, seed));
    }
    out
}

/// A fixed mutant of `seed`: one byte replaced by or one inserted from the bytes framing
/// turns on, one deleted, or a short run repeated. Byte 0 is the read size: the bytes
/// after it are mutated.
fn mutate(seed: &[u8], state: &mut u64) -> Vec<u8> {
    const BYTES: &[u8] = b"\r\n \t,:0159+-\x00aA;HTTP/1.";
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let mut out = seed.to_vec();
    if out.len() < 2 {
        out.push(BYTES[next() as usize % BYTES.len()]);
        return out;
    }
    let at = 1 + next() as usize % (out.len() - 1);
    let byte = BYTES[next() as usize % BYTES.len()];
    match next() % 4 {
        0 => out[at] = byte,
        1 => out.insert(at, byte),
        2 => {
            out.remove(at);
        }
        _ => {
            let end = (at + 1 + next() as usize % 16).min(out.len());
            let run = out[at..end].to_vec();
            out.splice(at..at, run);
        }
    }
    out
}
