//! Kernel struct offsets, resolved from BTF by userspace at start-up and written into
//! the `KERNEL_OFFSETS` global of the eBPF object (Rust eBPF has no CO-RE).

/// Marks an offset that this kernel does not have (e.g. CONFIG_AUDIT off).
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Name of the global in the eBPF object.
pub const KERNEL_OFFSETS_GLOBAL: &str = "KERNEL_OFFSETS";

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_parent` (pointer).
    pub task_real_parent: u32,
    /// `task_struct.tgid` (pid_t).
    pub task_tgid: u32,
    /// `task_struct.loginuid` (kuid_t: u32 at offset 0).
    pub task_loginuid: u32,
    /// `task_struct.sessionid` (unsigned int).
    pub task_sessionid: u32,
    /// `task_struct.mm` (pointer).
    pub task_mm: u32,
    /// `mm_struct.arg_start` (unsigned long).
    pub mm_arg_start: u32,
    /// `mm_struct.arg_end` (unsigned long).
    pub mm_arg_end: u32,
    /// `linux_binprm.file` (pointer), for the BPF LSM exec backend.
    pub binprm_file: u32,
    /// `file.f_path` + `path.dentry` (pointer).
    pub file_dentry: u32,
    /// `dentry.d_name` + `qstr.name` (pointer to the basename).
    pub dentry_name: u32,
    /// `sk_buff.dev` (pointer).
    pub skb_dev: u32,
    /// `sk_buff.head` (pointer).
    pub skb_head: u32,
    /// `sk_buff.network_header` (u16 offset from head).
    pub skb_network_header: u32,
    /// `net_device.ifindex` (int).
    pub netdev_ifindex: u32,
    /// `net_device.nd_net` (possible_net_t: pointer to struct net).
    pub netdev_net: u32,
    /// `net.ns` + `ns_common.inum` (the netns inode).
    pub net_inum: u32,
    /// `task_struct.nsproxy` (pointer).
    pub task_nsproxy: u32,
    /// `nsproxy.net_ns` (pointer to struct net).
    pub nsproxy_net_ns: u32,
    /// `task_struct.files` (pointer).
    pub task_files: u32,
    /// `files_struct.fdt` (pointer).
    pub files_fdt: u32,
    /// `fdtable.fd` (pointer to the array of `struct file *`).
    pub fdt_fd: u32,
    /// `fdtable.max_fds` (unsigned int).
    pub fdt_max_fds: u32,
    /// `file.f_inode` (pointer).
    pub file_inode: u32,
    /// `file.f_flags` (unsigned int).
    pub file_flags: u32,
    /// `inode.i_ino` (unsigned long).
    pub inode_ino: u32,
    /// `inode.i_sb` (pointer).
    pub inode_sb: u32,
    /// `super_block.s_dev` (dev_t).
    pub sb_dev: u32,
    /// `sk_buff.protocol` (__be16).
    pub skb_protocol: u32,
    /// `task_struct.comm` (char[16]).
    pub task_comm: u32,
    /// Keeps the size a multiple of 8 (the global is written as one value).
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 120);

impl KernelOffsets {
    pub const ABSENT: Self = Self {
        task_real_parent: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_loginuid: OFFSET_ABSENT,
        task_sessionid: OFFSET_ABSENT,
        task_mm: OFFSET_ABSENT,
        mm_arg_start: OFFSET_ABSENT,
        mm_arg_end: OFFSET_ABSENT,
        binprm_file: OFFSET_ABSENT,
        file_dentry: OFFSET_ABSENT,
        dentry_name: OFFSET_ABSENT,
        skb_dev: OFFSET_ABSENT,
        skb_head: OFFSET_ABSENT,
        skb_network_header: OFFSET_ABSENT,
        netdev_ifindex: OFFSET_ABSENT,
        netdev_net: OFFSET_ABSENT,
        net_inum: OFFSET_ABSENT,
        task_nsproxy: OFFSET_ABSENT,
        nsproxy_net_ns: OFFSET_ABSENT,
        task_files: OFFSET_ABSENT,
        files_fdt: OFFSET_ABSENT,
        fdt_fd: OFFSET_ABSENT,
        fdt_max_fds: OFFSET_ABSENT,
        file_inode: OFFSET_ABSENT,
        file_flags: OFFSET_ABSENT,
        inode_ino: OFFSET_ABSENT,
        inode_sb: OFFSET_ABSENT,
        sb_dev: OFFSET_ABSENT,
        skb_protocol: OFFSET_ABSENT,
        task_comm: OFFSET_ABSENT,
        _pad: 0,
    };
}

crate::user_pod!(KernelOffsets);
