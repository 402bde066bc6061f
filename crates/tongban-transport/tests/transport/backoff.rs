//! Properties of the backoff schedule.

use std::time::Duration;

use proptest::prelude::*;
use tongban_transport::{Backoff, BackoffConfig};

fn config(base_ms: u64, cap_ms: u64, jitter: f64) -> BackoffConfig {
    BackoffConfig::new(
        Duration::from_millis(base_ms),
        Duration::from_millis(cap_ms),
    )
    .with_jitter(jitter)
}

proptest! {
    #[test]
    fn ceilings_are_monotone_and_capped(base_ms in 1u64..10_000, cap_ms in 1u64..600_000, n in 0u32..200) {
        let backoff = Backoff::new(config(base_ms, cap_ms, 0.5), 0);
        let cap = Duration::from_millis(cap_ms);
        let mut previous = Duration::ZERO;
        for attempt in 0..n {
            let ceiling = backoff.ceiling(attempt);
            prop_assert!(ceiling >= previous, "ceiling went down at attempt {attempt}");
            prop_assert!(ceiling <= cap);
            prop_assert!(ceiling >= Duration::from_millis(base_ms.min(cap_ms)));
            previous = ceiling;
        }
        // Far enough out, the cap is reached.
        prop_assert_eq!(backoff.ceiling(64), cap);
    }

    #[test]
    fn jittered_delays_stay_within_their_bounds(
        base_ms in 1u64..10_000,
        cap_ms in 1u64..600_000,
        jitter in 0.0f64..=1.0,
        seed in any::<u64>(),
        n in 1usize..100,
    ) {
        let mut backoff = Backoff::new(config(base_ms, cap_ms, jitter), seed);
        for attempt in 0..n as u32 {
            let ceiling = backoff.ceiling(attempt);
            let delay = backoff.next_delay();
            let floor = ceiling.as_secs_f64() * (1.0 - jitter);
            prop_assert!(delay <= ceiling, "{delay:?} above {ceiling:?}");
            prop_assert!(delay.as_secs_f64() >= floor - 1e-9, "{delay:?} below {floor}");
        }
        prop_assert_eq!(backoff.attempt(), n as u32);
    }

    #[test]
    fn same_seed_same_schedule_and_reset_restarts(seed in any::<u64>(), n in 1usize..50) {
        let mut a = Backoff::new(BackoffConfig::default(), seed);
        let mut b = Backoff::new(BackoffConfig::default(), seed);
        let first: Vec<Duration> = (0..n).map(|_| a.next_delay()).collect();
        let second: Vec<Duration> = (0..n).map(|_| b.next_delay()).collect();
        prop_assert_eq!(&first, &second);
        a.reset();
        prop_assert_eq!(a.attempt(), 0);
        prop_assert!(a.next_delay() <= BackoffConfig::default().base);
    }
}

#[test]
fn jitter_spreads_delays() {
    // With equal jitter, a hundred nodes cut off together do not retry together.
    let delays: std::collections::BTreeSet<Duration> = (0..100u64)
        .map(|seed| Backoff::new(BackoffConfig::default(), seed).next_delay())
        .collect();
    assert!(delays.len() > 90, "{} distinct delays", delays.len());
    assert!(
        delays
            .iter()
            .all(|d| *d >= Duration::from_millis(250) && *d <= Duration::from_millis(500))
    );
}

#[test]
fn out_of_range_jitter_is_clamped() {
    let backoff = Backoff::new(config(100, 1000, 7.0), 0);
    assert_eq!(backoff.config().jitter, 1.0);
    let backoff = Backoff::new(config(100, 1000, f64::NAN), 0);
    assert_eq!(backoff.config().jitter, 0.0);
}
