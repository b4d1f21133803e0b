//! Request ids: made by wxgate (`<16 hex digits of process randomness>-<counter>`),
//! or a client's own when it is safe to log.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use http::HeaderValue;

/// The longest client-sent request id that is kept.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Makes request ids: `<16 hex digits of process randomness>-<counter in hex>`.
pub struct RequestIds {
    prefix: [u8; 16],
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let mut random = [0u8; 8];
        // Without the OS's randomness, the time still tells processes apart.
        if getrandom::fill(&mut random).is_err() {
            random = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes()[..8]
                .try_into()
                .expect("8 bytes");
        }
        let mut prefix = [0u8; 16];
        for (i, b) in random.iter().enumerate() {
            prefix[2 * i] = HEX[usize::from(b >> 4)];
            prefix[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl RequestIds {
    pub fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Relaxed);
        let mut buf = [0u8; 16 + 1 + 16];
        buf[..16].copy_from_slice(&self.prefix);
        buf[16] = b'-';
        let digits = (16 - n.leading_zeros() as usize / 4).max(1);
        for i in 0..digits {
            buf[17 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 15) as usize];
        }
        HeaderValue::from_bytes(&buf[..17 + digits]).expect("hex digits")
    }
}

/// Letters, digits and `-_.:+/=@`, 1 to [`MAX_REQUEST_ID_LEN`] of them:
/// UUIDs, hex and base64 ids pass; nothing that could break a log line does.
pub fn acceptable_id(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_acceptable() {
        let ids = RequestIds::default();
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(acceptable_id(&a), "{a:?}");
        assert!(a.to_str().unwrap().ends_with("-1"), "{a:?}");
        ids.next.store(u64::MAX, Relaxed);
        assert!(ids.next().to_str().unwrap().ends_with("-ffffffffffffffff"));
        assert_ne!(RequestIds::default().prefix, ids.prefix);
    }

    #[test]
    fn only_id_like_values_are_acceptable() {
        for ok in ["abc", "3f1c-0a", "dGVzdA==", "a.b:c_d+e/f@g"] {
            assert!(acceptable_id(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in ["", "a b", "a\"b", "x\ty", long.as_str()] {
            assert!(
                !acceptable_id(&HeaderValue::from_str(bad).unwrap()),
                "{bad:?}"
            );
        }
    }
}
