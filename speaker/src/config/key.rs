//! The membership key: raw bytes, never printed.

/// Shortest accepted key, in bytes.
pub const MIN_KEY: usize = 16;

/// A shared membership key. Its bytes are compared as they are (a binary key, such as MetalLB's
/// Secret, keeps every bit), and its `Debug` shows only the length.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// The key a file or setting holds: its bytes, less ASCII whitespace at either end (the
    /// newline an editor or `echo` leaves). Refused, with the reason, if shorter than [`MIN_KEY`].
    pub fn from_bytes(raw: &[u8]) -> Result<Self, String> {
        let key = raw.trim_ascii();
        if key.len() < MIN_KEY {
            return Err(format!("{} bytes; at least {MIN_KEY} are needed", key.len()));
        }
        Ok(Self(key.to_vec()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(<{} bytes, hidden>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_keys_keep_every_byte() {
        let raw: Vec<u8> = (0..=255u8).rev().collect();
        let key = Key::from_bytes(&raw).unwrap();
        // 0x20 and 0x09-0x0d are ASCII whitespace; only the ends are trimmed (0x00 is not).
        assert_eq!(key.bytes(), &raw[..]);
        let text = Key::from_bytes(b"  0123456789abcdef\n").unwrap();
        assert_eq!(text.bytes(), b"0123456789abcdef");
        // Invalid UTF-8 is taken as it is, not replaced.
        let latin1 = Key::from_bytes(&[0xe9; 16]).unwrap();
        assert_eq!(latin1.bytes(), &[0xe9; 16]);
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(Key::from_bytes(b"short\n").unwrap_err(), "5 bytes; at least 16 are needed");
        assert_eq!(Key::from_bytes(b"   \n").unwrap_err(), "0 bytes; at least 16 are needed");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::from_bytes(b"0123456789abcdef-secret").unwrap();
        let shown = format!("{key:?} {:?}", Some(&key));
        assert!(!shown.contains("0123") && !shown.contains("48, 49"), "{shown}");
        assert!(shown.contains("23 bytes"), "{shown}");
    }
}
