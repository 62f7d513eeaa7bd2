//! Cancellation that a step observes at safe points, rather than being dropped mid-way: a
//! capture cancelled after its pre hooks still runs its post hooks and removes its snapshots; a
//! restore stops between objects. What was written stays consistent and resumable.

use crate::error::{Result, SpokeError};
use tokio::sync::watch;

#[derive(Clone, Default)]
pub struct Cancellation(Option<watch::Receiver<Option<String>>>);

impl Cancellation {
    /// A cancellation that fires when `rx` carries a reason.
    pub fn new(rx: watch::Receiver<Option<String>>) -> Cancellation {
        Cancellation(Some(rx))
    }

    /// An error if the step was asked to stop.
    pub fn check(&self) -> Result<()> {
        match self.0.as_ref().and_then(|rx| rx.borrow().clone()) {
            Some(reason) => Err(SpokeError::Cancelled(reason)),
            None => Ok(()),
        }
    }
}
