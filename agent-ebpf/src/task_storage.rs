//! Task local storage (`BPF_MAP_TYPE_TASK_STORAGE`): a value that lives in the task
//! itself and is freed with it, so no exit program and no pid-keyed table are needed.
//! aya-ebpf 0.3 has no wrapper for it; this is the BTF map definition the loader
//! reads from the `.maps` section (the object is linked with BTF), and the two
//! helpers used on it.

use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_map_type, task_struct},
    helpers::generated::bpf_task_storage_get,
};

/// The layout the BTF map convention asks for: each field's type encodes one property
/// (`[i32; N]` is the number N); the pointers are never dereferenced.
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    // Local storage has no size of its own: max_entries 0, never preallocated.
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: the fields are placeholders read by the loader, never by the program.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        TaskStorage {
            r#type: ptr::null(),
            key: ptr::null(),
            value: ptr::null(),
            max_entries: ptr::null(),
            map_flags: ptr::null(),
        }
    }

    #[inline(always)]
    fn as_ptr(&self) -> *mut c_void {
        self as *const Self as *mut c_void
    }

    /// The value `task` holds, if any. `task` must be a pointer the verifier knows as a
    /// task (a `tp_btf` argument, or `bpf_get_current_task_btf`).
    #[inline(always)]
    pub fn get(&self, task: *mut task_struct) -> Option<*mut T> {
        // SAFETY: a lookup without creation; the helper checks its arguments.
        let p = unsafe { bpf_task_storage_get(self.as_ptr(), task, ptr::null_mut(), 0) };
        (!p.is_null()).then_some(p.cast::<T>())
    }

    /// The value `task` holds, created from `init` when it has none. `None` when the
    /// kernel could not allocate it (or the storage was busy on this CPU).
    #[inline(always)]
    pub fn get_or_insert(&self, task: *mut task_struct, init: &mut T) -> Option<*mut T> {
        // SAFETY: as above; `init` is copied by the helper when it creates the value.
        let p = unsafe {
            bpf_task_storage_get(
                self.as_ptr(),
                task,
                ptr::from_mut(init).cast(),
                BPF_LOCAL_STORAGE_GET_F_CREATE.into(),
            )
        };
        (!p.is_null()).then_some(p.cast::<T>())
    }
}
