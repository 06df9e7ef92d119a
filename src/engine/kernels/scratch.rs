//! Per-thread working memory of the kernels that need some per call (tap lists, folded biases,
//! per-channel constants): each kernel module declares thread-local `Vec`s and borrows one with
//! [`reuse`] for the length of a call; it is handed back on drop, with its capacity, so after
//! the first inference the interpreter's threads (the caller and the pool's workers) run every
//! kernel without allocating. A thread that has not run a kernel yet (a worker whose share
//! another thread took during the first inferences) would still allocate on its first call:
//! so every pool worker, and the thread that builds the pool, reserves each slot at start
//! ([`prewarm_thread`]) for what the kernels need on detectors of this size. `tests/no_alloc.rs`
//! checks that.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// A thread-local vector slot.
pub(crate) type Slot<T> = LocalKey<RefCell<Vec<T>>>;

/// An emptied vector taken out of a thread-local [`Slot`], put back when dropped.
pub(crate) struct Reused<T: 'static> {
    slot: &'static Slot<T>,
    v: Vec<T>,
}

/// Take the slot's vector (cleared, capacity kept). A nested `reuse` of the same slot on the
/// same thread gets a fresh vector, and the larger of the two is kept.
pub(crate) fn reuse<T: 'static>(slot: &'static Slot<T>) -> Reused<T> {
    let mut v = slot.try_with(|c| c.take()).unwrap_or_default();
    v.clear();
    Reused { slot, v }
}

impl<T: 'static> Deref for Reused<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.v
    }
}

impl<T: 'static> DerefMut for Reused<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.v
    }
}

impl<T: 'static> Drop for Reused<T> {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.v);
        v.clear();
        // During thread teardown the slot may be gone: then the vector is simply freed.
        let _ = self.slot.try_with(|c| {
            if c.borrow().capacity() < v.capacity() {
                c.replace(v);
            }
        });
    }
}

/// Give `slot`'s vector of this thread room for at least `n` elements.
#[allow(dead_code)] // not every target has slots
pub(crate) fn reserve<T: 'static>(slot: &'static Slot<T>, n: usize) {
    let _ = slot.try_with(|c| {
        let mut v = c.borrow_mut();
        if v.capacity() < n {
            let len = v.len();
            v.reserve(n - len);
        }
    });
}

/// Reserve every kernel slot of this thread (see the module comment).
pub(crate) fn prewarm_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        super::x86_64::depthwise_f32_avx2::prewarm_scratch();
        super::x86_64::depthwise_vnni::prewarm_scratch();
    }
    #[cfg(target_arch = "aarch64")]
    super::aarch64::prewarm_scratch();
}
