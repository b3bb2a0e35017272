//! Device models. Each file models one chip or function and names the datasheet it follows.

pub mod debugcon;
pub mod dma;
pub mod exit;
pub mod fdc;
pub mod fw_cfg;
pub mod hpet;
pub mod i440fx;
pub mod i8042;
pub mod ide;
pub mod opl;
pub mod pcspk;
pub mod pic;
pub mod piix3;
pub mod piix4_pm;
pub mod pit;
pub mod ps2_keys;
pub mod rtc;
pub mod sb16;
pub mod sysctl;
pub mod uart;
pub mod vga;
