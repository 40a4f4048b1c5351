//! The duration syntax of the workspace's command-line tools (load, bench,
//! verify): one parser, so that `45s` means the same everywhere.

/// A duration given on the command line, in humantime's syntax, the one
/// every command-line tool of the workspace takes (`make load`, `make
/// bench`, `make verify`): a number and a unit, `500ms`, `45s`, `2m`, `1m 30s`, `1h`; a
/// bare number is refused (its unit would be a guess). Within `range`.
pub fn duration_within(
    value: &str,
    range: std::ops::RangeInclusive<std::time::Duration>,
) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration like 45s, 500ms or 2m: {e}"))?;
    if range.contains(&duration) {
        Ok(duration)
    } else {
        Err(format!(
            "{value:?} is out of range; allowed: {} to {}",
            humantime::format_duration(*range.start()),
            humantime::format_duration(*range.end())
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_take_humantime_syntax_within_bounds() {
        let any = Duration::ZERO..=Duration::from_secs(3600);
        assert_eq!(
            duration_within("60s", any.clone()),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            duration_within("500ms", any.clone()),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            duration_within("2m", any.clone()),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(
            duration_within("1m 30s", any.clone()),
            Ok(Duration::from_secs(90))
        );
        for bad in ["60", "2 fortnights", "", "soon"] {
            let e = duration_within(bad, any.clone()).unwrap_err();
            assert!(e.contains("like 45s, 500ms or 2m"), "{bad:?}: {e}");
        }
        let e = duration_within("2h", Duration::from_millis(1)..=Duration::from_secs(3600))
            .unwrap_err();
        assert_eq!(e, "\"2h\" is out of range; allowed: 1ms to 1h");
        assert!(duration_within("0s", Duration::from_millis(1)..=Duration::MAX).is_err());
    }
}
