//! `nodeward run`: the daemon. Probe, load, attach, then read events, serve metrics
//! and react to signals (SIGTERM/SIGINT: clean exit; SIGHUP: reload the config).

pub mod guard;
pub mod pipeline;
pub mod privileges;
pub mod push;
pub mod service;

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
    control::{
        self,
        reply::{self, Answer, Reply},
    },
    daemon::guard::Guard,
    detectors::metrics::Metrics,
    detectors::reboot::history as boot_history,
    http::{self, Health},
    kernel::{loader::Kernel, owner::Handle},
    kernel::{probe, programs},
    logging::{self, LogHandle},
    quarantine::{ActionKind, Engine},
    time::Now,
};

pub fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let log = logging::init(config.agent.log_format, config.agent.log_level);
    // Before any thread exists (capabilities are per thread; threads inherit them).
    raise_memlock();
    tune_allocator();
    service::drop_privileges()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("nodeward")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(daemon(config, config_path, log))
}

/// glibc's malloc, left alone, raises its mmap threshold to 32 MiB the first time a
/// large block is freed (the kernel's BTF, parsed at load): every later large buffer
/// then lives in the heap and is never given back, and each thread gets an arena of its
/// own. Fixed thresholds and two arenas keep the agent at ~30 MiB instead of ~51 MiB
/// after start (measured, `cargo xtask stress`).
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        // Harmless on kernels >= 5.11 (memcg accounting), e.g. without CAP_SYS_RESOURCE.
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK (not needed on kernels >= 5.11)");
    }
}

async fn daemon(
    config: Config,
    config_path: Option<PathBuf>,
    log: LogHandle,
) -> anyhow::Result<()> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "built-in defaults".into()),
        mode = ?config.agent.mode,
        "nodeward starting"
    );
    // The state directory holds what quarantines are active and the audit journal:
    // refused before anything is loaded when every user may write it.
    crate::config::refuse_world_writable("state directory", &config.agent.state_dir)?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::starting());

    // Bind before loading so a busy port fails fast and nothing is attached for nothing.
    let listener = http::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;

    let facts = probe::probe();
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

    // From here on one thread owns the loaded object; everything reaches it through
    // `kernel` (kernel::owner::Handle), the quarantine engine included.
    let load_config = config.clone();
    crate::detectors::session::kernel::restore_sessions_on_apply();
    let (kernel, facts) = Handle::spawn(move || {
        let mut facts = facts;
        Kernel::load(&mut facts, &load_config).map(|k| (k, facts))
    })
    .context("loading the eBPF programs")?;
    metrics.kernel.set_facts(&facts);
    metrics.tcp_reset.set_reasons(&facts.rst_reasons);
    for t in &facts.program_types {
        info!(program_type = t.name, supported = t.supported, detail = %t.detail, "kernel program type");
    }
    let program_ids = Arc::new(Mutex::new(kernel.call(|k| k.program_ids())));
    let (ids, run_stats) = (program_ids.clone(), config.agent.program_stats);
    match kernel.call(move |k| k.kernel_stats(ids, run_stats)) {
        Ok(k) => {
            metrics.kernel.set_kernel_stats(Some(k));
            metrics.martian.read_proc();
        }
        Err(e) => crate::kernel::metrics::ReadErrors::new(&metrics.agent).failed("stats", e),
    }
    if let Some(counts) = kernel.call(|k| k.reset_counts()) {
        metrics.tcp_reset.set_counts(counts);
    }
    report_detectors(&kernel, &metrics);
    let ebpf_log = kernel
        .call(|k| k.logger.take())
        .map(|l| tokio::spawn(crate::kernel::ebpf_log::forward(l)));
    let ring = kernel
        .call(|k| k.take_events())
        .context("opening the event ring buffer")?;
    sync_interfaces(&kernel, &config, &metrics);
    let (links_tx, mut links_rx) = mpsc::channel(1);
    if let Err(e) = crate::net::watch::spawn(links_tx) {
        warn!(error = %e, every = ?config.detectors.arp.rescan_interval, "no rtnetlink link events: new interfaces are found by the periodic rescan only");
    }
    let conflicts: crate::detectors::arp::bindings::Conflicts = Default::default();
    let resets = if config.detectors.tcp_reset.enabled {
        kernel.call(|k| k.reset_peers())
    } else {
        None
    };
    let martian = if config.detectors.martian.enabled {
        kernel.call(|k| k.martian_maps().map(|m| (m, k.martian_reasons.clone())))
    } else {
        None
    };
    let view = Arc::new(crate::detectors::arp::bindings::View::new(
        kernel.call(|k| k.arp_bindings()),
        conflicts.clone(),
    ));

    // The guard holds the kernel handle from here on.
    let mut guard: Guard =
        Engine::open(&config, kernel).context("opening the quarantine state and audit journal")?;
    if let Err(e) = guard.reconcile(Now::system()) {
        // Every quarantine was still restored or released; the record of it was not
        // (a full state disk, counted in nodeward_quarantine_write_errors_total).
        warn!(error = %e, "restoring active quarantines: a journal or state write failed");
    }
    metrics.quarantine.sync(&mut guard);
    report_backends(&guard, &metrics);
    info!(active = guard.active().len(), proposals = guard.proposals().len(), journal = %guard.journal_path().display(), "quarantine engine ready");

    // How did the previous boot end? (Compares the kernel boot id with the last one.)
    let boot_id = match boot_history::boot_id() {
        Ok(id) => id,
        Err(e) => {
            warn!(error = %e, "cannot read the kernel boot id; reboots across restarts are not tracked");
            String::new()
        }
    };
    let mut history = boot_history::History::default();
    if !boot_id.is_empty() {
        match boot_history::check(
            &config.agent.state_dir,
            config.quarantine.journal_keep,
            &boot_id,
        ) {
            Ok((h, last)) => {
                if let Some(last) = last {
                    let story = boot_history::story(&last);
                    if last.expected == "true" {
                        info!(cause = %last.cause, expected = %last.expected, source = %last.source, "previous boot ended: {story}");
                    } else {
                        warn!(cause = %last.cause, expected = %last.expected, source = %last.source, "previous boot ended: {story}");
                    }
                    if let Err(e) = guard.note(
                        "boot",
                        serde_json::json!({"boot_id": boot_id, "previous": last, "story": story}),
                    ) {
                        error!(error = %e, "cannot journal the previous boot's end");
                    }
                }
                history = h;
            }
            Err(e) => warn!(error = %e, "cannot read or write the boot record"),
        }
    }
    metrics.reboot.set_history(&history);
    let (allowance_tx, allowance_rx) = watch::channel(load_allowance(&config));

    let control = control::bind(&config.control.socket).with_context(|| {
        format!(
            "cannot create the control socket {} (control.socket)",
            config.control.socket.display()
        )
    })?;
    let (control_tx, mut control_rx) = mpsc::channel(64);
    let control_task = tokio::spawn(control::serve(control, control_tx, metrics.agent.clone()));
    let (alert_tx, mut alert_rx) = mpsc::channel(64);
    let webhook = config.http.webhook.enabled.then(|| http::Webhook {
        token: read_token(&config),
        commands: alert_tx,
    });
    let (enforced_tx, mut enforced_rx) = mpsc::channel(256);
    let (intents_tx, mut intents_rx) = mpsc::channel(1024);
    let (secrets_tx, mut secrets_rx) = mpsc::channel(256);
    let (rogues_tx, mut rogues_rx) = mpsc::channel(256);

    let (tx, rx) = mpsc::channel(config.agent.event_queue);
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let mut sysrq_route = crate::detectors::reboot::sysrq::SysrqRoute::new(
        guard.backend(),
        tx.clone(),
        &metrics.agent,
    );
    sysrq_route.configure(&config, &metrics.agent);
    let reader = tokio::spawn(crate::kernel::events::read(ring, tx, metrics.agent.clone()));
    let to_guard = pipeline::ToGuard {
        enforced: enforced_tx,
        intents: intents_tx,
        conflicts,
        secrets: secrets_tx,
        corosync: rogues_tx,
    };
    let (sampled_tx, sampled_rx) = mpsc::channel(256);
    let (role_tx, role_rx) = watch::channel(None);
    let mut cluster =
        crate::detectors::corosync::runtime::Runtime::new(&config, role_tx, sampled_tx.clone());
    cluster.tick(&mut guard, &metrics, std::time::Duration::from_secs(2));
    // The secret files present: listed off the run loop (see secrets::scan), first at once.
    let (inodes_tx, mut inodes_rx) = mpsc::channel(2);
    // The secrets detector's fanotify route (when it is the route in use).
    let mut secrets_route =
        crate::detectors::secrets::runtime::FanotifyRoute::new(guard.backend(), &metrics.agent);
    secrets_route.configure(&config, &config_tx.subscribe(), &sampled_tx, &metrics);
    let scan_task = tokio::spawn(crate::detectors::secrets::runtime::scan(
        config_rx.clone(),
        inodes_tx,
    ));
    let pipeline = tokio::spawn(pipeline::run(
        rx,
        config_rx,
        metrics.clone(),
        to_guard,
        allowance_rx,
        sampled_rx,
        role_rx,
    ));

    let martian_task = martian.map(|((counts, sources), reasons)| {
        tokio::spawn(crate::detectors::martian::sampler::run(
            counts,
            sources,
            reasons,
            config.detectors.martian.clone(),
            metrics.clone(),
            sampled_tx.clone(),
        ))
    });
    let sampler = resets.map(|map| {
        tokio::spawn(crate::detectors::tcp_reset::sampler::run(
            map,
            config.detectors.tcp_reset.clone(),
            metrics.clone(),
            sampled_tx.clone(),
        ))
    });
    let bound = listener
        .local_addr()
        .context("reading the bound HTTP address")?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        webhook,
        view.clone(),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    health.set(None);
    info!(listen = %bound, control = %config.control.socket.display(), "nodeward ready");
    service::notify_ready();

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut sweep = tokio::time::interval(config.quarantine.sweep_interval);
    let mut sweep_failing = false;
    let mut rescan = tokio::time::interval(config.detectors.arp.rescan_interval);
    let mut cluster_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut watchdog = service::watchdog_interval().map(|every| {
        let mut t = tokio::time::interval(every);
        // After a stall, one ping, not a burst of the missed ones.
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut current = config;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); service::notify_stopping(); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); service::notify_stopping(); break; }
            _ = hup.recv() => {
                service::notify_reloading();
                // A reload may load programs (the verifier): it gets the whole timeout.
                service::notify_watchdog();
                reload(&config_path, &mut current, &mut guard, &metrics, &log, &config_tx);
                cluster.reconfigure(&current);
                secrets_route.configure(&current, &config_tx.subscribe(), &sampled_tx, &metrics);
                sysrq_route.configure(&current, &metrics.agent);
                sync_interfaces(guard.backend(), &current, &metrics);
                *program_ids.lock().expect("program ids lock") = guard.backend().call(|k| k.program_ids());
                sweep = tokio::time::interval(current.quarantine.sweep_interval);
                rescan = tokio::time::interval(current.detectors.arp.rescan_interval);
                service::notify_ready();
            }
            Some(cmd) = control_rx.recv() => {
                let reply = match cmd.request {
                    control::Request::Bindings { interface } => {
                        Ok(Reply::Bindings(reply::Bindings { bindings: view.rows(interface.as_deref()) }))
                    }
                    control::Request::AllowReboot { for_s, reason } => allow_reboot(&mut guard, &current, &allowance_tx, for_s, reason, &cmd.by),
                    control::Request::Status => {
                        let mut s = guard::status(&guard, &current);
                        s.last_reboot = history.last.clone();
                        s.last_reboot_story = history.last.as_ref().map(boot_history::story);
                        s.reboots = history.reboots.clone();
                        s.reboot_allowance = allowance_tx.borrow().clone();
                        s.cluster = cluster.status();
                        Ok(Reply::Status(Box::new(s)))
                    }
                    control::Request::Quarantine(request) => guard::handle(&mut guard, &metrics, request, &cmd.by),
                };
                let _ = cmd.reply.send(reply);
            }
            Some(intent) = intents_rx.recv() => journal_intent(&mut guard, &metrics, &boot_id, intent),
            Some(f) = secrets_rx.recv() => crate::detectors::secrets::runtime::quarantine(&mut guard, &current, &metrics, f),
            Some(f) = rogues_rx.recv() => crate::detectors::corosync::runtime::quarantine(&mut guard, &current, &metrics, &f),
            Some(found) = inodes_rx.recv() => {
                secrets_route.set_present(&found);
                crate::detectors::secrets::runtime::sync_inodes(guard.backend(), found, &metrics);
            }
            Some(cmd) = alert_rx.recv() => {
                let reply = guard::handle_alert(&mut guard, &metrics, cmd.request);
                info!(outcome = %reply::to_value(&reply), "webhook alert handled");
                let _ = cmd.reply.send(reply);
            }
            Some((id, detail)) = enforced_rx.recv() => {
                if let Err(e) = guard.enforced(id, detail) {
                    error!(error = %e, "cannot journal an enforcement");
                }
                metrics.quarantine.sync(&mut guard);
            }
            Some(()) = links_rx.recv() => sync_interfaces(guard.backend(), &current, &metrics),
            _ = rescan.tick() => sync_interfaces(guard.backend(), &current, &metrics),
            _ = async { watchdog.as_mut().expect("guarded").tick().await }, if watchdog.is_some() => {
                // Alive: this loop turns and the kernel-owner thread answers (a hung one
                // keeps the loop waiting here, so no ping goes out).
                guard.backend().call(|_| ());
                service::notify_watchdog();
            }
            _ = cluster_tick.tick() => {
                cluster.tick(&mut guard, &metrics, std::time::Duration::ZERO);
            }
            _ = sweep.tick() => {
                // Programs loaded since (e.g. the quarantine's TC program) get run stats.
                *program_ids.lock().expect("program ids lock") = guard.backend().call(|k| k.program_ids());
                // Logged when it starts failing and when it recovers, not every 5 s.
                match guard.sweep(Now::system()) {
                    Err(e) if !sweep_failing => {
                        sweep_failing = true;
                        error!(error = %e, "quarantine sweep failed: expiries are not journaled (the kernel ignores expired entries); retried every sweep");
                    }
                    Ok(()) if sweep_failing => {
                        sweep_failing = false;
                        info!("quarantine sweep recovered: pending expiries journaled");
                    }
                    _ => {}
                }
                metrics.quarantine.sync(&mut guard);
            }
        }
        if reader.is_finished() {
            health.set(Some("event reader stopped".into()));
        }
    }

    // Whatever was detected up to now reaches the journal before we go: a reboot is
    // the usual reason to be stopped.
    let drain_until = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
    while let Ok(Some(intent)) = tokio::time::timeout_at(drain_until, intents_rx.recv()).await {
        journal_intent(&mut guard, &metrics, &boot_id, intent);
    }
    health.set(Some("shutting down".into()));
    let _ = stop_tx.send(true);
    reader.abort();
    pipeline.abort();
    control_task.abort();
    scan_task.abort();
    for task in [&sampler, &martian_task, &ebpf_log].into_iter().flatten() {
        task.abort();
    }
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "http server ended with an error");
    }
    let _ = std::fs::remove_file(&current.control.socket);
    metrics.kernel.set_kernel_stats(None);
    drop(guard); // detaches every program and closes every map
    info!("nodeward stopped");
    Ok(())
}

/// Journal a reboot intent (fsync) and, if the guard acted, the enforcement.
fn journal_intent(
    guard: &mut Guard,
    metrics: &Metrics,
    boot_id: &str,
    intent: crate::detectors::reboot::RebootIntent,
) {
    let source = match &intent.process.origin {
        crate::detectors::Origin::Ssh { peer, .. } => peer.to_string(),
        _ => String::new(),
    };
    let fields = serde_json::json!({
        "boot_id": boot_id,
        "origin": intent.process.origin.label(),
        "expected": intent.expected,
        "source": source,
        "because": intent.because,
        "intent": intent,
    });
    if let Err(e) = guard.note("reboot_intent", fields) {
        error!(error = %e, "cannot journal a reboot intent");
    }
    if let Some(g) = intent.guard {
        let detail = serde_json::json!({"process": intent.process, "argv": intent.argv, "filename": intent.filename, "lineage": intent.lineage, "because": intent.because});
        if let Err(e) = guard.guard_event(g == "would_block", detail) {
            error!(error = %e, "cannot journal a reboot guard action");
        }
        metrics.quarantine.sync(guard);
    }
}

const ALLOWANCE_FILE: &str = "reboot-allowance.json";

fn load_allowance(config: &Config) -> Option<crate::detectors::reboot::Allowance> {
    let text = std::fs::read(config.agent.state_dir.join(ALLOWANCE_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn allow_reboot(
    guard: &mut Guard,
    config: &Config,
    tx: &watch::Sender<Option<crate::detectors::reboot::Allowance>>,
    for_s: u64,
    reason: String,
    by: &str,
) -> Answer {
    if for_s == 0 || for_s > config.quarantine.max_ttl.as_secs() {
        return Err(format!(
            "--for must be between 1s and quarantine.max_ttl ({}s)",
            config.quarantine.max_ttl.as_secs()
        ));
    }
    let now = Now::system();
    let a = crate::detectors::reboot::Allowance {
        until_ms: now.wall_ms + for_s * 1000,
        reason,
        by: by.to_string(),
    };
    if let Err(e) = guard.note(
        "reboot_allowed",
        serde_json::json!({"until_ms": a.until_ms, "reason": a.reason, "by": a.by}),
    ) {
        return Err(e.to_string());
    }
    let path = config.agent.state_dir.join(ALLOWANCE_FILE);
    if let Err(e) = std::fs::write(&path, serde_json::to_vec(&a).unwrap_or_default()) {
        warn!(error = %e, file = %path.display(), "reboot allowance not persisted (it holds until restart)");
    }
    info!(until_ms = a.until_ms, reason = %a.reason, by = %a.by, "reboot allowance recorded");
    let reply = Ok(Reply::RebootAllowed(reply::RebootAllowed {
        until_ms: a.until_ms,
    }));
    let _ = tx.send(Some(a));
    reply
}

fn read_token(config: &Config) -> Option<Arc<String>> {
    match std::fs::read_to_string(&config.http.webhook.token_file) {
        Ok(t) if !t.trim().is_empty() => Some(Arc::new(t.trim().to_string())),
        Ok(_) => {
            error!(file = %config.http.webhook.token_file.display(), "webhook token file is empty; the webhook refuses every request");
            None
        }
        Err(e) => {
            error!(file = %config.http.webhook.token_file.display(), error = %e, "cannot read the webhook token; the webhook refuses every request");
            None
        }
    }
}

fn report_backends(guard: &Guard, metrics: &Metrics) {
    let backends: Vec<(ActionKind, &str)> = ActionKind::ALL
        .iter()
        .map(|&k| (k, guard::backend_name(k, guard.backend(), false)))
        .collect();
    for (k, backend) in &backends {
        info!(action = k.as_str(), backend, "enforcement backend");
    }
    metrics.quarantine.set_backends(&backends);
}

fn report_detectors(kernel: &Handle, metrics: &Metrics) {
    let statuses = kernel.call(|k| k.statuses().to_vec());
    metrics.set_program_statuses(&statuses);
    for d in crate::detectors::ALL {
        match programs::detector_state(d, &statuses) {
            // corosync is up only once its configuration and counters are read too
            // (nodeward_detector_up says when).
            Ok(()) if *d == "corosync" => info!(
                detector = d,
                "detector programs attached; up once its configuration and counters are read"
            ),
            Ok(()) => info!(detector = d, "detector up"),
            Err(reason) => warn!(detector = d, reason = %reason, "detector down"),
        }
    }
}

fn reload(
    path: &Option<PathBuf>,
    current: &mut Config,
    guard: &mut Guard,
    metrics: &Metrics,
    log: &LogHandle,
    config_tx: &watch::Sender<Arc<Config>>,
) {
    let new = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "SIGHUP: configuration rejected, keeping the running one");
            metrics.agent.record_reload(false);
            return;
        }
    };
    if new.http.listen != current.http.listen {
        warn!(old = %current.http.listen, new = %new.http.listen, "http.listen changes take effect at restart");
    }
    if new.agent.event_queue != current.agent.event_queue
        || new.agent.log_format != current.agent.log_format
    {
        warn!("agent.event_queue and agent.log_format changes take effect at restart");
    }
    let applied = new.clone();
    if let Err(e) = guard.backend().call(move |k| k.apply(&applied)) {
        error!(error = %e, "SIGHUP: applying the configuration to the kernel failed");
        metrics.agent.record_reload(false);
        return;
    }
    log.set_level(new.agent.log_level);
    guard.set_config(&new);
    report_detectors(guard.backend(), metrics);
    report_backends(guard, metrics);
    let _ = config_tx.send(Arc::new(new.clone()));
    *current = new;
    metrics.agent.record_reload(true);
    info!("SIGHUP: configuration reloaded");
}

/// Read this namespace's interfaces (rtnetlink) and attach the packet observers to the
/// ones they should watch: at start, on every link event, on reload and on each rescan.
fn sync_interfaces(
    kernel: &crate::kernel::owner::Handle,
    config: &Config,
    metrics: &crate::detectors::metrics::Metrics,
) {
    let links = match crate::net::Links::dump() {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot list the network interfaces (rtnetlink); observers not updated");
            return;
        }
    };
    let config = config.clone();
    let sync = kernel.call(move |k| k.sync_packet_interfaces(&config, &links));
    for e in sync.new_errors {
        warn!(error = %e, "packet program not attached");
    }
    metrics
        .arp
        .set_interfaces(sync.arp.attached, sync.arp.failing);
    metrics
        .corosync
        .interfaces(sync.corosync.attached, sync.corosync.failing);
}
