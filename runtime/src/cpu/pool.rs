//! A fixed pool of worker threads made at session creation, so `run` spawns and allocates nothing:
//! `broadcast(f)` runs `f(0)` on the caller and `f(1..n)` on the workers and returns when all are done.
//!
//! Workers spin briefly on an atomic generation counter before sleeping on a condvar: a model runs many
//! short parallel ops back to back, and waking a sleeping thread costs 50–200 µs on virtual machines
//! (measured here: without the spin, 2 threads were no faster than 1 on PP-OCR det).
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = *const (dyn Fn(usize) + Sync + 'static);

/// Spin iterations before a worker (or the caller) falls back to sleeping.
const SPIN: usize = 20_000;

struct Shared {
    generation: AtomicU64,
    pending: AtomicUsize,
    shutdown: AtomicBool,
    /// A worker's job panicked (the panic is re-raised on the caller once every worker is done).
    panicked: AtomicBool,
    /// Written by `broadcast` before the generation bump (Release), read by workers after seeing it (Acquire).
    job: UnsafeCell<Option<Job>>,
    lock: Mutex<()>,
    wake: Condvar,
    done: Condvar,
}

// SAFETY: `job` is only written while no worker reads it (between generations, with all workers done) and
// only dereferenced while `broadcast` keeps the closure alive and blocks.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// Worker threads for one session.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads - 1` workers (the caller is thread 0).
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let mut pool = Pool {
            shared: shared.clone(),
            workers: Vec::new(),
        };
        // each worker counts itself in once started (see `worker`)
        shared.pending.store(threads.max(1) - 1, Ordering::Relaxed);
        for id in 1..threads.max(1) {
            let s = shared.clone();
            // on failure, `pool` drops here and stops the workers already started
            pool.workers.push(
                std::thread::Builder::new()
                    .name(format!("tern-{id}"))
                    .spawn(move || worker(&s, id))?,
            );
        }
        // return with every worker started: a thread's own start-up (its standard-library set-up)
        // may allocate, and must not fall into a later `run` (a 2-thread `run_into` of a model too small
        // to hand the worker a job was once caught allocating, its worker not yet started)
        pool.wait();
        Ok(pool)
    }

    /// Number of threads including the caller.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` for every thread index `i` in parallel; returns when all calls have returned.
    pub fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.workers.is_empty() {
            f(0);
            return;
        }
        let s = &*self.shared;
        // SAFETY: we erase the lifetime, and do not return before every worker has finished with `f`;
        // no worker reads `job` now (the previous broadcast waited for all of them).
        unsafe {
            *s.job.get() = Some(core::mem::transmute::<
                &(dyn Fn(usize) + Sync),
                &'static (dyn Fn(usize) + Sync),
            >(f));
        }
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::Release);
        {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        // the caller's share must not unwind past the workers still using `f`: catch, wait, re-raise
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0)));
        self.wait();
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        // reached only after a kernel panicked on a worker (a bug: kernels do not panic on validated
        // models); re-raised here so a bug is not turned into silently wrong outputs
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a tern worker thread panicked (its message is above)");
        }
    }

    fn wait(&self) {
        let s = &*self.shared;
        for _ in 0..SPIN {
            if s.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            core::hint::spin_loop();
        }
        let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        while s.pending.load(Ordering::Acquire) > 0 {
            g = s.done.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn worker(s: &Shared, id: usize) {
    // started: counted in for `Pool::new`, which waits for every worker
    if s.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
        let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.done.notify_one();
    }
    let mut seen = 0u64;
    loop {
        let mut spun = 0;
        while s.generation.load(Ordering::Acquire) == seen
            && !s.shutdown.load(Ordering::Acquire)
            && spun < SPIN
        {
            core::hint::spin_loop();
            spun += 1;
        }
        if s.generation.load(Ordering::Acquire) == seen {
            let mut g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.generation.load(Ordering::Acquire) == seen
                && !s.shutdown.load(Ordering::Acquire)
            {
                g = s.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = s.generation.load(Ordering::Acquire);
        // SAFETY: set before the generation bump we observed with Acquire; alive until pending hits 0.
        if let Some(job) = unsafe { *s.job.get() } {
            // a panicking job must still count as done, or the caller would wait forever
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*job)(id) }));
            if r.is_err() {
                s.panicked.store(true, Ordering::Release);
            }
        }
        if s.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.done.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic in any thread's share reaches the caller as a panic (no deadlock), and the pool still works.
    #[test]
    fn worker_panic_propagates_without_deadlock() {
        let pool = Pool::new(2).unwrap();
        for bad in [0usize, 1] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pool.broadcast(&|t| {
                    if t == bad {
                        panic!("test panic in thread {t}");
                    }
                })
            }));
            assert!(r.is_err(), "thread {bad}'s panic was lost");
        }
        let hits = AtomicUsize::new(0);
        pool.broadcast(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
