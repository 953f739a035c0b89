//! The soak's randomness: which conversation, which member, how long a session stays, which
//! webhook request fails. Drawn from the OS (`getrandom`) at the soak's modest rates; nothing in
//! the checks depends on it.

use std::time::Duration;

/// A uniformly random `u64` (0 if the OS has no randomness: the soak then loses variety, not
/// correctness).
pub(crate) fn random_u64() -> u64 {
    getrandom::u64().unwrap_or(0)
}

/// A uniformly random index below `n` (0 when `n` is 0).
pub(crate) fn random_below(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (random_u64() % n as u64) as usize
}

/// True with probability `p`.
pub(crate) fn random_chance(p: f64) -> bool {
    ((random_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
}

/// A random duration between `low` and `high`.
pub(crate) fn random_between(low: Duration, high: Duration) -> Duration {
    let span = high.saturating_sub(low).as_millis() as u64;
    low + Duration::from_millis(random_u64() % (span + 1))
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for chunk in bytes.chunks_mut(8) {
        let r = random_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    bytes
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_helpers_stay_in_range() {
        for _ in 0..100 {
            assert!(random_below(7) < 7);
            let d = random_between(Duration::from_secs(1), Duration::from_secs(2));
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
        }
        assert!(!random_chance(0.0));
        assert!(random_chance(1.0));
        assert_eq!(random_below(0), 0);
        assert_eq!(hex(&[0, 255]), "00ff");
    }
}
