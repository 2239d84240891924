//! Portal's numbers: decimal strings of unsigned integers, here at most 256 bits, held as 32
//! bytes big-endian.

use std::fmt;

use zeroize::Zeroizing;

/// Why a decimal string was refused. The text never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// The string is empty.
    Empty,
    /// A character other than the digits 0 to 9.
    NotDecimal,
    /// The value needs more than 256 bits.
    TooLarge,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "is empty",
            Self::NotDecimal => "is not a decimal string (digits 0-9 only)",
            Self::TooLarge => "is larger than 256 bits",
        })
    }
}

/// Parses a decimal string into 32 bytes, big-endian. The result and the working value are
/// wiped when dropped (the result may be a share).
pub fn parse_be32(text: &str) -> Result<Zeroizing<[u8; 32]>, DecimalError> {
    if text.is_empty() {
        return Err(DecimalError::Empty);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotDecimal);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for digit in text.bytes() {
        // out = out * 10 + digit, byte by byte from the least significant end.
        let mut carry = u16::from(digit - b'0');
        for byte in out.iter_mut().rev() {
            let v = u16::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        if carry != 0 {
            return Err(DecimalError::TooLarge);
        }
    }
    Ok(out)
}

/// Writes 32 big-endian bytes as a decimal string (public values, and test fixtures).
pub fn to_decimal(be: &[u8; 32]) -> String {
    let mut value = *be;
    let mut digits = Vec::new();
    while value.iter().any(|&b| b != 0) {
        // value = value / 10, keeping the remainder.
        let mut rem = 0u16;
        for byte in value.iter_mut() {
            let cur = (rem << 8) | u16::from(*byte);
            *byte = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(v: u128) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[16..].copy_from_slice(&v.to_be_bytes());
        out
    }

    #[test]
    fn parses_small_and_large_values() {
        assert_eq!(*parse_be32("0").unwrap(), [0u8; 32]);
        assert_eq!(*parse_be32("1").unwrap(), be(1));
        assert_eq!(*parse_be32("000255").unwrap(), be(255));
        assert_eq!(
            *parse_be32("340282366920938463463374607431768211455").unwrap(),
            be(u128::MAX)
        );
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(*parse_be32(max).unwrap(), [0xff; 32]);
    }

    #[test]
    fn refuses_empty_signs_spaces_and_overflow() {
        assert_eq!(parse_be32("").unwrap_err(), DecimalError::Empty);
        for bad in ["-1", "+1", " 1", "1 ", "0x10", "1e5", "1.0", "١"] {
            assert_eq!(
                parse_be32(bad).unwrap_err(),
                DecimalError::NotDecimal,
                "{bad}"
            );
        }
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert_eq!(parse_be32(over).unwrap_err(), DecimalError::TooLarge);
        assert_eq!(
            parse_be32(&"9".repeat(100)).unwrap_err(),
            DecimalError::TooLarge
        );
    }

    #[test]
    fn decimal_round_trips() {
        for s in [
            "0",
            "7",
            "1000000007",
            "95905857107301357381155516338362784207317010673073787675690511286760317802272",
        ] {
            assert_eq!(to_decimal(&parse_be32(s).unwrap()), s);
        }
    }
}
