//! In-memory coordination of one server process (spec §2.4): promises (`PUT /promise/<cs>`, a
//! TTL after which they lapse) and the uploads in flight. A GET of a promised buffer waits for
//! its upload; a GET or `/buffer-length` of a buffer being uploaded waits for the upload to end.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::checksum::Checksum;

/// How long a promise lasts (hashserver: 600 s, refreshed by a new promise).
pub const PROMISE_TTL: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Promises {
    promises: Mutex<HashMap<Checksum, Promise>>,
}

struct Promise {
    expires: Instant,
    /// Becomes true when the buffer arrives.
    resolved: watch::Sender<bool>,
}

impl Promises {
    /// Register or refresh a promise.
    pub fn add(&self, checksum: Checksum) {
        let now = Instant::now();
        let mut promises = self.promises.lock().unwrap();
        promises.retain(|_, p| p.expires > now);
        promises
            .entry(checksum)
            .and_modify(|p| p.expires = now + PROMISE_TTL)
            .or_insert_with(|| Promise {
                expires: now + PROMISE_TTL,
                resolved: watch::channel(false).0,
            });
    }

    /// The buffer arrived: drop the promise and wake its waiters.
    pub fn resolve(&self, checksum: &Checksum) {
        if let Some(promise) = self.promises.lock().unwrap().remove(checksum) {
            promise.resolved.send_replace(true);
        }
    }

    /// Whether an unexpired promise exists.
    pub fn is_promised(&self, checksum: &Checksum) -> bool {
        let promises = self.promises.lock().unwrap();
        promises
            .get(checksum)
            .is_some_and(|p| p.expires > Instant::now())
    }

    /// Wait for a promised buffer: true once it arrived, false if there is no promise or it
    /// expired first.
    pub async fn wait_for(&self, checksum: &Checksum) -> bool {
        loop {
            let (mut resolved, expires) = {
                let mut promises = self.promises.lock().unwrap();
                let Some(promise) = promises.get(checksum) else {
                    return false;
                };
                if promise.expires <= Instant::now() {
                    promises.remove(checksum);
                    return false;
                }
                (promise.resolved.subscribe(), promise.expires)
            };
            let deadline = tokio::time::Instant::from_std(expires);
            match tokio::time::timeout_at(deadline, resolved.wait_for(|done| *done)).await {
                Ok(Ok(_)) => return true,
                // Dropped unresolved (cannot happen while registered) or timed out: the
                // promise may have been refreshed meanwhile, so look again.
                Ok(Err(_)) | Err(_) => continue,
            }
        }
    }
}

/// The checksums being uploaded right now in this process.
#[derive(Default)]
pub struct InFlight {
    uploads: Mutex<HashSet<Checksum>>,
    ended: Notify,
}

impl InFlight {
    /// Claim an upload; None if the same checksum is already being uploaded (202).
    pub fn claim(&self, checksum: Checksum) -> Option<Claim<'_>> {
        self.uploads
            .lock()
            .unwrap()
            .insert(checksum)
            .then(|| Claim {
                in_flight: self,
                checksum,
            })
    }

    pub fn contains(&self, checksum: &Checksum) -> bool {
        self.uploads.lock().unwrap().contains(checksum)
    }

    /// Wait until none of `checksums` is being uploaded.
    pub async fn wait_idle(&self, checksums: &[Checksum]) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            {
                let uploads = self.uploads.lock().unwrap();
                if !checksums.iter().any(|cs| uploads.contains(cs)) {
                    return;
                }
            }
            ended.await;
        }
    }
}

/// An upload in flight; released (and waiters woken) on drop.
pub struct Claim<'a> {
    in_flight: &'a InFlight,
    checksum: Checksum,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.in_flight
            .uploads
            .lock()
            .unwrap()
            .remove(&self.checksum);
        self.in_flight.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_the_promise_is_resolved() {
        let promises = std::sync::Arc::new(Promises::default());
        let cs = Checksum::of(b"x");
        assert!(!promises.wait_for(&cs).await);
        promises.add(cs);
        assert!(promises.is_promised(&cs));
        let waiter = tokio::spawn({
            let promises = promises.clone();
            async move { promises.wait_for(&cs).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        promises.resolve(&cs);
        assert!(waiter.await.unwrap());
        assert!(!promises.is_promised(&cs));
    }

    #[tokio::test]
    async fn in_flight_claims_are_exclusive_and_wake_waiters() {
        let in_flight = std::sync::Arc::new(InFlight::default());
        let cs = Checksum::of(b"y");
        let claim = in_flight.claim(cs).unwrap();
        assert!(in_flight.claim(cs).is_none());
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.wait_idle(&[cs]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(claim);
        waiter.await.unwrap();
        assert!(!in_flight.contains(&cs));
    }
}
