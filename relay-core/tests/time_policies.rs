//! Node selection, admission limits and rebind delays: the parts of the core that take time
//! as an argument, checked at chosen instants.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use relay_core::admission::{Admission, Limits, Refusal};
use relay_core::bind::{Rebind, RebindConfig};
use relay_core::select::{Selector, Strategy};

fn ip(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
}

#[test]
fn fifo_fails_over_and_recovers() {
    let t0 = Instant::now();
    let mut s = Selector::new(3, Strategy::Fifo, 2, Duration::from_secs(5));
    assert_eq!(s.select(t0), Some(0));
    s.mark_failed(0, t0);
    assert_eq!(s.select(t0), Some(0), "one failure is below max_fails 2");
    s.mark_failed(0, t0);
    assert_eq!(s.select(t0), Some(1));
    s.mark_failed(1, t0);
    s.mark_failed(1, t0);
    s.mark_failed(2, t0);
    s.mark_failed(2, t0);
    assert_eq!(s.select(t0), None, "all set aside");
    assert_eq!(s.select(t0 + Duration::from_secs(5)), Some(0));
    s.mark_ok(0);
    assert_eq!(s.select(t0), Some(0));
}

#[test]
fn random_stays_in_range_and_spreads() {
    let t0 = Instant::now();
    let mut s = Selector::new(4, Strategy::Random(42), 1, Duration::from_secs(1));
    let mut seen = [0; 4];
    for _ in 0..400 {
        seen[s.select(t0).unwrap()] += 1;
    }
    assert!(seen.iter().all(|&c| c > 40), "{seen:?}");
    assert_eq!(
        Selector::new(0, Strategy::RoundRobin, 1, Duration::ZERO).select(t0),
        None
    );
}

#[test]
fn rate_limit_per_source_with_window_reset() {
    let t0 = Instant::now();
    let mut adm = Admission::new(Limits {
        rate_per_source: 2,
        ..Limits::default()
    });
    assert!(adm.admit(ip(1), t0).is_ok());
    assert!(adm.admit(ip(1), t0).is_ok());
    assert_eq!(adm.admit(ip(1), t0), Err(Refusal::RateLimited));
    assert!(adm.admit(ip(2), t0).is_ok(), "other sources unaffected");
    assert!(
        adm.admit(ip(1), t0 + Duration::from_secs(1)).is_ok(),
        "new window"
    );
    assert_eq!(adm.stats().rate_limited, 1);
}

#[test]
fn source_table_is_bounded() {
    let t0 = Instant::now();
    let mut adm = Admission::new(Limits {
        rate_per_source: 10,
        max_sources: 2,
        ..Limits::default()
    });
    assert!(adm.admit(ip(1), t0).is_ok());
    assert!(adm.admit(ip(2), t0).is_ok());
    assert_eq!(adm.admit(ip(3), t0), Err(Refusal::RateLimited));
    assert!(
        adm.admit(ip(3), t0 + Duration::from_secs(2)).is_ok(),
        "stale entries dropped"
    );
    assert!(adm.stats().sources <= 2);
}

#[test]
fn many_half_open_handshakes_never_lock_out_a_prompt_client() {
    let t0 = Instant::now();
    let mut adm = Admission::new(Limits::default());
    let mut open: BTreeSet<u64> = BTreeSet::new();
    for _ in 0..5000 {
        let a = adm.admit(ip(1), t0).unwrap();
        if let Some(e) = a.evict {
            open.remove(&e);
            adm.closed(e);
        }
        open.insert(a.id);
    }
    assert_eq!(adm.stats().handshakes, 1024);
    assert_eq!(adm.stats().evicted_handshakes, 5000 - 1024);
    let good = adm.admit(ip(2), t0).unwrap();
    adm.handshake_done(good.id);
    assert_eq!(adm.stats().connections, 1025);
}

#[test]
fn rebind_caps_and_short_sessions_continue() {
    let s = Duration::from_secs;
    let t = Instant::now();
    let mut r = Rebind::new(RebindConfig::default());
    let got: Vec<_> = (0..7).map(|_| r.bind_failed(t)).collect();
    assert_eq!(got, [s(1), s(2), s(4), s(8), s(16), s(30), s(30)]);
    r.established(t);
    assert_eq!(r.session_ended(t + s(1)), s(30)); // died young: no reset
    r.established(t);
    assert_eq!(r.session_ended(t + s(10)), s(1));
    assert_eq!(r.bind_failed(t), s(2));
}
