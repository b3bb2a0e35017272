//! The PC that Ferrite emulates, independent of how its CPU is run: guest memory, the port and
//! MMIO buses, the virtual clock, the devices and the firmware mapping. Neither CPU backend is
//! named here; `accel` drives this crate through [`Machine`].

pub mod apic;
pub mod audio;
pub mod block;
pub mod board;
pub mod clock;
pub mod device;
pub mod display;
pub mod devices;
pub mod firmware;
pub mod host;
pub mod memory;
pub mod pci;

pub use audio::{AudioSink, Frame as AudioFrame};
pub use board::{Drive, DriveSlot, Machine, MachineConfig, MachineError, MachineSnapshot, PciSnapshot, ApicSnapshot};
pub use clock::{Clock, ClockMode};
pub use device::{Device, DeviceContext, DeviceSnapshot, MachineEvent, SnapshotError};
pub use display::{Display, Frame, PixelFormat, PixelMemory, Pixels, Scanout, VideoMemory};
pub use memory::{Memory, Region, RegionKind};
