//! [`Quota`]: how many requests a limit lets through, and how fast it
//! replenishes.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

/// The longest window a quota may have: 100 years. Longer windows would
/// overflow governor's nanosecond arithmetic.
const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Why a [`Quota`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// A quota must let at least one request through.
    #[error("a quota must allow at least one request")]
    Zero,
    /// The window (or replenish interval) is zero or longer than 100 years.
    #[error("a quota window must be longer than zero and at most 100 years")]
    Window,
    /// More requests than nanoseconds in the window.
    #[error("a quota cannot allow more than one request per nanosecond")]
    TooFine,
}

/// How many requests a [`Limiter`](super::Limiter) lets through per key:
/// a burst of `burst` requests, replenished at one request per
/// [`replenish_interval`](Quota::replenish_interval).
///
/// This is governor's GCRA quota. `Quota::per_minute(100)` lets 100 requests
/// through at once, then one more every 600 ms; a key that stays idle for
/// a minute has its whole burst back. The RateLimit-Policy header advertises
/// it as `q=<burst>;w=<burst × interval in seconds>`.
///
/// ```
/// use std::time::Duration;
/// use tower_auth::rate_limit::Quota;
///
/// # fn main() -> Result<(), tower_auth::rate_limit::QuotaError> {
/// let q = Quota::per_minute(100)?;
/// assert_eq!(q.burst(), 100);
/// assert_eq!(q.replenish_interval(), Duration::from_millis(600));
///
/// // 100 per minute on average, but at most 10 at once.
/// let q = Quota::per_minute(100)?.allow_burst(10)?;
/// assert_eq!(q.window(), Duration::from_secs(6));
///
/// // 5 attempts, then one more every 15 minutes (the failed-login seed).
/// let q = Quota::with_period(Duration::from_secs(15 * 60))?.allow_burst(5)?;
/// assert_eq!(q.burst(), 5);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    inner: governor::Quota,
}

impl Quota {
    /// `n` requests per second, all of them allowed at once.
    ///
    /// # Errors
    ///
    /// [`QuotaError::Zero`] when `n` is 0, [`QuotaError::TooFine`] above
    /// 10⁹.
    pub fn per_second(n: u32) -> Result<Self, QuotaError> {
        Self::new(n, Duration::from_secs(1))
    }

    /// `n` requests per minute, all of them allowed at once.
    ///
    /// # Errors
    ///
    /// [`QuotaError::Zero`] when `n` is 0.
    pub fn per_minute(n: u32) -> Result<Self, QuotaError> {
        Self::new(n, Duration::from_secs(60))
    }

    /// `n` requests per hour, all of them allowed at once.
    ///
    /// # Errors
    ///
    /// [`QuotaError::Zero`] when `n` is 0.
    pub fn per_hour(n: u32) -> Result<Self, QuotaError> {
        Self::new(n, Duration::from_secs(60 * 60))
    }

    /// `n` requests per `window`, all of them allowed at once; one request
    /// is replenished every `window / n`.
    ///
    /// # Errors
    ///
    /// [`QuotaError::Zero`] when `n` is 0, [`QuotaError::Window`] when the
    /// window is zero or longer than 100 years, [`QuotaError::TooFine`] when
    /// `n` exceeds the number of nanoseconds in the window.
    pub fn new(n: u32, window: Duration) -> Result<Self, QuotaError> {
        let burst = NonZeroU32::new(n).ok_or(QuotaError::Zero)?;
        if window.is_zero() || window > MAX_WINDOW {
            return Err(QuotaError::Window);
        }
        let interval = window / n;
        if interval.is_zero() {
            return Err(QuotaError::TooFine);
        }
        Self::from_parts(interval, burst)
    }

    /// One request per `interval`, with a burst of one; widen the burst with
    /// [`allow_burst`](Quota::allow_burst).
    ///
    /// # Errors
    ///
    /// [`QuotaError::Window`] when the interval is zero or longer than 100
    /// years.
    pub fn with_period(interval: Duration) -> Result<Self, QuotaError> {
        Self::from_parts(interval, NonZeroU32::MIN)
    }

    /// Keeps the replenish rate and lets `burst` requests through at once.
    ///
    /// # Errors
    ///
    /// [`QuotaError::Zero`] when `burst` is 0, [`QuotaError::Window`] when
    /// `burst × interval` exceeds 100 years.
    pub fn allow_burst(self, burst: u32) -> Result<Self, QuotaError> {
        let burst = NonZeroU32::new(burst).ok_or(QuotaError::Zero)?;
        Self::from_parts(self.replenish_interval(), burst)
    }

    fn from_parts(interval: Duration, burst: NonZeroU32) -> Result<Self, QuotaError> {
        let window = interval
            .checked_mul(burst.get())
            .ok_or(QuotaError::Window)?;
        if interval.is_zero() || window > MAX_WINDOW {
            return Err(QuotaError::Window);
        }
        let inner = governor::Quota::with_period(interval)
            .ok_or(QuotaError::Window)?
            .allow_burst(burst);
        Ok(Quota { inner })
    }

    /// How many requests may go through at once (RateLimit-Policy `q`).
    pub fn burst(&self) -> u32 {
        self.inner.burst_size().get()
    }

    /// The time it takes to replenish one request.
    pub fn replenish_interval(&self) -> Duration {
        self.inner.replenish_interval()
    }

    /// The time it takes an exhausted key to get its whole burst back
    /// (RateLimit-Policy `w`, rounded up to whole seconds).
    pub fn window(&self) -> Duration {
        self.inner.burst_size_replenished_in()
    }

    /// `n` times this quota: `n` times the burst, replenished `n` times
    /// faster (the same window). Saturates at the finest quota there is;
    /// `self` if even that cannot be built.
    pub(crate) fn times(self, n: u32) -> Quota {
        let burst = NonZeroU32::new(self.burst().saturating_mul(n)).unwrap_or(NonZeroU32::MIN);
        let interval = (self.replenish_interval() / n.max(1)).max(Duration::from_nanos(1));
        Self::from_parts(interval, burst).unwrap_or(self)
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("burst", &self.burst())
            .field("replenish_interval", &self.replenish_interval())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_quotas() {
        let q = Quota::per_second(10).unwrap();
        assert_eq!(
            (q.burst(), q.replenish_interval()),
            (10, Duration::from_millis(100))
        );
        let q = Quota::per_hour(3600).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_secs(1));
        assert_eq!(q.window(), Duration::from_secs(3600));
    }

    #[test]
    fn burst_keeps_the_rate() {
        let q = Quota::per_minute(60).unwrap().allow_burst(5).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_secs(1));
        assert_eq!(q.burst(), 5);
        assert_eq!(q.window(), Duration::from_secs(5));
    }

    #[test]
    fn times_keeps_the_window() {
        let q = Quota::with_period(Duration::from_secs(15 * 60))
            .unwrap()
            .allow_burst(5)
            .unwrap()
            .times(16);
        assert_eq!(q.burst(), 80);
        assert_eq!(q.window(), Duration::from_secs(75 * 60));
        let finest = Quota::per_second(1_000_000_000).unwrap().times(16);
        assert_eq!(finest.burst(), u32::MAX);
        assert_eq!(finest.replenish_interval(), Duration::from_nanos(1));
    }

    #[test]
    fn invalid_quotas_are_errors_not_panics() {
        assert_eq!(Quota::per_minute(0), Err(QuotaError::Zero));
        assert_eq!(Quota::new(1, Duration::ZERO), Err(QuotaError::Window));
        assert_eq!(Quota::new(1, Duration::MAX), Err(QuotaError::Window));
        assert_eq!(Quota::with_period(Duration::ZERO), Err(QuotaError::Window));
        assert_eq!(
            Quota::new(10, Duration::from_nanos(5)),
            Err(QuotaError::TooFine)
        );
        let hourly = Quota::with_period(Duration::from_secs(3600)).unwrap();
        assert_eq!(hourly.allow_burst(0), Err(QuotaError::Zero));
        assert_eq!(hourly.allow_burst(u32::MAX), Err(QuotaError::Window));
        assert!(Quota::per_second(u32::MAX).is_err());
    }
}
