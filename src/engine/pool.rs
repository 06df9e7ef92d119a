//! The engine's own thread pool.
//!
//! An interpreter owns one [`ThreadPool`]: `threads - 1` named worker threads
//! (`edgecam-infer-N`, optionally pinned to listed cores) plus the calling thread,
//! which always works too. Nothing is shared with other parts of the process.
//!
//! [`ThreadPool::run`] hands one job (a borrowed closure over task indices) to every
//! worker through a preallocated slot: no allocation and no thread creation per call.
//! Workers spin briefly after a job (operators follow each other within
//! microseconds during an inference), then park on a condition variable.
//! Each thread first takes the tasks of its own contiguous share (thread `w` of `T` the
//! `w`-th of `T` nearly equal ranges of task indices, in order, the remainder tasks to the
//! last threads: the caller also runs the operators not cut into tasks), then helps with the other
//! shares: consecutive operators cut the same rows the same way, so a thread mostly reads
//! what it wrote itself (in its own cache) while the stealing keeps the load balanced.
//! Tasks are claimed with atomic counters, so each task runs exactly once.
//!
//! Handing a borrowed closure to long-lived threads needs one lifetime erasure (`unsafe`),
//! justified where it happens. Every thread of the pool reserves the kernels' thread-local
//! scratch at start (`kernels::scratch::prewarm_thread`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_micros(100);
/// How the pool's threads wait and share work. [`Tuning::from_env`] reads two
/// measurement switches, which `scripts/armcount --threads` sets so that per-thread
/// instruction counts under qemu (where time runs at emulation speed and the host
/// schedules the guest's threads) hold each thread's own share of the work:
/// - `EDGECAM_POOL_SPIN_US=N`: spin N µs before parking (default 100); 0 parks at once,
///   so no thread counts instructions spent waiting.
/// - `EDGECAM_POOL_STEAL=0`: each thread runs only its own share of a job's tasks
///   (the static split), so no thread's count depends on when the others woke up.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub spin: Duration,
    pub steal: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            spin: SPIN,
            steal: true,
        }
    }
}

impl Tuning {
    /// The defaults, with the environment's switches applied where they parse.
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let d = Tuning::default();
        Tuning {
            spin: var("EDGECAM_POOL_SPIN_US").map_or(d.spin, Duration::from_micros),
            steal: var("EDGECAM_POOL_STEAL").map_or(d.steal, |v| v != 0),
        }
    }
}
/// Spins between `yield_now` calls while waiting (gives the core away when the
/// machine is oversubscribed).
const YIELD_EVERY: u32 = 256;

/// The job closure: `f(task, worker)`; worker 0 is the calling thread.
type JobFn = dyn Fn(usize, usize) + Sync;

/// A job pointer whose lifetime was erased; only dereferenced while
/// [`ThreadPool::run`] (which owns the borrow) waits for the workers.
#[derive(Clone, Copy)]
struct JobPtr(*const JobFn);
// SAFETY: the pointee is `Sync` (shared calls from several threads are allowed) and
// `run` keeps it alive until every worker has finished with it.
unsafe impl Send for JobPtr {}

struct Ctrl {
    job: Option<JobPtr>,
    generation: u64,
    shutdown: bool,
}

struct Inner {
    ctrl: Mutex<Ctrl>,
    wake: Condvar,
    done: Condvar,
    /// Mirror of `ctrl.generation` for lock-free spinning.
    generation: AtomicU64,
    shutdown: AtomicBool,
    /// Each thread's share of the current job's tasks.
    shares: Vec<Share>,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    /// A worker's task panicked during the current job.
    panicked: AtomicBool,
    /// How long a waiting thread spins before it parks.
    spin: Duration,
    /// Threads help with the others' shares once their own is done.
    steal: bool,
}

/// One thread's range of task indices: `next` is claimed with `fetch_add` (by the owner
/// first, then by the others), until it reaches `end`. A cache line each.
#[repr(align(64))]
struct Share {
    next: AtomicUsize,
    end: AtomicUsize,
}

/// The engine's dedicated worker threads.
pub struct ThreadPool {
    inner: Arc<Inner>,
    handles: Vec<JoinHandle<()>>,
    threads: usize,
    /// Serialises concurrent `run` calls (the pool has one job slot).
    run_lock: Mutex<()>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads)
            .finish()
    }
}

impl ThreadPool {
    /// A pool of `threads` workers in total (the caller counts as one, so
    /// `threads - 1` threads are started; `threads <= 1` starts none).
    /// `cores`, when not empty, pins worker `i` (caller = 0) to `cores[i % len]`;
    /// the calling thread itself is not pinned.
    pub fn new(threads: usize, cores: &[usize]) -> std::io::Result<ThreadPool> {
        Self::with_tuning(threads, cores, Tuning::from_env())
    }

    /// [`Self::new`] with the waiting and sharing of `tuning`.
    pub fn with_tuning(
        threads: usize,
        cores: &[usize],
        tuning: Tuning,
    ) -> std::io::Result<ThreadPool> {
        let threads = threads.max(1);
        let inner = Arc::new(Inner {
            ctrl: Mutex::new(Ctrl {
                job: None,
                generation: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
            generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            shares: (0..threads)
                .map(|_| Share {
                    next: AtomicUsize::new(0),
                    end: AtomicUsize::new(0),
                })
                .collect(),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            spin: tuning.spin,
            steal: tuning.steal,
        });
        let mut pool = ThreadPool {
            inner: inner.clone(),
            handles: Vec::with_capacity(threads - 1),
            threads,
            run_lock: Mutex::new(()),
        };
        for w in 1..threads {
            let inner = inner.clone();
            let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
            let h = std::thread::Builder::new()
                .name(format!("edgecam-infer-{w}"))
                .spawn(move || {
                    super::kernels::scratch::prewarm_thread();
                    if let Some(c) = core {
                        if let Err(e) = pin_current_thread(c) {
                            tracing::warn!(core = c, error = %e, "cannot pin inference thread");
                        }
                    }
                    worker(&inner, w)
                })?;
            pool.handles.push(h);
        }
        // The calling thread works too (the one that builds the pool usually invokes it).
        super::kernels::scratch::prewarm_thread();
        Ok(pool)
    }

    /// Total number of threads that run tasks (workers + the caller).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run `f(task, worker)` for every task in `0..ntasks`, each exactly once,
    /// spread over the pool; `worker < self.threads()` identifies the thread
    /// (0 = the caller) so that callers can index per-worker scratch.
    /// Returns after every task has finished. A panicking task is re-raised here.
    pub fn run(&self, ntasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.handles.is_empty() || ntasks <= 1 {
            for t in 0..ntasks {
                f(t, 0);
            }
            return;
        }
        let _serial = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &*self.inner;
        // SAFETY: only the lifetime is erased. The pointer is published to the
        // workers below and withdrawn before this function returns; every worker
        // finishes with it (pending reaches 0) before that, so it never outlives `f`.
        let ptr: *const JobFn = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), *const JobFn>(
                f as *const _,
            )
        };
        for (w, share) in inner.shares.iter().enumerate() {
            let r = share_range(ntasks, self.threads, w);
            share.next.store(r.start, Ordering::Relaxed);
            share.end.store(r.end, Ordering::Relaxed);
        }
        inner.pending.store(self.handles.len(), Ordering::Relaxed);
        inner.panicked.store(false, Ordering::Relaxed);
        {
            let mut c = inner.ctrl.lock().unwrap_or_else(|e| e.into_inner());
            c.job = Some(JobPtr(ptr));
            c.generation += 1;
            inner.generation.store(c.generation, Ordering::Release);
        }
        inner.wake.notify_all();
        let mine = catch_unwind(AssertUnwindSafe(|| claim_tasks(inner, f, 0)));
        // Wait for the workers: spin first, then park.
        let t0 = Instant::now();
        let mut n = 0u32;
        while inner.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            n = n.wrapping_add(1);
            if n.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            }
            if inner.spin.is_zero() || (n.is_multiple_of(64) && t0.elapsed() > inner.spin) {
                let mut c = inner.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                while inner.pending.load(Ordering::Acquire) != 0 {
                    c = inner.done.wait(c).unwrap_or_else(|e| e.into_inner());
                }
                break;
            }
        }
        inner.ctrl.lock().unwrap_or_else(|e| e.into_inner()).job = None;
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if inner.panicked.load(Ordering::Acquire) {
            panic!("an inference worker task panicked");
        }
    }
}

/// Run the tasks of `worker`'s own share, then those left in the others' shares.
fn claim_tasks(inner: &Inner, f: &(dyn Fn(usize, usize) + Sync + '_), worker: usize) {
    let n = inner.shares.len();
    let helped = if inner.steal { n } else { 1 };
    for i in 0..helped {
        let share = &inner.shares[(worker + i) % n];
        let end = share.end.load(Ordering::Relaxed);
        loop {
            let t = share.next.fetch_add(1, Ordering::Relaxed);
            if t >= end {
                break;
            }
            f(t, worker);
        }
    }
}

fn worker(inner: &Inner, id: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin, then park.
        let t0 = Instant::now();
        let mut n = 0u32;
        loop {
            if inner.shutdown.load(Ordering::Acquire) {
                return;
            }
            if inner.generation.load(Ordering::Acquire) != seen {
                break;
            }
            std::hint::spin_loop();
            n = n.wrapping_add(1);
            if n.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            }
            if inner.spin.is_zero() || (n.is_multiple_of(64) && t0.elapsed() > inner.spin) {
                let mut c = inner.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                while c.generation == seen && !c.shutdown {
                    c = inner.wake.wait(c).unwrap_or_else(|e| e.into_inner());
                }
                break;
            }
        }
        let job = {
            let c = inner.ctrl.lock().unwrap_or_else(|e| e.into_inner());
            if c.shutdown {
                return;
            }
            seen = c.generation;
            c.job
        };
        if let Some(JobPtr(p)) = job {
            // SAFETY: `run` published this pointer for generation `seen` and does not
            // return (so the closure stays alive) until `pending` drops to 0 below.
            let f: &JobFn = unsafe { &*p };
            if catch_unwind(AssertUnwindSafe(|| claim_tasks(inner, f, id))).is_err() {
                inner.panicked.store(true, Ordering::Release);
            }
        }
        if inner.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _c = inner.ctrl.lock().unwrap_or_else(|e| e.into_inner());
            inner.done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let mut c = self.inner.ctrl.lock().unwrap_or_else(|e| e.into_inner());
            c.shutdown = true;
            self.inner.shutdown.store(true, Ordering::Release);
        }
        self.inner.wake.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Pin the calling thread to one core (Linux `sched_setaffinity`).
#[cfg(target_os = "linux")]
pub fn pin_current_thread(core: usize) -> std::io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::other(format!("core {core} out of range")));
    }
    // SAFETY: cpu_set_t is a plain bit set for which all-zero is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core < CPU_SETSIZE` was checked, so CPU_SET stays inside the set;
    // sched_setaffinity(0, ..) reads `size_of::<cpu_set_t>()` bytes from a valid set.
    let rc = unsafe {
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pinning is only implemented on Linux.
#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(core: usize) -> std::io::Result<()> {
    Err(std::io::Error::other(format!(
        "pinning to core {core} is only supported on Linux"
    )))
}

/// Thread `i`'s share of a job's `len` tasks among `parts` threads: nearly equal
/// contiguous ranges in order, the longer ones (with fewer tasks than threads, the only
/// ones) last. The calling thread (0) also runs the operators that are not cut into
/// tasks, so it never gets a remainder task; the last threads, which do, hold the job's
/// last tasks, the shortest where rows do not divide evenly (see the conv tasks' split).
fn share_range(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    split_range_last(len, parts, i)
}

/// [`split_range`] with the longer parts last.
pub fn split_range_last(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let parts = parts.max(1);
    let (base, rem) = (len / parts, len % parts);
    let short = parts - rem;
    let start = i * base + i.saturating_sub(short);
    let end = start + base + usize::from(i >= short);
    start.min(len)..end.min(len)
}

/// Split `0..len` into `parts` nearly equal contiguous ranges; part `i`.
pub fn split_range(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let parts = parts.max(1);
    let base = len / parts;
    let rem = len % parts;
    let start = i * base + i.min(rem);
    let end = start + base + usize::from(i < rem);
    start.min(len)..end.min(len)
}

/// Mutable per-worker state (scratch buffers), one slot per pool thread.
/// `get(worker)` locks an uncontended mutex: each worker only touches its own slot.
pub struct PerWorker<T> {
    slots: Vec<Mutex<T>>,
}

impl<T> PerWorker<T> {
    pub fn new(threads: usize, mut make: impl FnMut() -> T) -> Self {
        PerWorker {
            slots: (0..threads.max(1)).map(|_| Mutex::new(make())).collect(),
        }
    }
    pub fn get(&self, worker: usize) -> std::sync::MutexGuard<'_, T> {
        self.slots[worker % self.slots.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl ThreadPool {
    /// Run `f(i, chunk_i, worker)` over the disjoint chunks of `out` that the
    /// caller's boundaries describe: chunk `i` is `out[bounds(i)]`, where `bounds`
    /// must give ranges that are in bounds, ordered and non-overlapping for
    /// `i < ntasks` (checked; a violation panics rather than aliasing).
    /// No allocation.
    pub fn run_chunks<T: Send>(
        &self,
        out: &mut [T],
        ntasks: usize,
        bounds: &(dyn Fn(usize) -> std::ops::Range<usize> + Sync),
        f: &(dyn Fn(usize, &mut [T], usize) + Sync),
    ) {
        // Check the ranges once: in bounds, increasing, disjoint.
        let mut prev_end = 0usize;
        for i in 0..ntasks {
            let r = bounds(i);
            assert!(
                r.start >= prev_end && r.start <= r.end && r.end <= out.len(),
                "run_chunks: chunk {i} {r:?} is out of order or out of bounds"
            );
            prev_end = r.end;
        }
        let base = SendPtr(out.as_mut_ptr());
        self.run(ntasks, &|i, w| {
            let r = bounds(i);
            let b = &base;
            // SAFETY: the ranges were checked above to lie inside `out` and to be
            // pairwise disjoint, and `run` calls each task index exactly once, so
            // each chunk is borrowed mutably by one task only while `out` is
            // mutably borrowed by this function.
            let chunk = unsafe { std::slice::from_raw_parts_mut(b.0.add(r.start), r.len()) };
            f(i, chunk, w);
        });
    }
}

struct SendPtr<T>(*mut T);
// SAFETY: used only to share the base pointer of a `&mut [T]` (T: Send) with tasks
// that each access a disjoint range of it (see `run_chunks`).
unsafe impl<T: Send> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_for_1_to_4_threads() {
        for threads in 1..=4 {
            let pool = ThreadPool::new(threads, &[]).unwrap();
            every_task_runs_once(&pool, threads);
        }
    }

    /// Without spinning every wait parks on the condition variables at once: the
    /// wake-ups must not be lost (a lost one hangs the test). Without stealing each
    /// thread runs its own share only, and still every task runs once.
    #[test]
    fn every_task_runs_once_when_threads_park_at_once() {
        for threads in 2..=4 {
            for steal in [true, false] {
                let tuning = Tuning {
                    spin: Duration::ZERO,
                    steal,
                };
                let pool = ThreadPool::with_tuning(threads, &[], tuning).unwrap();
                for _ in 0..50 {
                    every_task_runs_once(&pool, threads);
                }
            }
        }
    }

    fn every_task_runs_once(pool: &ThreadPool, threads: usize) {
        for ntasks in [0usize, 1, 2, 3, 7, 64, 1000] {
            let hits: Vec<AtomicU32> = (0..ntasks).map(|_| AtomicU32::new(0)).collect();
            let workers: Vec<AtomicU32> = (0..threads).map(|_| AtomicU32::new(0)).collect();
            for _round in 0..3 {
                pool.run(ntasks, &|t, w| {
                    hits[t].fetch_add(1, Ordering::Relaxed);
                    workers[w].fetch_add(1, Ordering::Relaxed);
                });
            }
            for (t, h) in hits.iter().enumerate() {
                assert_eq!(h.load(Ordering::Relaxed), 3, "task {t}, {threads} threads");
            }
            let total: u32 = workers.iter().map(|w| w.load(Ordering::Relaxed)).sum();
            assert_eq!(total as usize, 3 * ntasks);
        }
    }

    #[test]
    fn each_thread_starts_with_its_own_share() {
        // 2 threads, 8 tasks: the caller's share is 0..4, the worker's 4..8. Task 0 (the
        // caller's first) waits until the worker has started a task, so the caller cannot
        // reach the worker's share first: the worker's first task is the start of its own
        // share, not the next task after the caller's (as with one shared counter).
        let pool = ThreadPool::new(2, &[]).unwrap();
        for _round in 0..5 {
            let first = AtomicUsize::new(usize::MAX);
            pool.run(8, &|t, w| {
                if w != 0 {
                    let _ =
                        first.compare_exchange(usize::MAX, t, Ordering::AcqRel, Ordering::Acquire);
                }
                if t == 0 {
                    let t0 = Instant::now();
                    while first.load(Ordering::Acquire) == usize::MAX
                        && t0.elapsed() < Duration::from_secs(20)
                    {
                        std::thread::yield_now();
                    }
                }
            });
            assert_eq!(first.load(Ordering::Acquire), 4);
        }
    }

    #[test]
    fn shares_partition_the_tasks_with_the_caller_shortest() {
        for parts in 1..=6 {
            for len in 0..40 {
                let mut next = 0;
                for i in 0..parts {
                    let r = share_range(len, parts, i);
                    assert_eq!(r.start, next, "len {len}, parts {parts}, share {i}");
                    assert!(r.len() == len / parts || r.len() == len / parts + 1);
                    assert!(r.len() >= share_range(len, parts, 0).len());
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
        // Without stealing, two tasks on four threads run on the last two workers.
        let tuning = Tuning {
            spin: Duration::ZERO,
            steal: false,
        };
        let pool = ThreadPool::with_tuning(4, &[], tuning).unwrap();
        let ran: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(usize::MAX)).collect();
        pool.run(2, &|t, w| ran[t].store(w, Ordering::Relaxed));
        let ran: Vec<usize> = ran.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        assert_eq!(ran, [2, 3]);
    }

    #[test]
    fn run_chunks_covers_every_row_once() {
        for threads in 1..=4 {
            let pool = ThreadPool::new(threads, &[]).unwrap();
            for len in [0usize, 1, 5, 17, 100] {
                for parts in 1..=6 {
                    let mut v = vec![0u32; len];
                    pool.run_chunks(
                        &mut v,
                        parts,
                        &|i| split_range(len, parts, i),
                        &|_, c, _| {
                            for x in c.iter_mut() {
                                *x += 1;
                            }
                        },
                    );
                    assert!(
                        v.iter().all(|&x| x == 1),
                        "{threads} threads, {len}/{parts}"
                    );
                }
            }
        }
    }

    #[test]
    fn split_range_partitions() {
        for len in 0..50 {
            for parts in 1..9 {
                let mut next = 0;
                for i in 0..parts {
                    let r = split_range(len, parts, i);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn drop_does_not_deadlock_and_workers_are_named() {
        for threads in 1..=4 {
            let pool = ThreadPool::new(threads, &[]).unwrap();
            let names = Mutex::new(Vec::new());
            pool.run(64, &|_, w| {
                if w > 0 {
                    names
                        .lock()
                        .unwrap()
                        .push(std::thread::current().name().unwrap_or("").to_string());
                }
                std::thread::sleep(Duration::from_micros(50));
            });
            for n in names.lock().unwrap().iter() {
                assert!(n.starts_with("edgecam-infer-"), "{n}");
            }
            // Let the workers park, then drop.
            std::thread::sleep(Duration::from_millis(2));
            drop(pool);
        }
    }

    #[test]
    fn a_panicking_task_is_reported_not_deadlocked() {
        let pool = ThreadPool::new(3, &[]).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(50, &|t, _| {
                if t == 37 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        pool.run(10, &|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 10);
    }
}
