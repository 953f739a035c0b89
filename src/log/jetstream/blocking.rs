//! Running a request to the cluster from one of the log boundary's synchronous calls (group
//! offsets), without stalling the runtime's other tasks.
//!
//! On a worker of a multi-thread runtime the call is moved off the worker
//! (`block_in_place`) while it waits; on a thread outside any runtime it waits on the runtime
//! the log was opened on. A current-thread runtime cannot wait on itself: the call is refused
//! there rather than deadlocking.

use std::future::Future;

use tokio::runtime::{Handle, RuntimeFlavor};

use crate::log::{LogError, Result};

/// Waits for `request` from synchronous code.
pub(super) fn wait_on<T>(home: &Handle, request: impl Future<Output = Result<T>>) -> Result<T> {
    match Handle::try_current() {
        Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| current.block_on(request))
        }
        Ok(_) => Err(LogError::Unavailable(
            "a synchronous call to the cluster log needs a multi-thread runtime".into(),
        )),
        Err(_) => home.block_on(request),
    }
}
