//! `nodeward run`: the daemon. Probe, load, attach, then read events, serve metrics
//! and react to signals (SIGTERM/SIGINT: clean exit; SIGHUP: reload the config).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{error, info, warn};

use crate::{
    config::Config,
    http::{self, Health},
    loader::Kernel,
    logging::{self, LogHandle},
    metrics::Metrics,
    pipeline, probe, programs,
};

pub fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let log = logging::init(config.agent.log_format, config.agent.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("nodeward")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(daemon(config, config_path, log))
}

fn raise_memlock() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        // Harmless on kernels >= 5.11 (memcg accounting), e.g. without CAP_SYS_RESOURCE.
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK (not needed on kernels >= 5.11)");
    }
}

async fn daemon(config: Config, config_path: Option<PathBuf>, log: LogHandle) -> anyhow::Result<()> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into()),
        mode = ?config.agent.mode,
        "nodeward starting"
    );
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::starting());

    // Bind before loading so a busy port fails fast and nothing is attached for nothing.
    let listener = http::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;

    raise_memlock();
    let mut facts = probe::probe();
    for m in &facts.mounted {
        info!(path = m, "mounted a missing pseudo-filesystem");
    }
    for e in &facts.mount_errors {
        warn!(error = %e, "pseudo-filesystem unavailable");
    }
    if let Some(e) = &facts.btf_error {
        warn!(error = %e, "kernel BTF unavailable: ppid, loginuid and sessionid stay unset");
    } else if !facts.offsets_missing.is_empty() {
        warn!(missing = ?facts.offsets_missing, "kernel BTF lacks some fields; their event fields stay unset");
    }

    let mut kernel = Kernel::load(&mut facts, &config).context("loading the eBPF programs")?;
    metrics.set_kernel_facts(&facts);
    for t in &facts.program_types {
        info!(program_type = t.name, supported = t.supported, detail = %t.detail, "kernel program type");
    }
    let program_ids = Arc::new(Mutex::new(kernel.program_ids()));
    match kernel.kernel_stats(program_ids.clone()) {
        Ok(k) => metrics.set_kernel_stats(Some(k)),
        Err(e) => warn!(error = %e, "kernel statistics unavailable; kernel-side loss counters will read 0"),
    }
    report_detectors(&kernel, &metrics);

    let ring = kernel.take_events().context("opening the event ring buffer")?;
    let (tx, rx) = mpsc::channel(config.agent.event_queue);
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let reader = tokio::spawn(crate::events::read(ring, tx, metrics.clone()));
    let pipeline = tokio::spawn(pipeline::run(rx, config_rx, metrics.clone()));

    let bound = listener.local_addr().context("reading the bound HTTP address")?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(listener, metrics.clone(), health.clone(), async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    health.set(None);
    info!(listen = %bound, "nodeward ready");

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut current = config;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => {
                reload(&config_path, &mut current, &mut kernel, &metrics, &log, &config_tx);
                *program_ids.lock().expect("program ids lock") = kernel.program_ids();
            }
        }
        if reader.is_finished() {
            health.set(Some("event reader stopped".into()));
        }
    }

    health.set(Some("shutting down".into()));
    let _ = stop_tx.send(true);
    reader.abort();
    pipeline.abort();
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "http server ended with an error");
    }
    metrics.set_kernel_stats(None);
    drop(kernel); // detaches every program and closes every map
    info!("nodeward stopped");
    Ok(())
}

fn report_detectors(kernel: &Kernel, metrics: &Metrics) {
    metrics.set_program_statuses(kernel.statuses());
    for d in crate::detectors::ALL {
        match programs::detector_state(d, kernel.statuses()) {
            Ok(()) => info!(detector = d, "detector up"),
            Err(reason) => warn!(detector = d, reason = %reason, "detector down"),
        }
    }
}

fn reload(
    path: &Option<PathBuf>,
    current: &mut Config,
    kernel: &mut Kernel,
    metrics: &Metrics,
    log: &LogHandle,
    config_tx: &watch::Sender<Arc<Config>>,
) {
    let new = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "SIGHUP: configuration rejected, keeping the running one");
            metrics.record_reload(false);
            return;
        }
    };
    if new.http.listen != current.http.listen {
        warn!(old = %current.http.listen, new = %new.http.listen, "http.listen changes take effect at restart");
    }
    if new.agent.event_queue != current.agent.event_queue || new.agent.log_format != current.agent.log_format {
        warn!("agent.event_queue and agent.log_format changes take effect at restart");
    }
    if let Err(e) = kernel.apply(&new) {
        error!(error = %e, "SIGHUP: applying the configuration to the kernel failed");
        metrics.record_reload(false);
        return;
    }
    log.set_level(new.agent.log_level);
    report_detectors(kernel, metrics);
    let _ = config_tx.send(Arc::new(new.clone()));
    *current = new;
    metrics.record_reload(true);
    info!("SIGHUP: configuration reloaded");
}
