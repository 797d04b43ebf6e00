//! A fixed pool of worker threads made at session creation, so `run` spawns and allocates nothing:
//! `broadcast(f)` runs `f(0)` on the caller and `f(1..n)` on the workers and returns when all are done.
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = *const (dyn Fn(usize) + Sync + 'static);

struct State {
    generation: u64,
    job: Option<Job>,
    pending: usize,
    shutdown: bool,
}

// SAFETY: the job pointer is only dereferenced while `broadcast` keeps the closure alive and blocks.
unsafe impl Send for State {}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
}

/// Worker threads for one session.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `threads - 1` workers (the caller is thread 0).
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                pending: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|id| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("tern-{id}"))
                    .spawn(move || worker(&s, id))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Pool { shared, workers })
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
        // SAFETY: we erase the lifetime, and do not return before every worker has finished with `f`.
        let job: Job = unsafe {
            core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        {
            let mut st = lock(&self.shared.state);
            st.job = Some(job);
            st.pending = self.workers.len();
            st.generation = st.generation.wrapping_add(1);
        }
        self.shared.wake.notify_all();
        f(0);
        let mut st = lock(&self.shared.state);
        while st.pending > 0 {
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.job = None;
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(s: &Shared, id: usize) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut st = lock(&s.state);
            while st.generation == seen && !st.shutdown {
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.shutdown {
                return;
            }
            seen = st.generation;
            st.job
        };
        if let Some(job) = job {
            // SAFETY: `broadcast` keeps the closure alive until `pending` reaches 0.
            unsafe { (*job)(id) };
        }
        let mut st = lock(&s.state);
        st.pending -= 1;
        if st.pending == 0 {
            s.done.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
