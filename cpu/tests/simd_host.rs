//! The host processor as the oracle for MMX and SSE through SSE4.2: every instruction listed
//! in `asm/simd_insns.asm` runs on random register, MXCSR (rounding, DAZ, FTZ; exceptions
//! masked), flag and memory contents both natively and on the interpreter in 64-bit mode,
//! and everything it can touch is compared: XMM and MMX registers, MXCSR, the arithmetic
//! flags, general registers, the x87 tag word and TOP, and the memory operand.
//!
//! `SIMD_HOST_ITERS` sets the number of random states per instruction (default 150);
//! `SIMD_DUMP=1` prints the inputs of every differing run.
//!
//! Only on x86-64 Linux hosts with SSE4.2, PCLMULQDQ and the Intel RCPPS/RSQRTPS tables (the
//! approximations differ between vendors: those two instructions are skipped elsewhere).
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

use cpu::flat::FlatBus;
use cpu::state::{reg, sreg};
use cpu::{Cpu, CpuState, Segment, Stop};

const IMAGE: &[u8] = include_bytes!("asm/simd_insns.bin");
const SOURCE: &str = include_str!("asm/simd_insns.asm");

// The state buffer the prologue loads and the epilogue stores (see simd_insns.asm).
const ST_SIZE: usize = 0x410;
const MXCSR: usize = 0x100;
const RFLAGS: usize = 0x108;
const GPRS: usize = 0x110;
const MM: usize = 0x180;
const FXSAVE: usize = 0x200;
const MEM_SIZE: usize = 64;

// Guest layout.
const G_CODE: u64 = 0x10000;
const G_HLT: u64 = 0x20000;
const G_STACK: u64 = 0x2FFF8;
const G_STATE: u64 = 0x40000;
const G_MEM: u64 = 0x50000;
const G_VECTOR: u64 = 0x60000;
const G_IDT: u64 = 0x3000;
const G_GDT: u64 = 0x500;
const G_STUBS: u64 = 0x4000;

extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
}

/// A page the host can write code into and run.
struct HostCode(*mut u8);

impl HostCode {
    fn new() -> HostCode {
        // SAFETY: an anonymous private mapping; the result is checked.
        let p = unsafe { mmap(std::ptr::null_mut(), 4096, 7, 0x22, -1, 0) };
        assert!(!p.is_null() && p as isize != -1, "mmap of an executable page failed");
        HostCode(p)
    }

    fn run(&self, code: &[u8], state: &mut [u8], mem: &mut [u8]) {
        assert!(code.len() <= 4096);
        // SAFETY: the page is ours, writable and executable; the code is the prologue, one
        // instruction whose only memory operand is the 64-byte buffer RSI (or RDI) points to,
        // and the epilogue, which restores every callee-saved register, MXCSR and the x87
        // stack (EMMS) before returning.
        unsafe {
            std::ptr::copy_nonoverlapping(code.as_ptr(), self.0, code.len());
            let f: extern "sysv64" fn(*mut u8, *mut u8) = std::mem::transmute(self.0);
            f(state.as_mut_ptr(), mem.as_mut_ptr());
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// An interesting single: zeros, denormals, infinities, NaNs, edges, ordinary values.
    fn f32(&mut self) -> u32 {
        let x = self.next();
        let sign = (x as u32 & 1) << 31;
        let exp = match (x >> 1) & 15 {
            0 => 0,
            1 => 0xFF,
            2 => 1,
            3 => 0xFE,
            4..=9 => 120 + (self.next() % 16) as u32,
            _ => (self.next() % 256) as u32,
        };
        let frac = match (x >> 5) & 7 {
            0 => 0,
            1 => 0x7F_FFFF,
            2 => 1,
            3 => 0x40_0000,
            _ => self.next() as u32 & 0x7F_FFFF,
        };
        sign | (exp << 23) | frac
    }

    fn f64(&mut self) -> u64 {
        let x = self.next();
        let sign = (x & 1) << 63;
        let exp = match (x >> 1) & 15 {
            0 => 0,
            1 => 0x7FF,
            2 => 1,
            3 => 0x7FE,
            4..=9 => 1016 + self.next() % 16,
            10 => 1023 - 126 + self.next() % 4,
            _ => self.next() % 2048,
        };
        let frac = match (x >> 5) & 7 {
            0 => 0,
            1 => (1 << 52) - 1,
            2 => 1,
            3 => 1 << 51,
            _ => self.next() & ((1 << 52) - 1),
        };
        sign | (exp << 52) | frac
    }

    /// A quadword of some kind: two singles, a double, small integers, text, or noise.
    fn quad(&mut self) -> u64 {
        match self.next() % 8 {
            0 | 1 => u64::from(self.f32()) | (u64::from(self.f32()) << 32),
            2 | 3 => self.f64(),
            4 => {
                let alphabet = [0u8, b'a', b'b', b'c', b'a', b'b', 0x80, 0xFF];
                let mut b = [0u8; 8];
                for x in b.iter_mut() {
                    *x = alphabet[(self.next() % 8) as usize];
                }
                u64::from_le_bytes(b)
            }
            5 => {
                // Four small words, either sign.
                let mut v = 0u64;
                for k in 0..4 {
                    v |= u64::from(((self.next() % 5) as u16).wrapping_sub(2)) << (16 * k);
                }
                v
            }
            _ => self.next(),
        }
    }
}

fn put(buf: &mut [u8], off: usize, v: &[u8]) {
    buf[off..off + v.len()].copy_from_slice(v);
}

fn random_state(r: &mut Rng) -> ([u8; ST_SIZE], [u8; MEM_SIZE]) {
    let mut st = [0u8; ST_SIZE];
    for k in 0..32 {
        put(&mut st, 8 * k, &r.quad().to_le_bytes());
    }
    let rc = (r.next() % 4) as u32;
    let mut mxcsr = 0x1F80 | (rc << 13);
    if matches!(r.next() % 3, 0) {
        mxcsr |= 0x40;
    }
    if matches!(r.next() % 3, 0) {
        mxcsr |= 0x8000;
    }
    if matches!(r.next() % 2, 0) {
        mxcsr |= (r.next() & 0x3F) as u32;
    }
    put(&mut st, MXCSR, &mxcsr.to_le_bytes());
    let flags = (r.next() & 0x8D5) | 2;
    put(&mut st, RFLAGS, &flags.to_le_bytes());
    for k in 0..8 {
        let v = match (k, r.next() % 3) {
            // RAX and RDX are PCMPESTR*'s lengths: often small, either sign.
            (0 | 2, 0 | 1) => ((r.next() % 41) as i64 - 20) as u64,
            _ => r.next(),
        };
        put(&mut st, GPRS + 8 * k, &v.to_le_bytes());
    }
    for k in 0..8 {
        put(&mut st, MM + 8 * k, &r.quad().to_le_bytes());
    }
    // The x87 state the prologue's FXRSTOR loads: as FNINIT leaves it.
    put(&mut st, FXSAVE, &0x037Fu16.to_le_bytes());
    put(&mut st, FXSAVE + 24, &0x1F80u32.to_le_bytes());
    let mut mem = [0u8; MEM_SIZE];
    for k in 0..8 {
        put(&mut mem, 8 * k, &r.quad().to_le_bytes());
    }
    (st, mem)
}

/// The interpreter, in 64-bit mode with SSE enabled, running the same code.
struct Guest {
    cpu: Cpu,
    bus: FlatBus,
}

impl Guest {
    fn new(code: &[u8]) -> Guest {
        let mut bus = FlatBus::new(1 << 20);
        let ram = bus.ram_mut();
        // PML4 -> PDPT with one 1 GiB identity page.
        put(ram, 0x1000, &0x2003u64.to_le_bytes());
        put(ram, 0x2000, &0x83u64.to_le_bytes());
        // GDT: null, 64-bit code (0x08), data (0x10).
        put(ram, G_GDT as usize, &0u64.to_le_bytes());
        put(ram, G_GDT as usize + 8, &0x00AF_9A00_0000_FFFFu64.to_le_bytes());
        put(ram, G_GDT as usize + 16, &0x00CF_9200_0000_FFFFu64.to_le_bytes());
        // IDT: every exception vector records its number and halts.
        for v in 0..32u64 {
            let stub = G_STUBS + 16 * v;
            let mut s = vec![0xC6, 0x04, 0x25];
            s.extend_from_slice(&(G_VECTOR as u32).to_le_bytes());
            s.extend_from_slice(&[v as u8, 0xF4]);
            put(ram, stub as usize, &s);
            let gate = (stub & 0xFFFF) | (8 << 16) | (0x8E00u64 << 32) | ((stub >> 16 & 0xFFFF) << 48);
            put(ram, (G_IDT + 16 * v) as usize, &gate.to_le_bytes());
            put(ram, (G_IDT + 16 * v + 8) as usize, &(stub >> 32).to_le_bytes());
        }
        put(ram, G_CODE as usize, code);
        ram[G_HLT as usize] = 0xF4;
        put(ram, G_STACK as usize, &G_HLT.to_le_bytes());
        Guest { cpu: Cpu::new(), bus }
    }

    fn run(&mut self, state: &mut [u8], mem: &mut [u8]) -> Result<(), String> {
        let ram = self.bus.ram_mut();
        put(ram, G_STATE as usize, state);
        put(ram, G_MEM as usize, mem);
        ram[G_VECTOR as usize] = 0xFF;
        // Long mode: PG, NE, ET, MP, PE; PAE, OSFXSR, OSXMMEXCPT, OSXSAVE; LME, LMA.
        let mut s = CpuState { cr0: 0x8000_0033, cr3: 0x1000, cr4: 0x20 | 0x200 | 0x400 | 0x4_0000, efer: 0x500, xcr0: 3, ..CpuState::default() };
        s.seg[sreg::CS] = Segment { selector: 8, base: 0, limit: 0xFFFF_FFFF, attr: 0xA09B };
        for k in [sreg::DS, sreg::ES, sreg::SS, sreg::FS, sreg::GS] {
            s.seg[k] = Segment { selector: 0x10, base: 0, limit: 0xFFFF_FFFF, attr: 0xC093 };
        }
        s.gdtr.base = G_GDT;
        s.gdtr.limit = 23;
        s.idtr.base = G_IDT;
        s.idtr.limit = 32 * 16 - 1;
        s.rip = G_CODE;
        s.gpr[reg::RSP] = G_STACK;
        s.gpr[reg::RDI] = G_STATE;
        s.gpr[reg::RSI] = G_MEM;
        self.cpu.set_state(&s);
        let mut n = 0;
        loop {
            let r = self.cpu.run(&mut self.bus, 10_000);
            n += r.retired;
            match r.stop {
                Stop::Halted => break,
                Stop::Budget if n < 100_000 => {}
                other => return Err(format!("{other:?}")),
            }
        }
        let ram = self.bus.ram();
        let v = ram[G_VECTOR as usize];
        if v != 0xFF {
            let recent = self.cpu.recent_instructions();
            let tail = recent[recent.len().saturating_sub(4)..].join(" | ");
            return Err(format!("exception {v} after {tail}"));
        }
        state.copy_from_slice(&ram[G_STATE as usize..G_STATE as usize + ST_SIZE]);
        mem.copy_from_slice(&ram[G_MEM as usize..G_MEM as usize + MEM_SIZE]);
        Ok(())
    }
}

/// What must agree: the areas of the state buffer the epilogue filled (minus the x87
/// pointers, which belong to the x87 tests), the arithmetic flags, and memory.
fn differences(host: &[u8], guest: &[u8], hmem: &[u8], gmem: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let q = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    for k in 0..16 {
        let (h, g) = ((q(host, 16 * k), q(host, 16 * k + 8)), (q(guest, 16 * k), q(guest, 16 * k + 8)));
        if h != g {
            out.push(format!("xmm{k}: host {:016x}_{:016x} guest {:016x}_{:016x}", h.1, h.0, g.1, g.0));
        }
    }
    let d = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    if d(host, MXCSR) != d(guest, MXCSR) {
        out.push(format!("mxcsr: host {:#x} guest {:#x}", d(host, MXCSR), d(guest, MXCSR)));
    }
    if q(host, RFLAGS) & 0x8D5 != q(guest, RFLAGS) & 0x8D5 {
        out.push(format!("flags: host {:#x} guest {:#x}", q(host, RFLAGS) & 0x8D5, q(guest, RFLAGS) & 0x8D5));
    }
    let names = ["rax", "rcx", "rdx", "rbx", "r8", "r9", "r10", "r11"];
    for (k, n) in names.iter().enumerate() {
        let o = GPRS + 8 * k;
        if q(host, o) != q(guest, o) {
            out.push(format!("{n}: host {:#x} guest {:#x}", q(host, o), q(guest, o)));
        }
    }
    for (lo, hi, what) in [(0, 6, "fcw/fsw/ftw"), (24, 32, "mxcsr image"), (32, 160, "st/mm")] {
        let (h, g) = (&host[FXSAVE + lo..FXSAVE + hi], &guest[FXSAVE + lo..FXSAVE + hi]);
        if h != g {
            out.push(format!("fxsave {what}: host {h:02x?} guest {g:02x?}"));
        }
    }
    if hmem != gmem {
        out.push(format!("memory: host {hmem:02x?} guest {gmem:02x?}"));
    }
    out
}

fn host_has(leaf1_ecx_bits: u32) -> bool {
    // SAFETY: CPUID is always available on x86-64 (the intrinsic is safe in newer Rust).
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid(1) };
    r.ecx & leaf1_ecx_bits == leaf1_ecx_bits
}

#[test]
fn every_listed_instruction_matches_the_host() {
    // SSE3, PCLMULQDQ, SSSE3, SSE4.1, SSE4.2.
    if !host_has(1 | 2 | (1 << 9) | (1 << 19) | (1 << 20)) {
        eprintln!("skipped: the host lacks one of SSE3, PCLMULQDQ, SSSE3, SSE4.1, SSE4.2");
        return;
    }
    let iters: usize = std::env::var("SIMD_HOST_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    let pro_len = u16::from_le_bytes([IMAGE[0], IMAGE[1]]) as usize;
    let epi_len = u16::from_le_bytes([IMAGE[2], IMAGE[3]]) as usize;
    let prologue = &IMAGE[16..16 + pro_len];
    let epilogue = &IMAGE[0x200..0x200 + epi_len];
    let names: Vec<&str> = SOURCE.lines().filter_map(|l| l.strip_prefix("T {")).map(|l| l.trim_end_matches('}')).collect();
    assert_eq!(names.len() * 16, IMAGE.len() - 0x400, "one 16-byte slot per T line");
    let intel_approx = {
        // RCPSS of 1.0 on Intel: 0x3F7FF000.
        let x: u32;
        // SAFETY: one SSE instruction on registers.
        unsafe {
            std::arch::asm!("movd {t}, {v:e}", "rcpss {t}, {t}", "movd {r:e}, {t}", v = in(reg) 0x3F80_0000u32, r = lateout(reg) x, t = out(xmm_reg) _);
        }
        x == 0x3F7F_F000
    };
    let host = HostCode::new();
    let mut failures = Vec::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (k, name) in names.iter().enumerate() {
        if !intel_approx && (name.starts_with("rcp") || name.starts_with("rsqrt")) {
            continue;
        }
        let slot = &IMAGE[0x400 + 16 * k..0x410 + 16 * k];
        let code: Vec<u8> = prologue.iter().chain(slot).chain(epilogue).copied().collect();
        let mut guest = Guest::new(&code);
        let mut bad = 0;
        let mut first = None;
        for _ in 0..iters {
            let (st, mem) = random_state(&mut rng);
            let (mut hst, mut hmem) = (st, mem);
            let (mut gst, mut gmem) = (st, mem);
            host.run(&code, &mut hst, &mut hmem);
            if let Err(e) = guest.run(&mut gst, &mut gmem) {
                failures.push(format!("{name}: interpreter stopped: {e}"));
                bad = usize::MAX;
                break;
            }
            let d = differences(&hst, &gst, &hmem, &gmem);
            if !d.is_empty() && std::env::var("SIMD_DUMP").is_ok() {
                eprintln!("DUMP {name} | {:02x?} | {:02x?} | {:02x?}", &st[16..48], &hst[16..32], &mem[..16]);
            }
            if !d.is_empty() {
                bad += 1;
                if first.is_none() {
                    let inputs = format!(
                        "inputs: mxcsr {:#x} xmm1/2 {:02x?} {:02x?} mem {:02x?}",
                        u32::from_le_bytes(st[MXCSR..MXCSR + 4].try_into().unwrap()),
                        &st[16..32],
                        &st[32..48],
                        &mem[..16]
                    );
                    first = Some(format!("{}\n    {inputs}", d.join("\n    ")));
                }
            }
        }
        if bad != 0 && bad != usize::MAX {
            failures.push(format!("{name}: {bad}/{iters} differ, first:\n    {}", first.unwrap()));
        }
    }
    assert!(failures.is_empty(), "{} of {} instructions differ:\n{}", failures.len(), names.len(), failures.join("\n"));
}
