//! Which command lines of the watched commands reboot: the word table the kernel's
//! guard reads (`ARGV_RULES`) and the same reading in userspace, so the report and the
//! guard never disagree (agent_common::reboot::argv holds the reading itself).

use std::collections::HashMap;

use agent_common::reboot::{
    argv::{
        ARGV_ARG_LEN, ARGV_MAX_ARGS, ARGV_WORD_LEN, ArgvScan, ArgvWordKey, class_rule, word,
        word_key,
    },
    class,
};

/// systemctl options that take their value as the next argument.
const SYSTEMCTL_VALUE_OPTS: &[&str] = &[
    "-t",
    "--type",
    "-M",
    "--machine",
    "-p",
    "--property",
    "-s",
    "--signal",
    "--root",
    "-n",
    "--lines",
    "-o",
    "--output",
    "--message",
    "--when",
    "--job-mode",
    "--kill-whom",
    "--boot-loader-entry",
    "--boot-loader-menu",
    "--reboot-argument",
];

/// Units that reboot, power off or halt when started or isolated (with and without
/// the `.target` suffix, as systemctl accepts both).
const TARGETS: &[&str] = &[
    "reboot",
    "ctrl-alt-del",
    "soft-reboot",
    "poweroff",
    "halt",
    "kexec",
];

const DBUS_MEMBERS: &[&str] = &[
    "Reboot",
    "RebootWithFlags",
    "SoftReboot",
    "PowerOff",
    "PowerOffWithFlags",
    "Halt",
    "HaltWithFlags",
    "KExec",
    "KExecWithFlags",
];

fn key(class: u32, text: &str) -> ArgvWordKey {
    let mut word = [0u8; ARGV_WORD_LEN];
    let n = text.len().min(ARGV_WORD_LEN);
    word[..n].copy_from_slice(&text.as_bytes()[..n]);
    ArgvWordKey { class, word }
}

/// Every entry of `ARGV_RULES`: (class, word) -> bits, the class's own bits under "".
pub fn rules() -> Vec<(ArgvWordKey, u32)> {
    let mut out: HashMap<ArgvWordKey, u32> = HashMap::new();
    let mut add = |class: u32, words: &[&str], bits: u32| {
        for w in words {
            *out.entry(key(class, w)).or_default() |= bits;
        }
    };
    let help = ["--help", "--version"];
    // reboot / shutdown / poweroff / halt: the name is the intent; `shutdown -c`
    // cancels and `-k` only warns. (`-h` is shutdown's "halt", not help.)
    add(class::POWER, &[""], class_rule::DEFAULT);
    add(class::POWER, &help, word::HELP);
    add(class::POWER, &["-c", "-k"], word::VETO);
    // systemctl: the verb, or a reboot target started or isolated; `-H host` acts on
    // another machine.
    add(class::SYSTEMCTL, &help, word::HELP);
    add(class::SYSTEMCTL, &["-h"], word::HELP);
    add(
        class::SYSTEMCTL,
        &["reboot", "soft-reboot", "poweroff", "halt", "kexec"],
        word::VERB,
    );
    add(
        class::SYSTEMCTL,
        &["isolate", "start", "restart"],
        word::TARGET_VERB,
    );
    add(class::SYSTEMCTL, TARGETS, word::TARGET);
    let suffixed: Vec<String> = TARGETS.iter().map(|t| format!("{t}.target")).collect();
    add(
        class::SYSTEMCTL,
        &suffixed.iter().map(String::as_str).collect::<Vec<_>>(),
        word::TARGET,
    );
    add(class::SYSTEMCTL, SYSTEMCTL_VALUE_OPTS, word::VALUE_OPT);
    add(class::SYSTEMCTL, &["-H", "--host", "--host="], word::VETO);
    // telinit / init: runlevels 0 and 6.
    add(class::TELINIT, &["0", "6"], word::VERB);
    // kexec: loads and executes unless it only loads, unloads or asks for status.
    add(class::KEXEC_TOOL, &[""], class_rule::DEFAULT);
    add(class::KEXEC_TOOL, &help, word::HELP);
    add(class::KEXEC_TOOL, &["-h"], word::HELP);
    add(class::KEXEC_TOOL, &["-e", "--exec"], word::FORCE);
    add(
        class::KEXEC_TOOL,
        &[
            "-l",
            "--load",
            "-p",
            "--load-panic",
            "-u",
            "--unload",
            "-S",
            "--status",
        ],
        word::VETO,
    );
    // busctl / dbus-send / gdbus: a reboot method of logind or systemd.
    add(
        class::DBUS,
        &[""],
        class_rule::NEEDS_SERVICE | class_rule::MEMBER_WORDS,
    );
    add(class::DBUS, DBUS_MEMBERS, word::MEMBER);
    add(class::DBUS, &["login1", "systemd1"], word::SERVICE);
    let mut v: Vec<(ArgvWordKey, u32)> = out.into_iter().collect();
    v.sort_by_key(|a| (a.0.class, a.0.word));
    v
}

/// Whether `argv` (argv[0] first) of a command of `class` reboots, read exactly as the
/// kernel's guard reads it.
pub fn reboots(table: &HashMap<ArgvWordKey, u32>, class: u32, argv: &[String]) -> bool {
    let class_bits = table.get(&key(class, "")).copied().unwrap_or(0);
    let member_words = class_bits & class_rule::MEMBER_WORDS != 0;
    let mut scan = ArgvScan::default();
    for arg in argv.iter().skip(1).take(ARGV_MAX_ARGS) {
        let bytes = arg.as_bytes();
        if bytes.len() + 1 >= ARGV_ARG_LEN {
            break;
        }
        let mut buf = [0u8; ARGV_ARG_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        let word = word_key(&buf, bytes.len(), member_words);
        let bits = table
            .get(&ArgvWordKey { class, word })
            .copied()
            .unwrap_or(0);
        scan.feed(bits, bytes.first() == Some(&b'-'), arg == "--");
    }
    scan.reboots(class_bits)
}

/// The rules as a lookup table.
pub fn table() -> HashMap<ArgvWordKey, u32> {
    rules().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(class: u32, args: &[&str]) -> bool {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        reboots(&table(), class, &argv)
    }

    #[test]
    fn command_lines_read_as_the_guard_reads_them() {
        assert!(r(class::POWER, &["shutdown", "-h", "now"]));
        assert!(!r(class::POWER, &["shutdown", "-c"]));
        assert!(!r(class::POWER, &["reboot", "--help"]));
        assert!(r(class::SYSTEMCTL, &["systemctl", "--force", "reboot"]));
        assert!(r(
            class::SYSTEMCTL,
            &["systemctl", "--when=+5min", "poweroff"]
        ));
        assert!(r(
            class::SYSTEMCTL,
            &["systemctl", "-t", "target", "isolate", "reboot.target"]
        ));
        assert!(r(class::SYSTEMCTL, &["systemctl", "start", "reboot"]));
        assert!(!r(class::SYSTEMCTL, &["systemctl", "--host=db1", "reboot"]));
        assert!(!r(
            class::SYSTEMCTL,
            &["systemctl", "status", "reboot.target"]
        ));
        assert!(!r(class::SYSTEMCTL, &["systemctl", "-p", "reboot", "show"]));
        assert!(r(class::TELINIT, &["init", "6"]));
        assert!(!r(class::TELINIT, &["init", "3"]));
        assert!(r(class::KEXEC_TOOL, &["kexec", "-l", "vmlinuz", "-e"]));
        assert!(!r(class::KEXEC_TOOL, &["kexec", "-l", "vmlinuz"]));
        assert!(!r(class::KEXEC_TOOL, &["kexec", "-e", "--help"]));
        assert!(r(
            class::DBUS,
            &[
                "gdbus",
                "call",
                "--system",
                "--dest",
                "org.freedesktop.login1",
                "--object-path",
                "/org/freedesktop/login1",
                "--method",
                "org.freedesktop.login1.Manager.PowerOff",
                "true"
            ]
        ));
        assert!(!r(
            class::DBUS,
            &[
                "busctl",
                "call",
                "org.example.app",
                "/",
                "org.example.App",
                "Reboot"
            ]
        ));
        // A long argument ends the reading (the kernel reads 256 bytes of each).
        let long = "x".repeat(300);
        assert!(!r(class::SYSTEMCTL, &["systemctl", &long, "reboot"]));
    }

    #[test]
    fn every_word_fits_its_key() {
        for (k, bits) in rules() {
            assert_ne!(bits, 0);
            assert!(k.word[ARGV_WORD_LEN - 1] == 0, "{:?} is cut", k);
        }
    }
}
