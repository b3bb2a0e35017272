//! The committed images in `build/` must be exactly what `build.sh` makes from `asm/`, `bios/`
//! and `boot/`.
//! Needs NASM; without it the test says so and passes (`scripts/test` installs NASM first).

use std::path::{Path, PathBuf};
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nasm_version() -> Option<String> {
    let out = Command::new("nasm").arg("-v").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn committed_images_match_build_sh() {
    let Some(version) = nasm_version() else {
        println!("skipped: committed_images_match_build_sh needs nasm (apt-get install nasm)");
        return;
    };
    let out = std::env::temp_dir().join(format!("ferrite-roms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new("bash").arg(crate_dir().join("build.sh")).arg(&out).output().expect("run build.sh");
    assert!(
        run.status.success(),
        "build.sh failed ({}):\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    let mut mismatches = Vec::new();
    let images = roms::ALL.iter().chain(roms::FIRMWARE).map(|(n, i)| (format!("{n}.bin"), *i));
    for (file, committed) in images.chain(roms::BOOT.iter().map(|(n, i)| (format!("{n}.img"), *i))) {
        let built = std::fs::read(out.join(&file)).unwrap_or_default();
        if built != committed {
            mismatches.push(file);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        mismatches.is_empty(),
        "{mismatches:?}: roms/build/ differs from what roms/build.sh makes with {version}; \
         run roms/build.sh and commit roms/build/"
    );
}

#[test]
fn every_source_has_a_committed_image_and_a_name() {
    let asm = crate_dir().join("asm");
    let mut sources: Vec<String> = std::fs::read_dir(&asm)
        .expect("roms/asm")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "asm"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    sources.sort();
    let mut names: Vec<String> = roms::NAMES.iter().map(|s| s.to_string()).collect();
    names.sort();
    assert_eq!(sources, names, "roms/asm/*.asm and roms::NAMES disagree");
    for name in &names {
        assert!(Path::new(&crate_dir().join("build").join(format!("{name}.bin"))).is_file(), "{name}.bin");
    }
    let boot: Vec<String> = std::fs::read_dir(crate_dir().join("boot"))
        .expect("roms/boot")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "asm"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let named: Vec<String> = roms::BOOT.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(boot, named, "roms/boot/*.asm and roms::BOOT disagree");
}
