//! Differential test of the interpreter against the real CPU (through KVM).
//!
//! cargo run --release -p tests --example difftest -- --cases N [--seed S] [--class C[,C...]]
//!     [--case I] [--max-units U] [--examples K] [--narrow-limit L] [--include-known-bad]
//!     [--bytes "HEX BYTES"] [--list]
//!
//! Each case is a random 64-bit user-mode program (see tests/src/diff/gen.rs) run under KVM
//! and under the interpreter from the same state; a mismatch is narrowed to the unit that
//! causes it (the shortest mismatching prefix) and counted under that instruction form. The
//! first case of each form is minimised and shown in full. `--case I` replays one case of
//! the seed with its listing and both outcomes. `--include-known-bad` also generates what
//! tests/src/diff/known.rs lists (interpreter bugs not fixed yet). `--bytes "0f b1 d5"` runs
//! those bytes (then UD2) from N random states instead of generated programs. Exit status: 0 without mismatches, 1 with,
//! 2 when KVM cannot be used.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tests::diff::gen::{forms, Class, EXCLUDED};
use tests::diff::{compare, Case, Finding, GenConfig, Harness, Stats};

struct Args {
    cases: u64,
    seed: u64,
    classes: Option<Vec<Class>>,
    case: Option<u64>,
    max_units: usize,
    examples: usize,
    narrow_limit: u64,
    list: bool,
    include_known_bad: bool,
    bytes: Option<Vec<u8>>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        cases: 10_000,
        seed: 1,
        classes: None,
        case: None,
        max_units: 24,
        examples: 30,
        narrow_limit: 20_000,
        list: false,
        include_known_bad: false,
        bytes: None,
    };
    let mut it = std::env::args().skip(1);
    let num = |s: Option<String>, what: &str| -> Result<u64, String> {
        let s = s.ok_or(format!("{what} needs a value"))?;
        let s = s.replace('_', "");
        if let Some(h) = s.strip_prefix("0x") {
            u64::from_str_radix(h, 16).map_err(|e| format!("{what} {s}: {e}"))
        } else {
            s.parse().map_err(|e| format!("{what} {s}: {e}"))
        }
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cases" => a.cases = num(it.next(), "--cases")?,
            "--seed" => a.seed = num(it.next(), "--seed")?,
            "--case" => a.case = Some(num(it.next(), "--case")?),
            "--max-units" => a.max_units = num(it.next(), "--max-units")?.max(1) as usize,
            "--examples" => a.examples = num(it.next(), "--examples")? as usize,
            "--narrow-limit" => a.narrow_limit = num(it.next(), "--narrow-limit")?,
            "--class" => {
                let v = it.next().ok_or("--class needs a value")?;
                let mut list = a.classes.take().unwrap_or_default();
                for name in v.split(',') {
                    let c = Class::by_name(name).ok_or(format!(
                        "unknown class {name:?}; classes: {}",
                        Class::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(" ")
                    ))?;
                    list.push(c);
                }
                a.classes = Some(list);
            }
            "--list" => a.list = true,
            "--include-known-bad" => a.include_known_bad = true,
            "--bytes" => {
                let v = it.next().ok_or("--bytes needs a value")?;
                let hex: String = v.chars().filter(|c| c.is_ascii_hexdigit()).collect();
                if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 512 {
                    return Err(format!("--bytes {v:?}: 1 to 256 bytes in hex"));
                }
                let b = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
                a.bytes = Some(b);
            }
            "-h" | "--help" => {
                println!("{}", include_str!("difftest.rs").lines().take_while(|l| l.starts_with("//!")).map(|l| l.trim_start_matches("//!").trim_start()).collect::<Vec<_>>().join("\n"));
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

fn list() {
    println!("classes (forms generated from iced-x86's tables; * = in the default mix):");
    for c in Class::ALL {
        let star = if c.default_on() && c.host_supports() { "*" } else { " " };
        let host = if c.host_supports() { "" } else { " [host CPU lacks it]" };
        println!("  {star} {:<11} {:>4} forms  {}{host}", c.name(), forms()[c as usize].len(), c.describe());
    }
    println!("known interpreter bugs (avoided unless --include-known-bad):");
    for k in tests::diff::known::KNOWN_BAD {
        println!("  {}: {}", k.id, k.what);
    }
    println!("known differences in the comparison (counted apart):");
    for (f, why) in compare::KNOWN {
        println!("  {f}: {why}");
    }
    println!("excluded forms:");
    for (code, why) in EXCLUDED {
        println!("  {code:?}: {why}");
    }
    println!("  16-bit near branches/CALL/RET (66 prefix): vendor-specific in 64-bit mode");
    println!("  REPNE on MOVS/STOS/LODS: reserved");
    println!("  POPF of a value with TF set: single-step traps are not generated");
    println!("  16-bit SHLD/SHRD with a count above 16: result undefined");
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("difftest: {e}");
            std::process::exit(2);
        }
    };
    if args.list {
        list();
        return;
    }
    let mut cfg = match &args.classes {
        Some(list) => GenConfig { classes: list.clone(), ..GenConfig::default_mix() },
        None => GenConfig::default_mix(),
    };
    cfg.max_units = args.max_units;
    cfg.include_known_bad = args.include_known_bad;
    cfg.classes.retain(|c| {
        if c.unimplemented() {
            eprintln!("difftest: class {} generates nothing yet: left out", c.name());
            false
        } else if !c.host_supports() {
            eprintln!("difftest: the host CPU cannot run class {}: left out", c.name());
            false
        } else {
            true
        }
    });
    if cfg.classes.is_empty() {
        eprintln!("difftest: no class left to generate");
        std::process::exit(2);
    }
    let mut h = match Harness::with_kvm() {
        Ok(h) => h,
        Err(why) => {
            eprintln!("difftest: KVM cannot be the oracle here: {why}");
            std::process::exit(2);
        }
    };
    if let Some(b) = &args.bytes {
        bytes(&mut h, b, args.seed, args.cases, args.examples);
        return;
    }
    if let Some(i) = args.case {
        replay(&mut h, &cfg, args.seed, i);
        return;
    }
    println!(
        "difftest: {} cases, seed {:#x}, classes {}",
        args.cases,
        args.seed,
        cfg.classes.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
    );
    let start = Instant::now();
    let mut last = start;
    let mut stats = Stats::default();
    let mut findings: BTreeMap<String, Finding> = BTreeMap::new();
    let mut narrowed = 0u64;
    let mut gen_time = Duration::ZERO;
    for i in 0..args.cases {
        let t = Instant::now();
        let case = Case::generate(&cfg, args.seed, i);
        gen_time += t.elapsed();
        let checked = h.check(&case);
        stats.count_case(&case, &checked);
        if !checked.diffs.is_empty() {
            stats.mismatching_cases += 1;
            let mut form = "unclassified (narrowing limit reached)".to_string();
            if narrowed < args.narrow_limit {
                narrowed += 1;
                form = "unclassified (did not reproduce on a prefix)".into();
                let culprit = h.culprit(&case);
                if culprit.is_none() && h.check(&case).diffs.is_empty() {
                    // Not even the whole case mismatches again: a one-off (the oracle's or the
                    // interpreter's); kept with the diffs of the first run.
                    form = "not reproducible (the whole case agreed when run again)".into();
                    if !findings.contains_key(&form) {
                        let f = Finding { form: form.clone(), case: case.clone(), checked, seed: args.seed, index: i };
                        println!("one-off mismatch:\n{}", f.report());
                        findings.insert(form.clone(), f);
                    }
                    println!("  mismatch: case {i}: {form}");
                    *stats.by_form.entry(form).or_default() += 1;
                    continue;
                }
                if let Some(c) = culprit {
                    form = c.form_of_unit(c.units.len() - 1);
                    if !findings.contains_key(&form) && findings.len() < args.examples {
                        let m = h.minimize(&c);
                        let ck = h.check(&m);
                        let f = Finding { form: form.clone(), case: m, checked: ck, seed: args.seed, index: i };
                        if findings.is_empty() {
                            println!("first mismatch:\n{}", f.report());
                        }
                        findings.insert(form.clone(), f);
                    }
                }
            }
            println!("  mismatch: case {i}: {form}");
            *stats.by_form.entry(form).or_default() += 1;
        }
        if last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            let s = start.elapsed().as_secs_f64();
            println!(
                "  {} cases ({:.0}/s), {} instructions, {} mismatching, {} forms",
                stats.cases,
                stats.cases as f64 / s,
                stats.instructions,
                stats.mismatching_cases,
                stats.by_form.len()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("\n==== summary ====");
    println!(
        "cases: {}   instructions: {}   time: {:.1} s   {:.0} cases/s   {:.0} instructions/s   (generation {:.1} s)",
        stats.cases,
        stats.instructions,
        secs,
        stats.cases as f64 / secs,
        stats.instructions as f64 / secs,
        gen_time.as_secs_f64()
    );
    println!("how cases ended (KVM):");
    for (k, v) in &stats.ends {
        println!("  {v:>9}  {k}");
    }
    println!("units by class:");
    for (k, v) in &stats.classes {
        println!("  {v:>9}  {k}");
    }
    for (field, n) in &stats.known {
        let why = compare::KNOWN.iter().find(|(f, _)| f == field).map_or("", |(_, w)| *w);
        println!("known interpreter difference in {n} cases: {field}: {why}");
    }
    println!("mismatching cases: {}", stats.mismatching_cases);
    if !stats.by_form.is_empty() {
        println!("mismatches by instruction form:");
        let mut v: Vec<_> = stats.by_form.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        for (k, n) in v {
            println!("  {n:>9}  {k}");
        }
        println!("\n==== one narrowed example per form ====");
        for f in findings.values() {
            println!("{}", f.report());
            println!("replay: cargo run --release -p tests --example difftest -- --seed {:#x} --case {}{}\n", f.seed, f.index, class_arg(&cfg));
        }
        std::process::exit(1);
    }
}

fn bytes(h: &mut Harness, bytes: &[u8], seed: u64, cases: u64, examples: usize) {
    let mut shown = 0;
    let mut fields: BTreeMap<String, u64> = BTreeMap::new();
    let mut bad = 0;
    for i in 0..cases {
        let case = Case::from_bytes(seed, i, bytes);
        let ck = h.check(&case);
        if ck.diffs.is_empty() {
            continue;
        }
        bad += 1;
        for d in &ck.diffs {
            *fields.entry(d.field.split(' ').next().unwrap_or("").to_string()).or_default() += 1;
        }
        if shown < examples.min(3) {
            shown += 1;
            let f = Finding { form: "--bytes".into(), case, checked: ck, seed, index: i };
            println!("{}", f.report());
        }
    }
    println!("{cases} random states, {bad} mismatching");
    for (f, n) in &fields {
        println!("  {n:>7}  {f}");
    }
    if bad > 0 {
        std::process::exit(1);
    }
}

fn class_arg(cfg: &GenConfig) -> String {
    let mut s = if cfg.classes == GenConfig::default_mix().classes {
        String::new()
    } else {
        format!(" --class {}", cfg.classes.iter().map(|c| c.name()).collect::<Vec<_>>().join(","))
    };
    if cfg.include_known_bad {
        s += " --include-known-bad";
    }
    if cfg.max_units != GenConfig::default_mix().max_units {
        s += &format!(" --max-units {}", cfg.max_units);
    }
    s
}

fn replay(h: &mut Harness, cfg: &GenConfig, seed: u64, i: u64) {
    let case = Case::generate(cfg, seed, i);
    let ck = h.check(&case);
    let mark = compare::frame_of(&ck.kvm).and_then(|f| case.layout.index_at(f.rip));
    println!("case {i} of seed {seed:#x}:\n{}", case.listing(mark));
    println!("initial state:\n{}", case.describe_start());
    println!("kvm:\n{}", compare::describe_outcome(&ck.kvm));
    println!("interp:\n{}", compare::describe_outcome(&ck.interp));
    if ck.diffs.is_empty() {
        println!("no difference");
        return;
    }
    println!("differing:");
    for d in &ck.diffs {
        println!("  {d}");
    }
    if let Some(c) = h.culprit(&case) {
        let m = h.minimize(&c);
        let ck = h.check(&m);
        let f = Finding { form: m.form_of_unit(m.units.len() - 1), case: m, checked: ck, seed, index: i };
        println!("\nnarrowed:\n{}", f.report());
    }
    std::process::exit(1);
}
