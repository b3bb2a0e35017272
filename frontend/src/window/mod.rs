//! `--display window`: the guest's screen in a desktop window (winit), drawn with wgpu or,
//! where wgpu finds no hardware adapter, with the CPU: through the X server's shared memory
//! (`shm`, the emulation thread rendering straight into it) or, where there is none (Wayland,
//! a remote X server), through softbuffer; the host keyboard and mouse as the
//! guest's PS/2 keyboard and mouse; hotkeys and a title that says how the guest runs.
//!
//! The window's event loop owns the main thread (some platforms insist). The session is
//! prepared and run on an emulation thread of its own, whose run-loop watcher renders changed
//! pictures into the frame mailbox (`link`) and takes commands; keys and mouse motion go
//! straight to the 8042's input queue (`machine::devices::i8042::Ps2Input`).

mod gpu;
mod keys;
mod layout;
mod link;
mod shm;
mod soft;

use crate::cli::{Args, Aspect, Renderer, Scaling};
use crate::session::{status, Session};
use anyhow::{anyhow, Result};
use accel::VmControl;
use keys::{Hotkey, KeyAction, Keyboard};
use layout::Rect;
use link::{Command, Costs, GuestSide, Mailbox, Status, UserEvent};
use machine::devices::i8042::{buttons, HostInput, Ps2Input};
use machine::Frame;
use std::ops::Range;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::{DeviceEvent, DeviceId, ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::PhysicalKey;
use winit::window::{CursorGrabMode, Fullscreen, Window, WindowId};

/// Runs the guest in a window; returns the exit status.
pub fn run(args: &Args) -> u8 {
    match run_window(args) {
        Ok(code) => code,
        Err((code, e)) => {
            eprintln!("ferrite: {e:#}");
            code
        }
    }
}

fn run_window(args: &Args) -> Result<u8, (u8, anyhow::Error)> {
    let usage = |e: anyhow::Error| (status::USAGE, e);
    let event_loop = EventLoop::<UserEvent>::with_user_event().build().map_err(|e| {
        usage(anyhow!("--display window: cannot open a window: {} (DISPLAY or WAYLAND_DISPLAY names the desktop)", winit_message(&e)))
    })?;
    let proxy = event_loop.create_proxy();
    let mailbox = Arc::new(Mailbox::default());
    let (commands, command_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();

    // The session is built on the emulation thread (the CPU backend stays on the thread that
    // made it); the window waits to hear that it is ready, or why not.
    std::thread::scope(|scope| {
        let thread_mailbox = mailbox.clone();
        let emulation = std::thread::Builder::new()
            .name("emulation".into())
            .spawn_scoped(scope, move || {
                let mut session = match Session::prepare(args) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let input = session.machine().ps2_input();
                let _ = ready_tx.send(Ok((input, session.backend_name(), session.control())));
                let wake_proxy = proxy.clone();
                let wake = Box::new(move |e: UserEvent| {
                    let _ = wake_proxy.send_event(e);
                });
                let mut guest = GuestSide::new(thread_mailbox, wake, command_rx);
                let result = session.run_with(link::POLL_INTERVAL, &mut |m, stats| guest.poll(m, stats));
                if std::env::var_os("FERRITE_FRAME_STATS").is_some() {
                    eprintln!("ferrite: frame render (guest memory to the frame): {}", guest.render_costs.summary());
                }
                let _ = proxy.send_event(UserEvent::Ended(result.map_err(|e| format!("{e:#}"))));
            })
            .map_err(|e| (status::INTERNAL, anyhow!("cannot start the emulation thread: {e}")))?;
        let (input, backend, control) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = emulation.join();
                return Err(usage(e));
            }
            Err(_) => {
                let _ = emulation.join();
                return Err((status::INTERNAL, anyhow!("the emulation thread failed before the guest started")));
            }
        };

        let mut app = App::new(args, backend, mailbox.clone(), commands.clone(), control.clone(), input);
        let result = event_loop.run_app(&mut app);
        // However the loop ended, the guest stops (paused or not) and its disks are flushed
        // before Ferrite exits.
        let _ = commands.send(Command::Quit);
        control.stop(0);
        let _ = emulation.join();
        if std::env::var_os("FERRITE_FRAME_STATS").is_some() {
            eprintln!("ferrite: frame present (upload and draw): {}", app.present_costs.summary());
            eprintln!("ferrite: frames dropped while the window lagged: {}", mailbox.dropped());
            if let Some(Presenter::Shm(p)) = &app.presenter {
                app.shm_summary = Some(p.summary());
            }
            if let Some(summary) = &app.shm_summary {
                eprintln!("ferrite: X11 shared memory: {summary}");
            }
        }
        result.map_err(|e| (status::INTERNAL, anyhow!("the window's event loop failed: {e}")))?;
        match app.ended.take() {
            Some(Ok(code)) => Ok(code),
            Some(Err(e)) => Err((status::INTERNAL, anyhow!(e))),
            None => Err((status::INTERNAL, anyhow!("the window closed before the guest stopped"))),
        }
    })
}

/// winit's error without the source location it puts in front ("os error at FILE:LINE: ").
fn winit_message(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    match text.find(".rs:").and_then(|i| text[i..].find(": ").map(|j| i + j + 2)) {
        Some(start) => text[start..].to_string(),
        None => text,
    }
}

/// How the window draws.
enum Presenter {
    Gpu(gpu::GpuPresenter),
    Shm(shm::ShmPresenter),
    Soft(soft::SoftPresenter),
}

impl Presenter {
    /// wgpu unless `choice` asks for the CPU (and, for `auto`, only on a hardware adapter);
    /// then the X server's shared memory unless `choice` is `soft`; then softbuffer.
    fn new(window: Arc<Window>, choice: Renderer, size: (u32, u32)) -> Result<Presenter, String> {
        if !matches!(choice, Renderer::Soft | Renderer::X11) {
            // A broken driver may panic inside wgpu rather than fail: the CPU draws then too.
            let gpu = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                gpu::GpuPresenter::new(window.clone(), choice, size)
            }))
            .unwrap_or_else(|_| Err("wgpu panicked while starting".into()));
            match gpu {
                Ok(p) => return Ok(Presenter::Gpu(p)),
                Err(e) => eprintln!("ferrite: {e}; drawing with the CPU instead"),
            }
        }
        if choice != Renderer::Soft {
            match shm::x11_window(&window) {
                Some(id) => match shm::ShmPresenter::new(id, size) {
                    Ok(p) => return Ok(Presenter::Shm(p)),
                    Err(e) => eprintln!("ferrite: no X11 shared memory: {e}; drawing with softbuffer"),
                },
                None if choice == Renderer::X11 => eprintln!("ferrite: not an X11 window; drawing with softbuffer"),
                None => {}
            }
        }
        soft::SoftPresenter::new(window, size).map(Presenter::Soft)
    }

    fn name(&self) -> &str {
        match self {
            Presenter::Gpu(p) => p.name(),
            Presenter::Shm(p) => p.name(),
            Presenter::Soft(p) => p.name(),
        }
    }

    fn resize(&mut self, size: (u32, u32)) {
        match self {
            Presenter::Gpu(p) => p.resize(size),
            Presenter::Shm(p) => p.resize(size),
            Presenter::Soft(p) => p.resize(size),
        }
    }

    /// A new picture, of which `rows` changed since the last one (the rest may be kept).
    fn upload(&mut self, frame: &Frame, rows: Range<u32>) {
        if let Presenter::Gpu(p) = self {
            p.upload(frame, rows);
        }
    }

    /// Draws the picture; `rows` are those that changed since the last draw, None when the
    /// whole window is to be drawn again.
    fn draw(&mut self, frame: &Frame, rect: Rect, rows: Option<Range<u32>>) -> Result<(), String> {
        match self {
            // Nothing changed (a blink phase that shows nothing new): the window shows the
            // picture already, and a draw costs a whole window's pixels on a software adapter.
            Presenter::Gpu(_) if rows.as_ref().is_some_and(|r| r.is_empty()) => Ok(()),
            Presenter::Gpu(p) => p.draw(rect),
            Presenter::Shm(p) => p.draw(frame, rect, rows),
            Presenter::Soft(p) => p.draw(frame, rect, rows),
        }
    }

    /// A frame the window no longer shows, made ready to go back to the emulation thread:
    /// the X server done reading it, and (where the presenter wants) memory of the
    /// presenter's in the byte order it takes.
    fn recycle(&mut self, old: Frame) -> Frame {
        match self {
            Presenter::Shm(p) => p.recycle(old),
            Presenter::Gpu(_) | Presenter::Soft(_) => old,
        }
    }
}

struct App {
    scaling: Scaling,
    aspect: Aspect,
    window_scale: Option<u32>,
    fullscreen_at_start: bool,
    renderer: Renderer,
    backend: &'static str,
    mailbox: Arc<Mailbox>,
    commands: Sender<Command>,
    /// Pause and resume, straight to the run loop (the guest's clocks stand still).
    control: VmControl,
    input: Option<Ps2Input>,

    window: Option<Arc<Window>>,
    presenter: Option<Presenter>,
    /// The picture on screen (kept for redraws and screenshots).
    frame: Frame,
    /// A new picture is waiting to be drawn: the rows that changed since the one drawn.
    fresh: Option<Range<u32>>,
    /// The size the presenter draws at (the window's, as of its last Resized event).
    surface_size: (u32, u32),
    /// The display size the window was last sized for.
    sized_for: Option<(u32, u32)>,
    keyboard: Keyboard,
    mouse_buttons: u8,
    /// Motion not yet sent (fractions of a pixel).
    mouse_motion: (f64, f64),
    grabbed: bool,
    focused: bool,
    status: Status,
    screenshots: u32,
    present_costs: Costs,
    /// How the X11 shared memory presenter sent its pictures (kept when the window goes).
    shm_summary: Option<String>,
    ended: Option<Result<u8, String>>,
}

impl App {
    fn new(args: &Args, backend: &'static str, mailbox: Arc<Mailbox>, commands: Sender<Command>, control: VmControl, input: Option<Ps2Input>) -> App {
        App {
            scaling: args.scaling,
            aspect: args.aspect,
            window_scale: args.window_scale,
            fullscreen_at_start: args.fullscreen,
            renderer: args.renderer,
            backend,
            mailbox,
            commands,
            control,
            input,
            window: None,
            presenter: None,
            frame: Frame::new(),
            fresh: None,
            sized_for: None,
            surface_size: (1, 1),
            keyboard: Keyboard::default(),
            mouse_buttons: 0,
            mouse_motion: (0.0, 0.0),
            grabbed: false,
            focused: false,
            status: Status { paused: false, mips: None, busy: 0.0 },
            screenshots: 0,
            present_costs: Costs::default(),
            shm_summary: None,
            ended: None,
        }
    }

    fn window_size(&self) -> (u32, u32) {
        self.window.as_ref().map_or((1, 1), |w| {
            let s = w.inner_size();
            (s.width, s.height)
        })
    }

    fn display_size(&self, frame: &Frame) -> (u32, u32) {
        layout::display_size(frame.width, frame.height, self.aspect)
    }

    fn title(&self) -> String {
        let state = if self.ended.is_some() {
            "stopped"
        } else if self.status.paused {
            "paused (Ctrl+Alt+P resumes)"
        } else {
            "running"
        };
        let speed = match self.status.mips {
            Some(mips) => format!("{} {mips:.0} MIPS, {:.0}% busy", self.backend, self.status.busy * 100.0),
            None => format!("{} {:.0}% busy", self.backend, self.status.busy * 100.0),
        };
        let mouse = if self.grabbed { "Ctrl+Alt+G releases the mouse" } else { "click to grab the mouse" };
        let drawn = self.presenter.as_ref().map_or("", |p| p.name());
        format!("Ferrite - {state} - {speed} - {drawn} - {mouse}")
    }

    fn update_title(&self) {
        if let Some(w) = &self.window {
            w.set_title(&self.title());
        }
    }

    fn send(&self, input: HostInput) {
        if self.status.paused {
            return;
        }
        if let Some(i) = &self.input {
            i.send(input);
        }
    }

    /// A new picture from the guest: keep it for the next redraw, and fit the window to a
    /// new mode.
    fn take_frame(&mut self) {
        let Some(frame) = self.mailbox.take() else { return };
        let same_size = (frame.width, frame.height) == (self.frame.width, self.frame.height);
        let rows = match &self.fresh {
            _ if !same_size => 0..frame.height,
            Some(before) => link::union(before, &frame.changed_rows),
            None => frame.changed_rows.clone(),
        };
        let old = std::mem::replace(&mut self.frame, frame);
        let old = match &mut self.presenter {
            Some(p) => p.recycle(old),
            None => old,
        };
        self.mailbox.give_back(old);
        self.fresh = Some(rows);
        self.fit_window();
        if let Some(w) = &self.window {
            w.request_redraw();
        }
    }

    /// Sizes the window for the picture's display size when that changed: the same whole
    /// multiple as before (or, for the first picture, `--window-scale` or the largest that
    /// fits the monitor). A full-screen or maximized window keeps its size.
    fn fit_window(&mut self) {
        let Some(window) = self.window.clone() else { return };
        if self.frame.width == 0 {
            return;
        }
        let display = self.display_size(&self.frame);
        if self.sized_for == Some(display) {
            return;
        }
        let scale = match self.sized_for {
            Some(before) => layout::scale_of(before, self.window_size()),
            None => self.window_scale.unwrap_or_else(|| {
                window.current_monitor().map_or(1, |m| layout::fitting_scale(display, (m.size().width, m.size().height)))
            }),
        };
        self.sized_for = Some(display);
        if window.fullscreen().is_some() || window.is_maximized() {
            return;
        }
        if let Some(now) = window.request_inner_size(PhysicalSize::new(display.0 * scale, display.1 * scale)) {
            self.resized((now.width, now.height));
        }
    }

    fn resized(&mut self, size: (u32, u32)) {
        self.surface_size = size;
        if let Some(p) = &mut self.presenter {
            p.resize(size);
        }
        if let Some(w) = &self.window {
            w.request_redraw();
        }
    }

    fn redraw(&mut self) {
        // The presenter's size, which may lag the window's until its Resized event comes.
        let rect = layout::place(self.display_size(&self.frame), self.surface_size, self.scaling);
        let Some(p) = &mut self.presenter else { return };
        let started = Costs::start();
        // A picture left in video memory is drawn from there only by the X11 presenter at one
        // window pixel per guest pixel; anything else takes a copy.
        let shown_from_video = match p {
            Presenter::Shm(s) => s.shows_scanout(&self.frame, rect),
            _ => false,
        };
        if self.frame.scanout.is_some() && !shown_from_video {
            self.frame.materialise();
        }
        let rows = self.fresh.take();
        if let Some(rows) = &rows {
            p.upload(&self.frame, rows.clone());
        }
        if let Err(e) = p.draw(&self.frame, rect, rows) {
            tracing::warn!("cannot draw the window: {e}");
        }
        if self.frame.width > 0 {
            self.present_costs.add(&started);
        }
    }

    fn hotkey(&mut self, h: Hotkey, event_loop: &ActiveEventLoop) {
        match h {
            Hotkey::Pause => {
                let paused = !self.control.is_paused();
                if paused {
                    self.control.pause();
                } else {
                    self.control.resume();
                }
                self.status = Status { paused, mips: None, busy: 0.0 };
                self.update_title();
            }
            Hotkey::Reset => {
                // Taken by the watcher, which runs at once (and a paused guest goes on).
                let _ = self.commands.send(Command::Reset);
                self.control.resume();
                self.control.interrupt();
                self.status.paused = false;
                self.update_title();
            }
            Hotkey::Screenshot => self.screenshot(),
            Hotkey::Fullscreen => {
                if let Some(w) = &self.window {
                    let full = w.fullscreen().is_none();
                    w.set_fullscreen(full.then_some(Fullscreen::Borderless(None)));
                }
            }
            Hotkey::ReleaseGrab => self.set_grab(false),
            Hotkey::Quit => self.quit(event_loop),
        }
    }

    /// Writes the picture on screen, at the guest's resolution, to a new PNG in the current
    /// directory.
    fn screenshot(&mut self) {
        if self.frame.width == 0 {
            return;
        }
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.screenshots += 1;
        let path = format!("ferrite-{stamp}-{}.png", self.screenshots);
        match crate::screen::encode_png(&self.frame).map_err(|e| e.to_string()).and_then(|png| {
            std::fs::write(&path, png).map_err(|e| e.to_string())
        }) {
            Ok(()) => eprintln!("ferrite: screenshot written to {path}"),
            Err(e) => eprintln!("ferrite: cannot write the screenshot {path}: {e}"),
        }
    }

    fn set_grab(&mut self, grab: bool) {
        let Some(w) = &self.window else { return };
        if grab == self.grabbed {
            return;
        }
        if grab {
            // Locked keeps the pointer still (Wayland, Windows, macOS); X11 can only confine it.
            let locked = w.set_cursor_grab(CursorGrabMode::Locked).or_else(|_| w.set_cursor_grab(CursorGrabMode::Confined));
            if let Err(e) = locked {
                tracing::warn!("cannot grab the mouse: {e}");
                return;
            }
            w.set_cursor_visible(false);
        } else {
            let _ = w.set_cursor_grab(CursorGrabMode::None);
            w.set_cursor_visible(true);
            if self.mouse_buttons != 0 {
                self.mouse_buttons = 0;
                self.send(HostInput::Mouse { dx: 0, dy: 0, dz: 0, buttons: 0 });
            }
        }
        self.grabbed = grab;
        self.update_title();
    }

    fn quit(&mut self, event_loop: &ActiveEventLoop) {
        // The emulation thread stops the guest (paused or not), flushes the disks and says it
        // ended.
        let _ = self.commands.send(Command::Quit);
        self.control.stop(0);
        if self.ended.is_some() {
            event_loop.exit();
        }
    }

    fn mouse_button(&mut self, button: MouseButton, state: ElementState) {
        if !self.grabbed {
            if state == ElementState::Pressed && button == MouseButton::Left {
                self.set_grab(true);
            }
            return;
        }
        let bit = match button {
            MouseButton::Left => buttons::LEFT,
            MouseButton::Right => buttons::RIGHT,
            MouseButton::Middle => buttons::MIDDLE,
            MouseButton::Back => buttons::BACK,
            MouseButton::Forward => buttons::FORWARD,
            MouseButton::Other(_) => return,
        };
        let buttons = match state {
            ElementState::Pressed => self.mouse_buttons | bit,
            ElementState::Released => self.mouse_buttons & !bit,
        };
        tracing::debug!(?button, ?state, "mouse button");
        // The release of the click that grabbed the mouse is not the guest's.
        if buttons != self.mouse_buttons {
            self.mouse_buttons = buttons;
            self.send(HostInput::Mouse { dx: 0, dy: 0, dz: 0, buttons });
        }
    }
}

impl ApplicationHandler<UserEvent> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        event_loop.set_control_flow(ControlFlow::Wait);
        let attributes = Window::default_attributes()
            .with_title("Ferrite")
            .with_inner_size(PhysicalSize::new(640u32, 480u32))
            .with_fullscreen(self.fullscreen_at_start.then_some(Fullscreen::Borderless(None)));
        let window = match event_loop.create_window(attributes) {
            Ok(w) => Arc::new(w),
            Err(e) => {
                eprintln!("ferrite: --display window: cannot create the window: {e}");
                self.quit(event_loop);
                return;
            }
        };
        let size = window.inner_size();
        self.surface_size = (size.width, size.height);
        match Presenter::new(window.clone(), self.renderer, self.surface_size) {
            Ok(mut p) => {
                eprintln!("ferrite: window drawn by {}", p.name());
                // Spare buffers of the presenter's kind, so the emulation thread's next
                // pictures go into them (not into new vectors, which a shared memory presenter
                // would have to convert and then replace).
                for _ in 0..2 {
                    let spare = p.recycle(Frame::new());
                    self.mailbox.give_back(spare);
                }
                self.presenter = Some(p);
            }
            Err(e) => eprintln!("ferrite: --display window: cannot draw in the window: {e}"),
        }
        self.window = Some(window);
        self.update_title();
        self.fit_window();
        self.take_frame();
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: UserEvent) {
        match event {
            UserEvent::Frame => self.take_frame(),
            UserEvent::Status(mut s) => {
                // A status sent just before a pause does not undo it.
                s.paused = self.control.is_paused();
                if s != self.status {
                    self.status = s;
                    self.update_title();
                }
            }
            UserEvent::Ended(result) => {
                self.ended = Some(result);
                event_loop.exit();
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            // The close button, or the window destroyed under us (a window manager's "kill"):
            // either way the guest stops. A destroyed window's surface is gone: drawing or
            // configuring it again would fail (wgpu treats that as fatal).
            WindowEvent::CloseRequested => self.quit(event_loop),
            WindowEvent::Destroyed => {
                if let Some(Presenter::Shm(p)) = self.presenter.take() {
                    self.shm_summary = Some(p.summary());
                }
                self.quit(event_loop);
            }
            WindowEvent::Resized(size) => self.resized((size.width, size.height)),
            WindowEvent::RedrawRequested => self.redraw(),
            WindowEvent::Focused(focused) => {
                self.focused = focused;
                if !focused {
                    for release in self.keyboard.release_all() {
                        self.send(release);
                    }
                    self.set_grab(false);
                }
            }
            WindowEvent::KeyboardInput { event, is_synthetic, .. } => {
                // Keys held when the focus came are reported as synthetic presses: not typed.
                if is_synthetic && event.state == ElementState::Pressed {
                    return;
                }
                let PhysicalKey::Code(code) = event.physical_key else {
                    tracing::debug!("unidentified host key {:?}", event.physical_key);
                    return;
                };
                match self.keyboard.key(code, event.state == ElementState::Pressed, event.repeat) {
                    KeyAction::Guest(input) => self.send(input),
                    KeyAction::Hotkey(h) => self.hotkey(h, event_loop),
                    KeyAction::Nothing => {}
                }
            }
            WindowEvent::MouseInput { state, button, .. } => self.mouse_button(button, state),
            WindowEvent::MouseWheel { delta, .. } if self.grabbed => {
                // winit: positive is away from the user; the PS/2 wheel counts towards.
                let notches = match delta {
                    MouseScrollDelta::LineDelta(_, y) => -y.round() as i32,
                    MouseScrollDelta::PixelDelta(p) => -(p.y / 40.0).round() as i32,
                };
                if notches != 0 {
                    self.send(HostInput::Mouse { dx: 0, dy: 0, dz: notches, buttons: self.mouse_buttons });
                }
            }
            _ => {}
        }
    }

    fn device_event(&mut self, _event_loop: &ActiveEventLoop, _id: DeviceId, event: DeviceEvent) {
        if let DeviceEvent::MouseMotion { delta } = event {
            if !self.grabbed {
                return;
            }
            self.mouse_motion.0 += delta.0;
            self.mouse_motion.1 += delta.1;
            let (dx, dy) = (self.mouse_motion.0.trunc(), self.mouse_motion.1.trunc());
            if dx != 0.0 || dy != 0.0 {
                self.mouse_motion.0 -= dx;
                self.mouse_motion.1 -= dy;
                self.send(HostInput::Mouse { dx: dx as i32, dy: dy as i32, dz: 0, buttons: self.mouse_buttons });
            }
        }
    }
}
