//! Poison-tolerant locking for the hub's short critical sections. Every critical section in
//! the hub leaves its data consistent before anything in it can panic, so a poisoned mutex's
//! data is still good; this module must never hold a lock itself or across an `.await`.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering the data if a panicking thread poisoned it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
