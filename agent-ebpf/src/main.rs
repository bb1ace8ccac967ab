//! nodeward eBPF programs. One module per detector id (ARCHITECTURE.md); shared maps
//! and helpers live here and in `common`.
#![no_std]
#![no_main]

mod arp;
mod common;
mod corosync;
mod exec;
mod frame;
mod martian;
mod net;
mod probe;
mod quarantine;
mod reboot;
mod secrets;
mod session;
mod task_storage;
mod tcp_reset;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: eBPF programs cannot panic at run time: the verifier rejects any path
    // that reaches here, so this loop is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
