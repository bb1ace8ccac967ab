//! Facts read from the running kernel's BTF (/sys/kernel/btf/vmlinux): struct member
//! offsets for the eBPF programs (Rust eBPF has no CO-RE relocations).

use agent_common::offsets::{KernelOffsets, OFFSET_ABSENT};
use btf_rs::{Btf, Type};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Byte offset of `member` inside `struct name`, searching anonymous struct/union
/// members too. `None` if the struct or member is not there (or is a bitfield).
pub fn member_offset(btf: &Btf, name: &str, member: &str) -> Option<u32> {
    let types = btf.resolve_types_by_name(name).ok()?;
    types.iter().find_map(|t| match t {
        Type::Struct(s) => find_member(btf, s, member, 0),
        _ => None,
    })
}

fn find_member(btf: &Btf, s: &btf_rs::Struct, member: &str, base_bits: u32) -> Option<u32> {
    for m in &s.members {
        let bits = base_bits + m.bit_offset();
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == member {
            return (m.bitfield_size().unwrap_or(0) == 0 && bits.is_multiple_of(8))
                .then_some(bits / 8);
        }
        if name.is_empty()
            && let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m)
            && let Some(off) = find_member(btf, &inner, member, bits)
        {
            return Some(off);
        }
    }
    None
}

/// Every `struct.member` the programs need, as exported in metrics.
pub const FIELDS: &[&str] = &[
    "task_struct.real_parent",
    "task_struct.comm",
    "task_struct.tgid",
    "task_struct.loginuid",
    "task_struct.sessionid",
    "task_struct.mm",
    "mm_struct.arg_start",
    "mm_struct.arg_end",
    "linux_binprm.file",
    "file.f_path",
    "path.dentry",
    "dentry.d_name",
    "qstr.name",
    "sk_buff.dev",
    "sk_buff.head",
    "sk_buff.network_header",
    "net_device.ifindex",
    "net_device.nd_net",
    "net.ns",
    "ns_common.inum",
    "task_struct.nsproxy",
    "nsproxy.net_ns",
    "task_struct.files",
    "files_struct.fdt",
    "fdtable.fd",
    "fdtable.max_fds",
    "file.f_inode",
    "file.f_flags",
    "inode.i_ino",
    "inode.i_sb",
    "super_block.s_dev",
    "sk_buff.protocol",
];

/// Two nested offsets, or absent if either is.
fn sum(a: u32, b: u32) -> u32 {
    if a == OFFSET_ABSENT || b == OFFSET_ABSENT {
        OFFSET_ABSENT
    } else {
        a + b
    }
}

/// Offsets the programs need, and the names of those this kernel lacks.
pub fn kernel_offsets(btf: &Btf) -> (KernelOffsets, Vec<&'static str>) {
    let mut missing = Vec::new();
    let mut get = |field: &'static str| {
        let (name, member) = field.split_once('.').expect("struct.member");
        member_offset(btf, name, member).unwrap_or_else(|| {
            missing.push(field);
            OFFSET_ABSENT
        })
    };
    let offsets = KernelOffsets {
        task_real_parent: get("task_struct.real_parent"),
        task_tgid: get("task_struct.tgid"),
        task_loginuid: get("task_struct.loginuid"),
        task_sessionid: get("task_struct.sessionid"),
        task_mm: get("task_struct.mm"),
        mm_arg_start: get("mm_struct.arg_start"),
        mm_arg_end: get("mm_struct.arg_end"),
        binprm_file: get("linux_binprm.file"),
        file_dentry: sum(get("file.f_path"), get("path.dentry")),
        dentry_name: sum(get("dentry.d_name"), get("qstr.name")),
        skb_dev: get("sk_buff.dev"),
        skb_head: get("sk_buff.head"),
        skb_network_header: get("sk_buff.network_header"),
        netdev_ifindex: get("net_device.ifindex"),
        netdev_net: get("net_device.nd_net"),
        net_inum: sum(get("net.ns"), get("ns_common.inum")),
        task_nsproxy: get("task_struct.nsproxy"),
        nsproxy_net_ns: get("nsproxy.net_ns"),
        task_files: get("task_struct.files"),
        files_fdt: get("files_struct.fdt"),
        fdt_fd: get("fdtable.fd"),
        fdt_max_fds: get("fdtable.max_fds"),
        file_inode: get("file.f_inode"),
        file_flags: get("file.f_flags"),
        inode_ino: get("inode.i_ino"),
        inode_sb: get("inode.i_sb"),
        sb_dev: get("super_block.s_dev"),
        skb_protocol: get("sk_buff.protocol"),
        task_comm: get("task_struct.comm"),
        _pad: 0,
    };
    (offsets, missing)
}

/// Names of an enum's values (e.g. `sk_rst_reason`, `skb_drop_reason`), prefix
/// stripped, lower case: resolved from the running kernel, never hard-coded.
pub fn enum_names(
    btf: &Btf,
    name: &str,
    strip_prefix: &str,
) -> std::collections::HashMap<u32, String> {
    let mut out = std::collections::HashMap::new();
    for t in btf.resolve_types_by_name(name).unwrap_or_default() {
        if let Type::Enum(e) = t {
            for m in &e.members {
                if let Ok(n) = btf.resolve_name(m) {
                    out.insert(
                        m.val(),
                        n.trim_start_matches(strip_prefix).to_ascii_lowercase(),
                    );
                }
            }
        }
    }
    out
}
