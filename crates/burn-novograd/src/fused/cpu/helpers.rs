//! Threads kept for the parts of a large tensor's fused step, one per core besides the caller's.
//!
//! Starting a thread for each large tensor and waking a sleeping one both cost about 30 µs on
//! the 2-core machine of BENCHMARKS.md, a tenth of such a tensor's step. A helper here waits for
//! its next part by spinning for [`SPIN`] after its last one, so that the tensors of one
//! optimizer step reach it in well under a microsecond, then sleeps until it is given another.
//! A caller that finds the helpers taken (another thread is stepping) starts threads of its own.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins for its next part before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// `work(i)` for every `i < parts`: `work(0)` on the calling thread, the others on helpers (or
/// on threads started for this call when the helpers are taken). Returns when all have run; a
/// panic in any part panics here.
pub(super) fn run_parts(parts: usize, work: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        return (0..parts).for_each(work);
    }
    match Claimed::take(parts - 1) {
        Some(claimed) => claimed.run(work),
        None => std::thread::scope(|scope| {
            for index in 1..parts {
                scope.spawn(move || work(index));
            }
            work(0);
        }),
    }
}

/// Waits until `done` holds: spinning first (the other parts of a step finish at about the same
/// time), then yielding the core to whatever else may run.
pub(super) fn wait_until(done: impl Fn() -> bool) {
    for _ in 0..1 << 12 {
        if done() {
            return;
        }
        std::hint::spin_loop();
    }
    while !done() {
        std::thread::yield_now();
    }
}

/// One helper thread and what passes between it and the caller that claimed it.
struct Helper {
    /// Set by the caller that holds this helper.
    claimed: AtomicBool,
    /// The number of the last part given to it, counted from 1.
    posted: AtomicUsize,
    /// The number of the last part it has finished.
    finished: AtomicUsize,
    /// The part posted and not yet taken.
    part: Mutex<Option<Part>>,
    /// The panic of its last part, if it panicked.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Its thread, to wake it.
    thread: OnceLock<Thread>,
}

/// `work(index)`, with the lifetime of `work` erased: the caller that posts it does not return
/// (nor unwind) before the helper has marked it finished, see [`Claimed`]'s `Drop`.
struct Part {
    work: *const (dyn Fn(usize) + Sync + 'static),
    index: usize,
}

// SAFETY: `work` is `Sync`, so it may be called from the helper's thread.
unsafe impl Send for Part {}

/// The helpers, started at the first large tensor; none when a thread cannot be started.
fn helpers() -> &'static [&'static Helper] {
    static HELPERS: OnceLock<Vec<&'static Helper>> = OnceLock::new();
    HELPERS.get_or_init(|| {
        (0..super::cores() - 1)
            .map_while(|index| {
                let helper: &'static Helper = Box::leak(Box::new(Helper {
                    claimed: AtomicBool::new(false),
                    posted: AtomicUsize::new(0),
                    finished: AtomicUsize::new(0),
                    part: Mutex::new(None),
                    panic: Mutex::new(None),
                    thread: OnceLock::new(),
                }));
                let thread = std::thread::Builder::new()
                    .name(format!("novograd-helper-{index}"))
                    .spawn(move || serve(helper))
                    .ok()?;
                helper.thread.get_or_init(|| thread.thread().clone());
                Some(helper)
            })
            .collect()
    })
}

/// A helper's loop: wait for a part (spinning for [`SPIN`], then asleep), run it, mark it done.
fn serve(helper: &'static Helper) {
    let mut seen = 0;
    loop {
        let since = Instant::now();
        let mut spins = 0u32;
        while helper.posted.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            match spins.is_multiple_of(64) && since.elapsed() > SPIN {
                true => std::thread::park(),
                false => std::hint::spin_loop(),
            }
        }
        seen = helper.posted.load(Ordering::Acquire);
        let part = lock(&helper.part)
            .take()
            .expect("a part is posted with its number");
        // SAFETY: the caller that posted `work` waits for `finished` before it lets go of it.
        let work = unsafe { &*part.work };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(part.index))) {
            *lock(&helper.panic) = Some(panic);
        }
        helper.finished.store(seen, Ordering::Release);
    }
}

/// Helpers held by one caller; dropping it waits for their parts and lets them go.
struct Claimed {
    helpers: Vec<(&'static Helper, Option<usize>)>,
}

impl Claimed {
    /// `count` free helpers, or `None` (and none held) when fewer are free.
    fn take(count: usize) -> Option<Self> {
        let mut claimed = Claimed {
            helpers: Vec::with_capacity(count),
        };
        for &helper in helpers() {
            if claimed.helpers.len() == count {
                break;
            }
            if !helper.claimed.swap(true, Ordering::Acquire) {
                claimed.helpers.push((helper, None));
            }
        }
        (claimed.helpers.len() == count).then_some(claimed)
    }

    /// Posts `work(1..)` to the helpers, runs `work(0)`, waits for the others.
    fn run(mut self, work: &(dyn Fn(usize) + Sync)) {
        // SAFETY: a lifetime is all that changes; `self` is dropped, and so waits for every
        // posted part, before `work` goes out of scope, on return and on unwinding alike.
        let erased: *const (dyn Fn(usize) + Sync + 'static) =
            unsafe { std::mem::transmute(work as *const (dyn Fn(usize) + Sync + '_)) };
        for (index, (helper, posted)) in self.helpers.iter_mut().enumerate() {
            let number = helper.posted.load(Ordering::Relaxed) + 1;
            *lock(&helper.part) = Some(Part {
                work: erased,
                index: index + 1,
            });
            helper.posted.store(number, Ordering::Release);
            helper.thread.get().expect("set when started").unpark();
            *posted = Some(number);
        }
        work(0);
        let panics: Vec<_> = (self.finish().into_iter()).flatten().collect();
        if let Some(panic) = panics.into_iter().next() {
            resume_unwind(panic);
        }
    }

    /// Waits for every posted part and lets the helpers go; their panics.
    fn finish(&mut self) -> Vec<Option<Box<dyn Any + Send>>> {
        (self.helpers.drain(..))
            .map(|(helper, posted)| {
                if let Some(number) = posted {
                    wait_until(|| helper.finished.load(Ordering::Acquire) == number);
                }
                let panic = lock(&helper.panic).take();
                helper.claimed.store(false, Ordering::Release);
                panic
            })
            .collect()
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The value behind `mutex`, also after a panic elsewhere (every write here is whole).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Claimed, helpers, lock, run_parts};

    /// Eight threads at once, each running its parts many times: every part runs exactly once
    /// per call, whether on the helpers or (when they are taken) on started threads.
    #[test]
    fn every_part_runs_once_with_callers_at_once() {
        std::thread::scope(|scope| {
            for caller in 0..8 {
                scope.spawn(move || {
                    for round in 0..200 {
                        let parts = 2 + (caller + round) % 3;
                        let runs: Vec<AtomicUsize> = (0..parts).map(|_| 0.into()).collect();
                        run_parts(parts, &|index| {
                            runs[index].fetch_add(1, Ordering::Relaxed);
                        });
                        let runs: Vec<usize> =
                            runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
                        assert_eq!(runs, vec![1; parts], "caller {caller}, round {round}");
                    }
                });
            }
        });
    }

    /// A part posted to a helper runs on the helper's thread; its panic reaches the caller, and
    /// the helper serves the next part.
    #[test]
    fn a_helper_runs_its_part_and_passes_its_panic_on() {
        if helpers().is_empty() {
            eprintln!("skipped: one core, no helper");
            return;
        }
        // Another test may hold the helper for a moment.
        let claim = || loop {
            match Claimed::take(1) {
                Some(claimed) => break claimed,
                None => std::thread::yield_now(),
            }
        };
        let ran_on = Mutex::new(Vec::new());
        let record = |index: usize| {
            let name = std::thread::current().name().map(str::to_owned);
            lock(&ran_on).push((index, name));
        };
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            claim().run(&|index| {
                record(index);
                assert_ne!(index, 1, "part one panics");
            })
        }));
        assert!(caught.is_err(), "the helper's panic reached the caller");
        claim().run(&record);
        let helper = Some("novograd-helper-0".to_owned());
        let mut ran_on = lock(&ran_on).clone();
        ran_on.sort();
        assert_eq!(ran_on.len(), 4);
        assert_eq!(ran_on[2..], [(1, helper.clone()), (1, helper)]);
    }
}
