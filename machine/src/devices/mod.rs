//! Device models. Each file models one chip or function and names the datasheet it follows.

pub mod debugcon;
pub mod exit;
pub mod i440fx;
pub mod ide;
pub mod pic;
pub mod piix3;
pub mod pit;
pub mod uart;
pub mod vga;
