//! The pieces of seamless-core's eviction policy (§4 of the spec): an injectable clock, decaying
//! temprefs with their replacement rule, and the `cost × interest ÷ size_GB` score that orders
//! eviction (lowest first).

use std::sync::Mutex;
use std::time::Instant;

use super::GIB;
use crate::checksum::Checksum;

/// Interest below which a tempref lapses (seamless-core's `TEMPREF_MINIMAL_INTEREST`).
pub const TEMPREF_MINIMAL_INTEREST: f64 = 1.0 / 128.0;

/// Seconds since some fixed origin. Injectable so decay and eviction are tested without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> f64;
}

/// Wall time: seconds since the clock was made (monotonic).
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
}

/// A clock that moves only when told to (for tests and simulations).
#[derive(Default)]
pub struct ManualClock {
    now: Mutex<f64>,
}

impl ManualClock {
    pub fn advance(&self, seconds: f64) {
        *self.now.lock().expect("clock lock") += seconds;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        *self.now.lock().expect("clock lock")
    }
}

/// How much a tempref is worth and how fast that fades.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TemprefParams {
    pub interest: f64,
    pub fade_factor: f64,
    /// Seconds per division by `fade_factor`.
    pub fade_interval: f64,
}

impl Default for TemprefParams {
    /// seamless-core's defaults: 128, halving every 2 s (lapses after 28 s).
    fn default() -> Self {
        TemprefParams {
            interest: 128.0,
            fade_factor: 2.0,
            fade_interval: 2.0,
        }
    }
}

/// A decaying reference: at most one per checksum.
#[derive(Clone, Copy, Debug)]
pub struct Tempref {
    params: TemprefParams,
    last_refreshed: f64,
}

impl Tempref {
    pub fn new(params: TemprefParams, now: f64) -> Self {
        Tempref {
            params,
            last_refreshed: now,
        }
    }

    /// `interest / fade_factor ^ (elapsed / fade_interval)`; undecayed if no time passed or the
    /// interval is not positive.
    pub fn current_interest(&self, now: f64) -> f64 {
        let elapsed = now - self.last_refreshed;
        let p = &self.params;
        if elapsed <= 0.0 || p.fade_interval <= 0.0 {
            return p.interest;
        }
        p.interest / p.fade_factor.powf(elapsed / p.fade_interval)
    }

    /// seamless-core's rule for a second tempref on the same checksum, kept as is: take the new
    /// parameters when `interest > old.interest` or `fade_factor / fade_interval` is larger than
    /// the old one; in every case restart the fade now.
    pub fn renew(&mut self, new: TemprefParams, now: f64) {
        let old = self.params;
        let rate = |p: &TemprefParams| p.fade_factor / p.fade_interval;
        if new.interest > old.interest || rate(&new) > rate(&old) {
            self.params = new;
        }
        self.last_refreshed = now;
    }

    pub fn lapsed(&self, now: f64) -> bool {
        self.current_interest(now) < TEMPREF_MINIMAL_INTEREST
    }
}

/// One buffer that eviction may drop from RAM.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub checksum: Checksum,
    pub size: u64,
    /// normal refs + current tempref interest (0 for a weak entry).
    pub interest: f64,
    /// Cost of getting the buffer back (download from the tier below, plus recomputation).
    pub cost: f64,
    /// Access sequence number: among equal scores, the least recently used goes first.
    pub last_used: u64,
}

impl Candidate {
    /// `cost × interest ÷ size_GB`; infinite (never evicted) when the size is 0 or the cost is.
    pub fn score(&self) -> f64 {
        if self.size == 0 || self.cost.is_infinite() {
            return f64::INFINITY;
        }
        self.cost * self.interest / (self.size as f64 / GIB)
    }
}

/// Pick victims, lowest score first, until `current` is at most `target`; returns them.
pub fn choose_victims(
    mut candidates: Vec<Candidate>,
    mut current: u64,
    target: u64,
) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        a.score()
            .total_cmp(&b.score())
            .then(a.last_used.cmp(&b.last_used))
    });
    let mut victims = Vec::new();
    for c in candidates {
        if current <= target {
            break;
        }
        if c.score().is_infinite() {
            continue;
        }
        current = current.saturating_sub(c.size);
        victims.push(c);
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tempref_halves_every_two_seconds_and_lapses_after_28() {
        let t = Tempref::new(TemprefParams::default(), 0.0);
        assert_eq!(t.current_interest(0.0), 128.0);
        assert_eq!(t.current_interest(2.0), 64.0);
        assert_eq!(t.current_interest(28.0), TEMPREF_MINIMAL_INTEREST);
        assert!(!t.lapsed(28.0));
        assert!(t.lapsed(28.01));
    }

    #[test]
    fn renewal_keeps_the_stronger_parameters_and_always_refreshes() {
        let mut t = Tempref::new(TemprefParams::default(), 0.0);
        let weak = TemprefParams {
            interest: 10.0,
            ..TemprefParams::default()
        };
        t.renew(weak, 10.0);
        assert_eq!(
            t.current_interest(10.0),
            128.0,
            "weaker params ignored, fade restarted"
        );
        let fast = TemprefParams {
            interest: 10.0,
            fade_factor: 4.0,
            fade_interval: 1.0,
        };
        t.renew(fast, 12.0);
        assert_eq!(
            t.current_interest(13.0),
            2.5,
            "a higher factor/interval replaces"
        );
    }
}
