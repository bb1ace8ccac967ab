//! The one owner of the loaded eBPF object. A dedicated thread loads the object, keeps
//! it, and runs every map write, attach and detach in order; the rest of the agent
//! holds a [`Handle`] and sends it typed requests (a closure over `&mut Kernel` whose
//! return type is the reply), waiting for the reply. Nothing else touches the object:
//! the quarantine engine's backend is the handle (`quarantine::kernel`), the detectors'
//! map glue runs here through it. Dropping the handle stops the thread, which drops the
//! object: every program is detached and every map closed before `drop` returns.
//!
//! A thread, not a task: the quarantine engine is synchronous and kernel calls are
//! short blocking syscalls; from the async runtime a call blocks in place (the runtime
//! moves its other tasks to another worker meanwhile).

use std::{
    sync::mpsc,
    thread::{self, JoinHandle},
};

use super::loader::Kernel;

type Job = Box<dyn FnOnce(&mut Kernel) + Send>;

pub struct Handle {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// Start the owner thread; `load` runs on it and makes the object (plus anything
    /// else the caller wants back from the load, e.g. the probe's findings).
    pub fn spawn<T, E>(
        load: impl FnOnce() -> Result<(Kernel, T), E> + Send + 'static,
    ) -> Result<(Handle, T), E>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (loaded_tx, loaded_rx) = mpsc::sync_channel(1);
        let thread = thread::Builder::new()
            .name("nodeward-kernel".into())
            .spawn(move || {
                let mut kernel = match load() {
                    Ok((kernel, extra)) => {
                        let _ = loaded_tx.send(Ok(extra));
                        kernel
                    }
                    Err(e) => {
                        let _ = loaded_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut kernel);
                }
                drop(kernel);
            })
            .expect("spawning the kernel owner thread");
        let extra = loaded_rx
            .recv()
            .expect("the kernel owner thread ended while loading (it panicked)")?;
        Ok((
            Handle {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            extra,
        ))
    }

    /// Run `request` on the owner thread and wait for its reply.
    pub fn call<R: Send + 'static>(
        &self,
        request: impl FnOnce(&mut Kernel) -> R + Send + 'static,
    ) -> R {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .expect("handle in use")
            .send(Box::new(move |k: &mut Kernel| {
                let _ = reply_tx.send(request(k));
            }))
            .expect("the kernel owner thread is gone (it panicked)");
        let wait = move || reply_rx.recv();
        let in_multi_thread_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let reply = if in_multi_thread_runtime {
            tokio::task::block_in_place(wait)
        } else {
            wait()
        };
        reply.expect("the kernel owner thread died during a request (it panicked)")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the kernel owner thread had panicked");
        }
    }
}
