//! A long-lived plain thread that runs one blocking job at a time, on request: for the
//! reads that may hang on a file system such as pmxcfs (Proxmox's /etc/pve, a FUSE file
//! system that hangs with the cluster). A hung job blocks its own thread only; no second
//! run is asked of it until the first returns; and a plain thread (not the runtime's
//! blocking pool) never keeps the agent from exiting. One thread for the agent's
//! lifetime, not one per read: a thread started every second is a clone, a stack mapped
//! and unmapped, and a wake-up on a busy CPU each time.

use std::{
    sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError},
    time::{Duration, Instant},
};

type Job<T> = Box<dyn FnMut() -> T + Send>;

/// Runs `job` on its thread each time [`Worker::start`] asks while none is in flight.
pub struct Worker<T> {
    name: String,
    job: std::sync::Arc<std::sync::Mutex<Job<T>>>,
    /// The thread's ends; `None` until started, or after the thread died (a panic).
    thread: Option<(Sender<()>, Receiver<T>)>,
    /// When the run in flight was asked for.
    in_flight: Option<Instant>,
}

impl<T: Send + 'static> Worker<T> {
    /// A worker (its thread starts with the first run) whose thread is named `name`.
    pub fn new(name: &str, job: impl FnMut() -> T + Send + 'static) -> Self {
        Self {
            name: name.to_string(),
            job: std::sync::Arc::new(std::sync::Mutex::new(Box::new(job))),
            thread: None,
            in_flight: None,
        }
    }

    /// Ask for a run unless one is in flight (starting the thread first when there is
    /// none, or it died).
    pub fn start(&mut self) -> std::io::Result<()> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        if self.thread.is_none() {
            let (req_tx, req_rx) = std::sync::mpsc::channel::<()>();
            let (res_tx, res_rx) = std::sync::mpsc::channel();
            let job = self.job.clone();
            std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || {
                    // Ends when the worker is dropped (its request end closes).
                    while req_rx.recv().is_ok() {
                        let out = {
                            let mut job = job.lock().unwrap_or_else(|p| p.into_inner());
                            job()
                        };
                        if res_tx.send(out).is_err() {
                            return;
                        }
                    }
                })?;
            self.thread = Some((req_tx, res_rx));
        }
        let (req, _) = self.thread.as_ref().expect("started above");
        if req.send(()).is_err() {
            self.thread = None;
            return Err(std::io::Error::other(format!("{} thread ended", self.name)));
        }
        self.in_flight = Some(Instant::now());
        Ok(())
    }

    /// The run in flight's result, waiting at most `wait` for it (zero: only if done).
    pub fn result(&mut self, wait: Duration) -> Option<T> {
        self.in_flight?;
        let (_, res) = self.thread.as_ref()?;
        let got = if wait.is_zero() {
            res.try_recv()
                .map_err(|e| matches!(e, TryRecvError::Disconnected))
        } else {
            res.recv_timeout(wait)
                .map_err(|e| matches!(e, RecvTimeoutError::Disconnected))
        };
        match got {
            Ok(out) => {
                self.in_flight = None;
                Some(out)
            }
            Err(disconnected) => {
                if disconnected {
                    // The job panicked: the next start begins a new thread.
                    tracing::warn!(worker = %self.name, "a read panicked; its thread starts again with the next read");
                    self.thread = None;
                    self.in_flight = None;
                }
                None
            }
        }
    }

    /// How long the run in flight has been running, if one is.
    pub fn busy_for(&self) -> Option<Duration> {
        self.in_flight.map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    /// How many live threads of this process are named `name`.
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|c| c.trim() == name)
            .count()
    }

    #[test]
    fn runs_on_request_on_one_thread_for_many_runs() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let mut w = Worker::new("nw-test-many", move || r.fetch_add(1, Ordering::SeqCst) + 1);
        for i in 1..=20 {
            w.start().unwrap();
            assert_eq!(w.result(Duration::from_secs(10)), Some(i));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 20);
        assert_eq!(threads_named("nw-test-many"), 1, "one thread for every run");
    }

    #[test]
    fn a_hung_run_gets_no_second_run_and_is_reported_busy() {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let mut w = Worker::new("nw-test-hung", move || {
            r.fetch_add(1, Ordering::SeqCst);
            release_rx.lock().unwrap().recv().ok();
        });
        w.start().unwrap();
        assert_eq!(w.result(Duration::from_millis(50)), None);
        // Asked again while hung: nothing new runs.
        w.start().unwrap();
        w.start().unwrap();
        assert!(w.busy_for().is_some());
        release_tx.send(()).unwrap();
        assert_eq!(w.result(Duration::from_secs(10)), Some(()));
        assert!(w.busy_for().is_none());
        // A run queued behind the hung one would start now (and block on the channel).
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            assert_eq!(
                runs.load(Ordering::SeqCst),
                1,
                "a run was queued behind the hung one"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn its_thread_ends_when_the_worker_is_dropped() {
        let mut w = Worker::new("nw-test-drop", || 1);
        w.start().unwrap();
        assert_eq!(w.result(Duration::from_secs(10)), Some(1));
        assert_eq!(threads_named("nw-test-drop"), 1);
        drop(w);
        let deadline = Instant::now() + Duration::from_secs(10);
        while threads_named("nw-test-drop") > 0 {
            assert!(
                Instant::now() < deadline,
                "the idle thread outlived its worker"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_panicking_job_runs_again_on_a_new_thread() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut w = Worker::new("nw-test-panic", move || {
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("first run fails");
            }
            7
        });
        w.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.busy_for().is_some() {
            assert_eq!(w.result(Duration::from_millis(20)), None);
            assert!(Instant::now() < deadline, "the panic was never noticed");
        }
        w.start().unwrap();
        assert_eq!(w.result(Duration::from_secs(10)), Some(7));
        assert_eq!(threads_named("nw-test-panic"), 1, "the new thread runs it");
    }
}
