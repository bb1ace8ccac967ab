//! While a flood runs: the agent's resident memory sampled, and `/metrics` and the
//! control socket asked every 200 ms, each answer timed (a probe that fails or takes
//! over 5 s counts as a failure).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::bench::agent::{rss_kib, scrape};

#[derive(Clone, Copy, Debug, Default)]
pub struct Answers {
    pub asked: u32,
    pub failed: u32,
    pub max_ms: f64,
}

impl Answers {
    fn record(&mut self, started: Instant, ok: bool) {
        self.asked += 1;
        if ok {
            self.max_ms = self.max_ms.max(started.elapsed().as_secs_f64() * 1000.0);
        } else {
            self.failed += 1;
        }
    }

    pub fn cell(&self) -> String {
        format!(
            "{}/{} answered, slowest {:.0} ms",
            self.asked - self.failed,
            self.asked,
            self.max_ms
        )
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub max_rss_kib: u64,
    pub metrics: Answers,
    pub control: Answers,
}

pub struct Probe {
    stop: Arc<AtomicBool>,
    /// Paused while the agent is deliberately stopped (SIGSTOP).
    paused: Arc<AtomicBool>,
    /// Held by the probe thread while it asks.
    busy: Arc<Mutex<()>>,
    sample: Arc<Mutex<Sample>>,
    thread: Option<JoinHandle<()>>,
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn get_metrics(addr: &str) -> bool {
    scrape(addr, TIMEOUT).is_some()
}

fn ask_status(socket: &PathBuf) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(TIMEOUT));
    let _ = s.set_write_timeout(Some(TIMEOUT));
    if s.write_all(b"{\"verb\":\"status\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.contains("\"ok\":true")
}

impl Probe {
    pub fn start(pid: u32, addr: String, socket: PathBuf) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let sample = Arc::new(Mutex::new(Sample::default()));
        let busy = Arc::new(Mutex::new(()));
        let (s, p, out, b) = (stop.clone(), paused.clone(), sample.clone(), busy.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _asking = b.lock().unwrap_or_else(|e| e.into_inner());
                if !p.load(Ordering::Relaxed) {
                    let rss = rss_kib(pid);
                    let t = Instant::now();
                    let m = get_metrics(&addr);
                    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                    o.max_rss_kib = o.max_rss_kib.max(rss);
                    o.metrics.record(t, m);
                    drop(o);
                    let t = Instant::now();
                    let c = ask_status(&socket);
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .control
                        .record(t, c);
                }
                drop(_asking);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Probe {
            stop,
            paused,
            busy,
            sample,
            thread: Some(thread),
        }
    }

    /// Stop asking, and return once no question is in flight (before the agent is
    /// stopped on purpose, so no answer's time includes the stop).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
        drop(self.busy.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::Relaxed);
    }

    /// What was seen since the last call (and start afresh).
    pub fn take(&self) -> Sample {
        std::mem::take(&mut *self.sample.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
