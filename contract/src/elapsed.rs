//! How a duration is written as milliseconds: the answers' `elapsed_ms`,
//! and the front-end's own timings shown beside it.

use std::time::Duration;

/// `d` in milliseconds, rounded to the nearest microsecond (half a
/// microsecond rounds up): three decimals at most, `1.235` for 1,234,500 ns.
/// Integer arithmetic, so the rounding is exact.
pub fn millis(d: Duration) -> f64 {
    let micros = (d.as_nanos() + 500) / 1000;
    micros as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_rounded_to_the_microsecond() {
        assert_eq!(millis(Duration::ZERO), 0.0);
        assert_eq!(millis(Duration::from_nanos(1_234_499)), 1.234);
        assert_eq!(millis(Duration::from_nanos(1_234_500)), 1.235);
        assert_eq!(millis(Duration::from_nanos(499)), 0.0);
        assert_eq!(millis(Duration::from_nanos(500)), 0.001);
        assert_eq!(millis(Duration::from_millis(3000)), 3000.0);
        assert_eq!(millis(Duration::from_secs_f64(0.0125)), 12.5);
    }
}
