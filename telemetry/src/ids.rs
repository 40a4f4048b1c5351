//! Trace and span ids as text: 32 and 16 lower-case hex digits, as W3C
//! Trace Context, B3 and Zipkin write them.
//!
//! Written here rather than with `{:032x}`: formatting a `u128` through
//! `core::fmt`'s padded integers is costly, and each request writes its
//! ids several times (every log line, the `traceresponse` header, the root
//! span's `trace_id`, business-logic's answer). Measured:
//! `docs/instrumentation-cost.md, "Figures behind code comments"`.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// An id as hex text, kept on the stack: `N` digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId<const N: usize>([u8; N]);

/// A trace id's 32 digits.
pub fn trace_hex(id: TraceId) -> HexId<32> {
    HexId::encode(id.to_bytes())
}

/// A span id's 16 digits.
pub fn span_hex(id: SpanId) -> HexId<16> {
    HexId::encode(id.to_bytes())
}

/// Trace flags' 2 digits.
pub fn flags_hex(flags: TraceFlags) -> HexId<2> {
    HexId::encode([flags.to_u8()])
}

impl<const N: usize> HexId<N> {
    /// `bytes` must be `N / 2` long; the constructors above see to it.
    fn encode<const B: usize>(bytes: [u8; B]) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [b'0'; N];
        for (pair, byte) in digits.chunks_exact_mut(2).zip(bytes) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        Self(digits)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_the_opentelemetry_types_format_them() {
        for trace in [
            0u128,
            1,
            0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
            u128::MAX,
            0x00ff_0000_0000_0000_0000_0000_0000_0a00,
        ] {
            let id = TraceId::from(trace);
            assert_eq!(trace_hex(id).as_str(), format!("{id}"));
            assert_eq!(trace_hex(id).as_str(), format!("{trace:032x}"));
        }
        for span in [0u64, 1, 0xb7ad_6b71_6920_3331, u64::MAX, 0x0f00] {
            let id = SpanId::from(span);
            assert_eq!(span_hex(id).as_str(), format!("{id}"));
            assert_eq!(span_hex(id).to_string(), format!("{span:016x}"));
        }
        for flags in [0u8, 1, 2, 3, 0xff] {
            assert_eq!(
                flags_hex(TraceFlags::new(flags)).as_str(),
                format!("{flags:02x}")
            );
        }
    }
}
