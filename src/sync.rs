//! One way to take a lock. A panic while a lock is held (an order's run that
//! panicked, say) poisons it; every holder here leaves its data consistent
//! between statements, so the next holder takes the data as it is rather
//! than take the process down too.

use std::sync::{Mutex, MutexGuard};

pub trait Locked<T> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
