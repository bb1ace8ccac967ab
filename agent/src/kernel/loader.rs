//! Loads the eBPF object, probes the program types that need a real load, attaches the
//! programs of enabled detectors and keeps the kernel-side configuration maps in step
//! with the configuration. One value of [`Kernel`] owns the `Ebpf` object: all map
//! writes and attach/detach go through it (the run loop is its only owner).

use std::collections::HashMap;

use agent_common::{maps, offsets::KERNEL_OFFSETS_GLOBAL};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, RingBuf},
    programs::{
        Lsm, RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
    },
};
use tracing::{debug, info, warn};

use crate::{
    config::Config,
    kernel::object,
    kernel::probe::{self, KernelFacts},
    kernel::programs::{Hook, PROGRAMS, ProgramSpec, ProgramStatus, Route, Status},
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Stub(#[from] object::StubObject),
    #[error("loading the eBPF object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("eBPF map {0} missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("eBPF map {name}: more than its {capacity} entries wanted")]
    Capacity { name: &'static str, capacity: u32 },
}

/// Each route group of an enabled detector, and whether its fallback is in use.
pub fn route_in_use(statuses: &[ProgramStatus]) -> Vec<(&'static str, bool)> {
    let mut out: Vec<(&'static str, bool)> = Vec::new();
    for s in statuses {
        let (Route::Preferred(g) | Route::Fallback(g)) = s.spec.route else {
            continue;
        };
        if s.status == Status::Disabled {
            continue;
        }
        let on = matches!(s.spec.route, Route::Fallback(_)) && s.status == Status::Attached;
        match out.iter_mut().find(|(x, _)| *x == g) {
            Some((_, f)) => *f |= on,
            None => out.push((g, on)),
        }
    }
    out
}

/// Route groups whose preferred route is in userspace (fanotify): whether it is in use.
fn userspace_routes(config: &Config) -> HashMap<&'static str, bool> {
    let d = &config.detectors;
    HashMap::from([
        ("secrets.fanotify", d.secrets.uses_fanotify()),
        (
            "reboot.sysrq",
            !d.forced_fallback("reboot") && super::probe::sysrq_fanotify().is_ok(),
        ),
    ])
}

/// Why the kernel refused to load a program (its first line, kept for reports).
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Refused(pub String);

impl Refused {
    pub(super) fn from_error(e: impl std::error::Error) -> Refused {
        let text = with_causes(&e);
        // The verifier's whole log, for whoever debugs a kernel that refuses a program.
        debug!(error = %text, "program refused (load or attach)");
        Refused(first_line(&text))
    }
}

/// An error with its causes: aya's syscall errors keep the errno in the source (a
/// cause the message already quotes, as a load error's, is not repeated).
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(&format!(": {said}"));
        }
        cause = c.source();
    }
    text
}

/// What one [`Kernel::sync_tc`] did.
#[derive(Debug, Default)]
pub struct TcSync {
    /// Interfaces the program is on.
    pub attached: usize,
    /// Wanted interfaces it is not on (absent, or the attach failed).
    pub failing: usize,
    /// Failures not reported before (or whose reason changed).
    pub new_errors: Vec<String>,
}

pub struct Kernel {
    pub(crate) ebpf: Ebpf,
    /// Interfaces a quarantine named (the packet program drops there; kept while the
    /// agent runs).
    pub(crate) quarantine_ifaces: std::collections::BTreeSet<String>,
    /// Interfaces the ARP observer and the cluster counter watch (from the config).
    pub(crate) packet_watch: (Vec<String>, Vec<String>),
    /// Interfaces each observer TC program is attached to (name -> ifindex: a name
    /// reused by a new interface is a new attachment).
    pub(crate) tc_attached: HashMap<&'static str, std::collections::BTreeMap<String, u32>>,
    /// What the packet program does on each interface it is on (ifindex ->).
    pub(crate) packet_ports: std::collections::BTreeMap<u32, agent_common::packet::NetPort>,
    /// The packet program's settings as last written (`NET_CONFIG`, written whole).
    pub(crate) net_config: agent_common::packet::NetConfig,
    /// Attachments that failed, with the reason last reported (each reported once).
    pub(crate) tc_failed: HashMap<(&'static str, String), String>,
    /// `enum skb_drop_reason` of this kernel (value -> name).
    pub(crate) drop_reasons: std::collections::HashMap<u32, String>,
    /// The martian reasons being counted (value -> name).
    pub martian_reasons: std::collections::HashMap<u32, String>,
    pub(crate) reboot_guard: u32,
    pub(crate) links: HashMap<&'static str, TracePointLinkId>,
    pub(crate) raw_links: HashMap<&'static str, RawTracePointLinkId>,
    pub(crate) lsm_links: HashMap<&'static str, aya::programs::lsm::LsmLinkId>,
    pub(crate) btf_links: HashMap<&'static str, aya::programs::tp_btf::BtfTracePointLinkId>,
    pub(crate) cgroup_links: HashMap<&'static str, super::cgroup::CgroupLink>,
    /// Route groups in use (`true`: the fallback), as last logged.
    pub(crate) routes: HashMap<&'static str, bool>,
    pub(crate) loaded: HashMap<&'static str, Result<(), Refused>>,
    pub(crate) statuses: Vec<ProgramStatus>,
    /// The programs' diagnostics (agent.ebpf_log), until the daemon takes it.
    pub logger: Option<super::ebpf_log::Logger>,
}

/// Load (once) and attach a program typed by the kernel's BTF (`$ty`: `Lsm`,
/// `BtfTracePoint`) on `$target`, keeping its link in `$links`. Refused where the
/// program is optional: unavailable, not failed.
macro_rules! attach_btf {
    ($self:ident, $spec:ident, $ty:ty, $links:ident, $target:expr) => {{
        let fail = |reason: String| {
            if $spec.required {
                Status::Failed(reason)
            } else {
                Status::Unavailable(reason)
            }
        };
        let btf = match Btf::from_sys_fs() {
            Ok(b) => b,
            Err(e) => return fail(format!("no kernel BTF: {e}")),
        };
        let Some(Ok(prog)) = $self
            .ebpf
            .program_mut($spec.name)
            .map(TryInto::<&mut $ty>::try_into)
        else {
            return Status::Failed("program missing from the eBPF object".into());
        };
        if prog.fd().is_err()
            && let Err(e) = prog.load($target, &btf)
        {
            return fail(format!("load: {}", first_line(&e.to_string())));
        }
        match prog.attach() {
            Ok(link) => {
                $self.$links.insert($spec.name, link);
                Status::Attached
            }
            Err(e) => fail(format!("attach: {e}")),
        }
    }};
}

impl Kernel {
    /// Load the object with this kernel's offsets, run the load-only probes (adding
    /// their outcome to `facts`) and attach what `config` enables.
    pub fn load(facts: &mut KernelFacts, config: &Config) -> Result<Kernel, LoadError> {
        let bytes = object::object()?;
        let mut tp = agent_common::session::TracepointOffsets::DEFAULT;
        match probe::tracepoint_field_offset("sched", "sched_process_fork", "child_pid") {
            Some(off) => tp.fork_child_pid = off,
            None => warn!(
                "sched_process_fork format unreadable; assuming child_pid at offset {}",
                tp.fork_child_pid
            ),
        }
        let log_level = super::ebpf_log::level(config.agent.ebpf_log);
        let mut ebpf = EbpfLoader::new()
            // Task storage (the session origins): aya has no type for it, and it is
            // only ever used through generic element calls (session/table.rs).
            .allow_unsupported_maps()
            .override_global(KERNEL_OFFSETS_GLOBAL, &facts.offsets, true)
            .override_global(agent_common::session::TP_OFFSETS_GLOBAL, &tp, true)
            .override_global(aya_log::LEVEL, &log_level, true)
            .load(bytes)?;
        let logger = super::ebpf_log::init(&mut ebpf, config.agent.ebpf_log);
        let drop_reasons = facts.drop_reasons.clone();
        let mut kernel = Kernel {
            ebpf,
            drop_reasons,
            martian_reasons: Default::default(),
            quarantine_ifaces: Default::default(),
            packet_watch: Default::default(),
            tc_attached: Default::default(),
            tc_failed: Default::default(),
            packet_ports: Default::default(),
            net_config: Default::default(),
            reboot_guard: 0,
            lsm_links: HashMap::new(),
            btf_links: HashMap::new(),
            cgroup_links: HashMap::new(),
            routes: HashMap::new(),
            links: HashMap::new(),
            raw_links: HashMap::new(),
            loaded: HashMap::new(),
            statuses: Vec::new(),
            logger,
        };
        facts
            .program_types
            .extend(probe::btf_program_types(&mut kernel.ebpf));
        kernel.apply(config)?;
        Ok(kernel)
    }

    /// Bring kernel state in line with `config`: kernel config maps, then attach the
    /// programs of enabled detectors and detach those of disabled ones.
    pub fn apply(&mut self, config: &Config) -> Result<(), LoadError> {
        self.sync_exec_watch(config)?;
        self.sync_sshd_comms(config)?;
        self.sync_reboot_guard(config)?;
        self.sync_martian_reasons(config)?;
        self.sync_secret_paths(config)?;
        let mut enabled = config.enabled_detectors();
        // The kill-on-exec program runs whenever block_exec may enforce.
        if config.action_mode(crate::config::ActionKind::BlockExec) == crate::config::Mode::Enforce
        {
            enabled.push("quarantine");
        }
        // Preferred routes first: a group's fallback is attached only where its
        // preferred route is not in use.
        let mut in_use: HashMap<&'static str, bool> = userspace_routes(config);
        let mut slots: Vec<Option<Status>> = vec![None; PROGRAMS.len()];
        for (i, spec) in PROGRAMS.iter().enumerate() {
            if !enabled.contains(&spec.detector) {
                // A shared program stays while another detector that uses it is on.
                let used = PROGRAMS
                    .iter()
                    .any(|p| p.name == spec.name && enabled.contains(&p.detector));
                slots[i] = Some(if used {
                    Status::Disabled
                } else {
                    self.detach(spec)
                });
                continue;
            }
            match spec.route {
                Route::Always => slots[i] = Some(self.attach(spec)),
                Route::Preferred(group) => {
                    let status = if config.detectors.forced_fallback(spec.detector) {
                        self.detach(spec);
                        Status::Replaced(format!(
                            "fallback forced (detectors.{}.route = \"tracepoint\")",
                            spec.detector
                        ))
                    } else if spec.name == "reboot_capable" && !cfg!(target_arch = "x86_64") {
                        Status::Unavailable("the register layout is known for x86_64 only".into())
                    } else {
                        match self.attach(spec) {
                            Status::Failed(why) => {
                                Status::Unavailable(format!("{why}; the fallback route is in use"))
                            }
                            other => other,
                        }
                    };
                    let ok = status == Status::Attached;
                    let entry = in_use.entry(group).or_insert(true);
                    *entry &= ok;
                    slots[i] = Some(status);
                }
                Route::Fallback(_) => {}
            }
        }
        for (i, spec) in PROGRAMS.iter().enumerate() {
            let Route::Fallback(group) = spec.route else {
                continue;
            };
            if slots[i].is_some() {
                continue; // detector disabled
            }
            slots[i] = Some(if in_use.get(group).copied().unwrap_or(false) {
                self.detach(spec);
                Status::Replaced(format!("route {group}"))
            } else {
                self.attach(spec)
            });
        }
        let mut statuses = Vec::with_capacity(PROGRAMS.len());
        for (spec, status) in PROGRAMS.iter().zip(slots) {
            let status = status.unwrap_or(Status::Disabled);
            match &status {
                Status::Failed(r) => {
                    warn!(detector = spec.detector, program = spec.name, hook = %spec.hook, reason = %r, "program failed")
                }
                Status::Unavailable(r) => {
                    info!(detector = spec.detector, program = spec.name, hook = %spec.hook, reason = %r, "program unavailable")
                }
                _ => debug!(
                    detector = spec.detector,
                    program = spec.name,
                    status = status.label(),
                    "program"
                ),
            }
            statuses.push(ProgramStatus {
                spec: *spec,
                status,
            });
        }
        for (group, fallback) in route_in_use(&statuses) {
            let route = if fallback { "fallback" } else { "preferred" };
            if self.routes.insert(group, fallback) != Some(fallback) {
                if fallback {
                    let cost = super::programs::ROUTE_GROUPS
                        .iter()
                        .find(|(g, _, _)| *g == group)
                        .map_or("", |(_, _, cost)| cost);
                    warn!(group, route, cost, "hook route: the fallback is in use");
                } else {
                    info!(group, route, "hook route");
                }
            }
        }
        self.statuses = statuses;
        self.sync_origins(config)
    }

    fn attach(&mut self, spec: &ProgramSpec) -> Status {
        if self.links.contains_key(spec.name)
            || self.raw_links.contains_key(spec.name)
            || self.lsm_links.contains_key(spec.name)
            || self.btf_links.contains_key(spec.name)
            || self.cgroup_links.contains_key(spec.name)
        {
            return Status::Attached;
        }
        let (category, name) = match spec.hook {
            Hook::TracePoint { category, name } => (category, name),
            Hook::Lsm { hook } => return self.attach_lsm(spec, hook),
            Hook::BtfTracePoint { name } => return self.attach_btf_tp(spec, name),
            Hook::RawTracePoint { name } => return self.attach_raw(spec, name),
            Hook::TcIngress => return self.load_tc(spec.name),
            Hook::Cgroup { .. } => {
                return match super::cgroup::attach(&mut self.ebpf, spec.name) {
                    Ok(link) => {
                        self.cgroup_links.insert(spec.name, link);
                        Status::Attached
                    }
                    Err(why) => Status::Failed(why.to_string()),
                };
            }
        };
        if !probe::tracepoint_exists(category, name) {
            let reason = format!("tracepoint {category}/{name} does not exist on this kernel");
            return if spec.required {
                Status::Failed(reason)
            } else {
                Status::Unavailable(reason)
            };
        }
        let Some(program) = self.ebpf.program_mut(spec.name) else {
            return Status::Failed("program missing from the eBPF object".into());
        };
        let tp: &mut TracePoint = match program.try_into() {
            Ok(tp) => tp,
            Err(e) => return Status::Failed(format!("not a tracepoint program: {e}")),
        };
        let loaded = self
            .loaded
            .entry(spec.name)
            .or_insert_with(|| tp.load().map_err(Refused::from_error));
        if let Err(e) = loaded {
            return Status::Failed(format!("load: {e}"));
        }
        match tp.attach(category, name) {
            Ok(link) => {
                self.links.insert(spec.name, link);
                Status::Attached
            }
            Err(e) => Status::Failed(format!("attach: {e}")),
        }
    }

    fn attach_raw(&mut self, spec: &ProgramSpec, tracepoint: &str) -> Status {
        let Some(Ok(raw)) = self
            .ebpf
            .program_mut(spec.name)
            .map(TryInto::<&mut RawTracePoint>::try_into)
        else {
            return Status::Failed("raw tracepoint program missing from the eBPF object".into());
        };
        let loaded = self
            .loaded
            .entry(spec.name)
            .or_insert_with(|| raw.load().map_err(Refused::from_error));
        if let Err(e) = loaded {
            return Status::Failed(format!("load: {e}"));
        }
        match raw.attach(tracepoint) {
            Ok(link) => {
                self.raw_links.insert(spec.name, link);
                Status::Attached
            }
            Err(e) => {
                let reason = format!("attach to raw tracepoint {tracepoint}: {e}");
                if spec.required {
                    Status::Failed(reason)
                } else {
                    Status::Unavailable(reason)
                }
            }
        }
    }

    /// Load a TC program; it is attached per interface by [`Kernel::sync_arp_interfaces`].
    fn load_tc(&mut self, name: &'static str) -> Status {
        let Some(Ok(tc)) = self
            .ebpf
            .program_mut(name)
            .map(TryInto::<&mut aya::programs::SchedClassifier>::try_into)
        else {
            return Status::Failed("program missing from the eBPF object".into());
        };
        if tc.fd().is_err()
            && let Err(e) = tc.load()
        {
            // The verifier's whole log, for whoever debugs a kernel that refuses it.
            debug!(program = name, error = %e, "load failed");
            return Status::Failed(format!("load: {}", first_line(&e.to_string())));
        }
        Status::Attached
    }

    /// Attach TC program `program` (ingress) to every interface of `wanted` it is not
    /// on yet (`links`: the interfaces present now). Failures are reported once each,
    /// again only when the reason changes; a wanted interface that is absent is a failure.
    pub(crate) fn sync_tc(
        &mut self,
        program: &'static str,
        wanted: Vec<String>,
        links: &crate::net::Links,
    ) -> TcSync {
        // Interfaces that went away (or whose name now belongs to another interface)
        // took their attachment with them.
        let on = self.tc_attached.entry(program).or_default();
        on.retain(|name, ifindex| links.by_name(name).is_some_and(|l| l.ifindex == *ifindex));
        self.tc_failed
            .retain(|(p, name), _| *p != program || wanted.contains(name));
        let mut new_errors = Vec::new();
        for iface in wanted {
            if self
                .tc_attached
                .get(program)
                .is_some_and(|on| on.contains_key(&iface))
            {
                continue;
            }
            let result = match links.by_name(&iface) {
                None => Err("no such interface in this network namespace".to_string()),
                Some(link) => self.attach_tc(program, &iface).map(|()| link.ifindex),
            };
            match result {
                Ok(ifindex) => {
                    info!(interface = %iface, program, "TC observer attached (ingress)");
                    self.tc_failed.remove(&(program, iface.clone()));
                    self.tc_attached
                        .entry(program)
                        .or_default()
                        .insert(iface, ifindex);
                }
                Err(reason) => {
                    let previous = self
                        .tc_failed
                        .insert((program, iface.clone()), reason.clone());
                    if previous.as_ref() != Some(&reason) {
                        new_errors.push(format!("{iface}: {reason}"));
                    }
                }
            }
        }
        TcSync {
            attached: self.tc_attached.get(program).map_or(0, |s| s.len()),
            failing: self.tc_failed.keys().filter(|(p, _)| *p == program).count(),
            new_errors,
        }
    }

    fn attach_tc(&mut self, program: &'static str, iface: &str) -> Result<(), String> {
        let name = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
        let Some(Ok(tc)) = self
            .ebpf
            .program_mut(program)
            .map(TryInto::<&mut aya::programs::SchedClassifier>::try_into)
        else {
            return Err(format!("{program} missing from the eBPF object"));
        };
        tc.attach(&name, aya::programs::TcAttachType::Ingress)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn attach_lsm(&mut self, spec: &ProgramSpec, hook: &'static str) -> Status {
        attach_btf!(self, spec, Lsm, lsm_links, hook)
    }

    fn attach_btf_tp(&mut self, spec: &ProgramSpec, tracepoint: &'static str) -> Status {
        attach_btf!(
            self,
            spec,
            aya::programs::BtfTracePoint,
            btf_links,
            tracepoint
        )
    }

    /// Whether the BPF LSM exec backend is attached.
    pub fn lsm_exec_attached(&self) -> bool {
        self.lsm_links.contains_key("quarantine_lsm_exec")
    }

    fn detach(&mut self, spec: &ProgramSpec) -> Status {
        if let Some(link) = self.cgroup_links.remove(spec.name)
            && let Err(e) = super::cgroup::detach(&mut self.ebpf, spec.name, link)
        {
            warn!(program = spec.name, error = %e, "detach failed");
        }
        // The attach-by-link program kinds detach alike.
        macro_rules! detach_link {
            ($links:ident, $kind:ty) => {
                if let Some(link) = self.$links.remove(spec.name)
                    && let Some(Ok(p)) = self
                        .ebpf
                        .program_mut(spec.name)
                        .map(TryInto::<&mut $kind>::try_into)
                    && let Err(e) = p.detach(link)
                {
                    warn!(program = spec.name, error = %e, "detach failed");
                }
            };
        }
        detach_link!(lsm_links, Lsm);
        detach_link!(btf_links, aya::programs::BtfTracePoint);
        detach_link!(raw_links, RawTracePoint);
        detach_link!(links, TracePoint);
        Status::Disabled
    }

    pub(crate) fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Whether the kill-on-exec program is attached.
    pub fn exec_guard_attached(&self) -> bool {
        self.links.contains_key(crate::kernel::programs::EXEC_SCHED)
    }

    pub fn statuses(&self) -> &[ProgramStatus] {
        &self.statuses
    }

    /// Kernel ids of the attached programs, by program name (for run statistics).
    pub fn program_ids(&self) -> Vec<(&'static str, u32)> {
        // TC programs are loaded once and attached per interface: counted once loaded.
        let tc = PROGRAMS
            .iter()
            .filter(|p| p.hook == Hook::TcIngress)
            .map(|p| &p.name)
            .collect::<std::collections::BTreeSet<_>>();
        self.links
            .keys()
            .chain(self.raw_links.keys())
            .chain(self.lsm_links.keys())
            .chain(self.btf_links.keys())
            .chain(self.cgroup_links.keys())
            .chain(tc)
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((*name, info.id()))
            })
            .collect()
    }

    /// The ring buffer, handed to the reader task once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or(LoadError::MissingMap(maps::EVENTS))?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            name: maps::EVENTS,
            source,
        })
    }

    /// A second, read-only handle on a map, for the metrics collector.
    pub fn map_handle(&self, name: &'static str) -> Result<MapData, LoadError> {
        let map = self.ebpf.map(name).ok_or(LoadError::MissingMap(name))?;
        let id = map_id(map).map_err(|source| LoadError::Map { name, source })?;
        MapData::from_id(id).map_err(|source| LoadError::Map { name, source })
    }
}

fn map_id(map: &aya::maps::Map) -> Result<u32, aya::maps::MapError> {
    use aya::maps::Map;
    let data: &MapData = match map {
        Map::Array(m)
        | Map::PerCpuArray(m)
        | Map::HashMap(m)
        | Map::LruHashMap(m)
        | Map::PerCpuHashMap(m)
        | Map::PerCpuLruHashMap(m)
        | Map::RingBuf(m)
        // Task storage: aya has no type for it.
        | Map::Unsupported(m) => m,
        _ => {
            return Err(aya::maps::MapError::InvalidName {
                name: "unsupported map type".into(),
            });
        }
    };
    Ok(data.info()?.id())
}

/// A one-line reason: the first line of the error, without an empty verifier log.
pub(crate) fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    let line = line
        .trim_end()
        .trim_end_matches("Verifier output:")
        .trim_end()
        .trim_end_matches('.');
    line.chars().take(200).collect()
}

/// Read-only handles on kernel maps and programs, for scrape-time metrics.
pub struct KernelStats {
    pub stats: aya::maps::PerCpuArray<MapData, u64>,
    pub exec_watch: BpfHashMap<MapData, agent_common::maps::ExecWatchKey, u32>,
    pub qstats: aya::maps::PerCpuArray<MapData, u64>,
    /// Failed inserts into the counting maps (agent_common::maps::MAP_FULL_NAMES).
    pub map_full: aya::maps::PerCpuArray<MapData, u64>,
    pub program_ids: std::sync::Arc<std::sync::Mutex<Vec<(&'static str, u32)>>>,
    pub run_stats: Option<std::os::fd::OwnedFd>,
}

impl Kernel {
    /// Read-only handles for scrape-time metrics. Program run statistics are enabled
    /// for as long as the returned value lives (kernel.bpf_stats via BPF_ENABLE_STATS).
    pub fn kernel_stats(
        &self,
        program_ids: std::sync::Arc<std::sync::Mutex<Vec<(&'static str, u32)>>>,
        program_stats: bool,
    ) -> Result<KernelStats, LoadError> {
        use aya::maps::{Map, PerCpuArray};
        let err = |name| move |source| LoadError::Map { name, source };
        let stats = PerCpuArray::try_from(Map::PerCpuArray(self.map_handle(maps::STATS)?))
            .map_err(err(maps::STATS))?;
        let exec_watch = BpfHashMap::try_from(Map::HashMap(self.map_handle(maps::EXEC_WATCH)?))
            .map_err(err(maps::EXEC_WATCH))?;
        let qstats = PerCpuArray::try_from(Map::PerCpuArray(
            self.map_handle(agent_common::quarantine::QSTATS)?,
        ))
        .map_err(err(agent_common::quarantine::QSTATS))?;
        let map_full = PerCpuArray::try_from(Map::PerCpuArray(self.map_handle(maps::MAP_FULL)?))
            .map_err(err(maps::MAP_FULL))?;
        let run_stats = match program_stats
            .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        {
            None => {
                info!(
                    "eBPF run-time statistics off (agent.program_stats = false); nodeward_program_run* read 0 unless something else enabled them"
                );
                None
            }
            Some(Ok(fd)) => Some(fd),
            Some(Err(e)) => {
                warn!(error = %e, "cannot enable eBPF run-time statistics; nodeward_program_run* stay at 0");
                None
            }
        };
        Ok(KernelStats {
            stats,
            exec_watch,
            qstats,
            map_full,
            program_ids,
            run_stats,
        })
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Wrapped(String, #[source] std::io::Error);

    #[test]
    fn causes_are_added_once() {
        let errno = || std::io::Error::from_raw_os_error(1);
        let attach = Wrapped("`bpf_raw_tracepoint_open` failed".into(), errno());
        assert_eq!(
            super::with_causes(&attach),
            format!("`bpf_raw_tracepoint_open` failed: {}", errno())
        );
        let load = Wrapped(format!("the syscall returned {}", errno()), errno());
        assert_eq!(
            super::with_causes(&load),
            format!("the syscall returned {}", errno())
        );
    }
}
