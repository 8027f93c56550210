//! A background thread that runs one task of the namespace at every tick until it is dropped
//! (the kept-file hasher, the committer of the journal of closed files). It holds the
//! namespace weakly, so it never keeps it alive; dropping it stops the thread and waits for it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::namespace::Namespace;

pub struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Run `task` every `tick` on a thread named `name`.
    pub fn start(
        name: &str,
        ns: &Arc<Namespace>,
        tick: Duration,
        task: fn(&Namespace),
    ) -> std::io::Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let ns: Weak<Namespace> = Arc::downgrade(ns);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    let Some(ns) = ns.upgrade() else { return };
                    task(&ns);
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
