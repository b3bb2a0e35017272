//! A guest that draws into the VGA's linear framebuffer from 64-bit user mode, on either
//! backend, with the display asked for pictures in between: the framebuffer test
//! (`tests/framebuffer.rs`) and the benchmark (`benches/backends.rs`) share it. The benchmark
//! also times exits with it (`Drawer::run`: local APIC register writes, port writes).
//!
//! The machine is the differential tests' long-mode environment (`diff::env`: the case runs
//! at CPL 3, UD2 ends it in a ring-0 HLT) plus a VGA whose BAR0 the harness puts at
//! `LFB_BASE`, a 1920x1080 32-bpp VBE mode set through the DISPI ports, and a page directory
//! that maps the framebuffer for user mode with 2 MiB pages. User mode is what this project's
//! paravirtual KVM host runs natively, so the figures under KVM are the hardware's.

use crate::diff::env;
use accel::{AccelError, Backend, Exit};
use cpu::state::reg;
use cpu::CpuState;
use machine::display::Frame;
use machine::host::NullChar;
use machine::{ClockMode, Machine, MachineConfig};

/// Where the harness maps the VGA's BAR0 (guest-physical and linear: identity mapped).
pub const LFB_BASE: u64 = 0xE000_0000;
pub const WIDTH: u32 = 1920;
pub const HEIGHT: u32 = 1080;
/// Bytes of one picture.
pub const FRAME_BYTES: u64 = WIDTH as u64 * HEIGHT as u64 * 4;

/// The two 2 MiB pages, mapped for user mode as well, that hold the I/O APIC (0xFEC00000) and
/// the local APIC (0xFEE00000).
pub const APIC_PAGES: u64 = 0xFEC0_0000;

/// The TSS limit that takes in the I/O permission bitmap for ports 0-0x87 (see `Drawer::new`);
/// a state with this TR limit may use those ports at CPL 3.
pub const IO_TSS_LIMIT: u32 = 0x68 + 0x11;

/// The page directory for 3-4 GiB (physical; free in the environment's image).
const PD_HIGH: u64 = 0xB000;
/// The environment's PDPT (`env::PML4` + 0x1000).
const PDPT: u64 = 0x2000;

/// The drawing loop (64-bit): RDI = where to start, RCX = pixels a picture, EAX = colour of
/// the first picture, R8 = pictures. Each picture stores its colour into every pixel, one
/// 32-bit MOV at a time (as a software renderer writes), then the colour goes up by one.
///
/// ```text
/// pic: mov rdx, rdi / mov rsi, rcx
/// px:  mov [rdx], eax / add rdx, 4 / dec rsi / jnz px
///      inc eax / dec r8 / jnz pic / ud2
/// ```
pub const DRAW: &[u8] = &[
    0x48, 0x89, 0xFA, // mov rdx, rdi
    0x48, 0x89, 0xCE, // mov rsi, rcx
    0x89, 0x02, // mov [rdx], eax
    0x48, 0x83, 0xC2, 0x04, // add rdx, 4
    0x48, 0xFF, 0xCE, // dec rsi
    0x75, 0xF5, // jnz px
    0xFF, 0xC0, // inc eax
    0x49, 0xFF, 0xC8, // dec r8
    0x75, 0xE8, // jnz pic
    0x0F, 0x0B, // ud2
];

/// Instructions the drawing loop retires for `pictures` pictures of `pixels` pixels.
pub fn draw_instructions(pixels: u64, pictures: u64) -> u64 {
    pictures * (2 + 4 * pixels + 3) + 1
}

/// Which backend draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Interp,
    Kvm,
}

pub struct Drawer {
    pub m: Machine,
    backend: Box<dyn Backend>,
    pub frame: Frame,
}

impl Drawer {
    /// `Err` says why the backend cannot run here (KVM).
    pub fn new(kind: Kind) -> Result<Drawer, String> {
        let mut m = Machine::new(MachineConfig {
            ram_size: env::MACHINE_RAM,
            bios: vec![0xF4; 0x10000],
            clock: if kind == Kind::Kvm { ClockMode::RealTime } else { ClockMode::Deterministic },
            serial: Box::new(NullChar),
            debugcon: Box::new(NullChar),
            ..MachineConfig::default()
        })
        .map_err(|e| format!("cannot build the machine: {e}"))?;
        let mut image = env::base_image();
        // PDPT[3] -> PD_HIGH, whose entries map LFB_BASE.. with 2 MiB user pages.
        const P: u64 = 1;
        const RW: u64 = 2;
        const US: u64 = 4;
        const A: u64 = 0x20;
        const D: u64 = 0x40;
        const PS: u64 = 0x80;
        let put = |image: &mut Vec<u8>, at: u64, v: u64| image[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut image, PDPT + 3 * 8, PD_HIGH | P | RW | US | A);
        let first = (LFB_BASE - 0xC000_0000) >> 21;
        for k in 0..FRAME_BYTES.div_ceil(2 << 20) {
            put(&mut image, PD_HIGH + (first + k) * 8, (LFB_BASE + (k << 21)) | P | RW | US | A | D | PS);
        }
        // The 4 MiB holding the I/O APIC and the local APIC, uncached, for the exit-cost loops
        // (`run`).
        const PCD: u64 = 0x10;
        for page in [APIC_PAGES, APIC_PAGES + (2 << 20)] {
            put(&mut image, PD_HIGH + ((page - 0xC000_0000) >> 21) * 8, page | P | RW | US | A | D | PS | PCD);
        }
        // An I/O permission bitmap in the TSS that lets user mode reach ports 0-0x87 (for the
        // port-exit loop): the map starts right after the 104-byte TSS, the byte after it is
        // the terminating 0xFF, and the TSS limit (`IO_TSS_LIMIT`) covers both.
        image[env::TSS as usize + 0x66..env::TSS as usize + 0x68].copy_from_slice(&0x68u16.to_le_bytes());
        image[env::TSS as usize + 0x68 + 0x11] = 0xFF;
        m.memory_mut().write_ram(0, &image);
        // The 8259A pair initialised with every line masked (the case runs with IF set).
        for (port, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xFF)] {
            m.io_write(port, 1, v);
        }
        for (port, v) in [(0xA0, 0x11), (0xA1, 0x70), (0xA1, 0x02), (0xA1, 0x01), (0xA1, 0xFF)] {
            m.io_write(port, 1, v);
        }
        // The VGA (00:02.0): BAR0 at LFB_BASE, memory decoding on.
        let cfg = |reg: u32| 0x8000_0000 | (2 << 11) | reg;
        m.io_write(0xCF8, 4, cfg(0x10));
        m.io_write(0xCFC, 4, LFB_BASE as u32);
        m.io_write(0xCF8, 4, cfg(0x04));
        m.io_write(0xCFC, 2, 0x0003);
        // VBE 1920x1080x32 with the linear framebuffer (Bochs DISPI: index 0x1CE, data 0x1CF).
        for (index, value) in [(4, 0), (1, WIDTH), (2, HEIGHT), (3, 32), (4, 0x41)] {
            m.io_write(0x1CE, 2, index);
            m.io_write(0x1CF, 2, value);
        }
        let backend: Box<dyn Backend> = match kind {
            Kind::Interp => Box::new(accel::interp::Interp::new()),
            #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
            Kind::Kvm => match accel::kvm::Kvm::new(&m) {
                Ok(k) => Box::new(k),
                Err(AccelError::KvmUnavailable(why)) => return Err(why),
                Err(e) => return Err(format!("KVM is there but the backend cannot start: {e}")),
            },
            #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
            Kind::Kvm => return Err("KVM needs Linux on x86-64".into()),
        };
        Ok(Drawer { m, backend, frame: Frame::new() })
    }

    /// Draws `pictures` pictures of `pixels` pixels from pixel `first`, the first in `colour`;
    /// returns when the guest's UD2 is reached.
    pub fn draw(&mut self, first: u64, pixels: u64, colour: u32, pictures: u64) -> Result<(), String> {
        self.draw_rendering(first, pixels, colour, pictures, None)
    }

    /// As `draw`, rendering a picture every `every_ns` of virtual time while the guest draws,
    /// as the window does (the guest is stopped in the middle of its loop, not restarted).
    pub fn draw_rendering(&mut self, first: u64, pixels: u64, colour: u32, pictures: u64, every_ns: Option<u64>) -> Result<(), String> {
        let mut s: CpuState = env::user_state();
        s.gpr[reg::RDI] = LFB_BASE + first * 4;
        s.gpr[reg::RCX] = pixels;
        s.gpr[reg::RAX] = u64::from(colour);
        s.gpr[8] = pictures; // R8
        self.run(DRAW, s, every_ns)
    }

    /// Runs `code` (ending with UD2) at CPL 3 from state `s` (the environment's user state
    /// with registers set), rendering every `every_ns` of virtual time if asked.
    pub fn run(&mut self, code: &[u8], s: CpuState, every_ns: Option<u64>) -> Result<(), String> {
        let mut page = vec![0xF4u8; env::CODE_SIZE as usize];
        page[..code.len()].copy_from_slice(code);
        self.m.memory_mut().write_ram(env::CODE, &page);
        self.backend.set_state(0, &s).map_err(|e| format!("set_state: {e}"))?;
        let end = self.m.now() + 600_000_000_000;
        loop {
            let until = every_ns.map_or(end, |every| end.min(self.m.now() + every));
            match self.backend.run(&mut self.m, until).map_err(|e| e.to_string())? {
                Exit::Halted => break,
                Exit::Deadline if until < end => {
                    self.render()?;
                }
                Exit::Attention => {
                    self.m.take_events();
                }
                other => return Err(format!("the drawing ended with {other:?}")),
            }
        }
        let s = self.backend.state(0);
        match env::vector_of(&s) {
            Some(6) => Ok(()),
            v => Err(format!("the drawing stopped at vector {v:?}, RIP {:#x}, not at its UD2", s.rip)),
        }
    }

    /// What the window would show now: the backend's log of framebuffer writes handed to the
    /// machine, then a picture rendered (only the rows written since the last one).
    pub fn render(&mut self) -> Result<bool, String> {
        self.backend.collect_device_writes(&mut self.m).map_err(|e| e.to_string())?;
        let now = self.m.now();
        let display = self.m.display().ok_or("no display")?;
        Ok(display.render(now, &mut self.frame))
    }

    /// The pixel at (x, y) of the last picture, as 0xRRGGBB.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        let at = ((y * self.frame.width + x) * 4) as usize;
        let p = &self.frame.pixels[at..at + 4];
        u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2])
    }
}
