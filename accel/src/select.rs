//! `--accel interp|kvm|auto`: which backend runs the CPU, and why.
//!
//! KVM is only worth it on hardware virtualization (VMX or SVM). A paravirtual KVM such as PVM
//! (nested clouds) runs 64-bit user code natively but emulates real mode, protected mode and
//! ring 0 in the host kernel at a few million instructions per second, far slower than the
//! interpreter, so `auto` leaves it alone.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelKind {
    Interp,
    Kvm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    Interp,
    Kvm,
    Auto,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "interp" => Ok(AccelChoice::Interp),
            "kvm" => Ok(AccelChoice::Kvm),
            "auto" => Ok(AccelChoice::Auto),
            _ => Err(format!("unknown accelerator {s:?}: expected interp, kvm or auto")),
        }
    }
}

/// What the host offers for KVM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVirt {
    pub kvm_device: Result<(), String>,
    /// "vmx", "svm", or `None` when the CPU flags name neither.
    pub hardware: Option<&'static str>,
}

pub fn probe_host() -> HostVirt {
    let kvm_device = probe_kvm_device(Path::new("/dev/kvm"));
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = flags.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let hardware = flags.split_whitespace().find_map(|f| match f {
        "vmx" => Some("vmx"),
        "svm" => Some("svm"),
        _ => None,
    });
    HostVirt { kvm_device, hardware }
}

fn probe_kvm_device(path: &Path) -> Result<(), String> {
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{} does not exist", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(format!("no permission to open {} (add yourself to the kvm group)", path.display()))
        }
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

/// Picks the backend. Returns the choice and a one-line reason for the user.
pub fn choose_backend(choice: AccelChoice, host: &HostVirt) -> Result<(AccelKind, String), String> {
    match choice {
        AccelChoice::Interp => Ok((AccelKind::Interp, "interpreter (as asked)".into())),
        AccelChoice::Kvm => match &host.kvm_device {
            Ok(()) => Ok((
                AccelKind::Kvm,
                match host.hardware {
                    Some(hw) => format!("KVM (as asked; hardware virtualization: {hw})"),
                    None => "KVM (as asked; this host's KVM is paravirtual: only 64-bit user code runs fast)".into(),
                },
            )),
            Err(e) => Err(format!("--accel kvm: KVM cannot be used: {e}")),
        },
        AccelChoice::Auto => match (&host.kvm_device, host.hardware) {
            (Ok(()), Some(hw)) => Ok((AccelKind::Kvm, format!("KVM (hardware virtualization: {hw})"))),
            (Ok(()), None) => Ok((
                AccelKind::Interp,
                "interpreter (/dev/kvm is paravirtual here, without VMX or SVM; it would run most guest code far slower)".into(),
            )),
            (Err(e), _) => Ok((AccelKind::Interp, format!("interpreter (KVM unavailable: {e})"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_hardware_kvm_only() {
        let hw = HostVirt { kvm_device: Ok(()), hardware: Some("vmx") };
        assert_eq!(choose_backend(AccelChoice::Auto, &hw).unwrap().0, AccelKind::Kvm);
        let pv = HostVirt { kvm_device: Ok(()), hardware: None };
        assert_eq!(choose_backend(AccelChoice::Auto, &pv).unwrap().0, AccelKind::Interp);
        let none = HostVirt { kvm_device: Err("missing".into()), hardware: Some("svm") };
        let (k, why) = choose_backend(AccelChoice::Auto, &none).unwrap();
        assert_eq!(k, AccelKind::Interp);
        assert!(why.contains("missing"));
        assert!(choose_backend(AccelChoice::Kvm, &none).is_err());
        assert_eq!(choose_backend(AccelChoice::Kvm, &pv).unwrap().0, AccelKind::Kvm);
    }

    #[test]
    fn parses_names() {
        assert_eq!("auto".parse::<AccelChoice>(), Ok(AccelChoice::Auto));
        assert!("qemu".parse::<AccelChoice>().is_err());
    }
}
