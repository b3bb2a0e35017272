//! Drawing the guest's frame with wgpu (Vulkan, GL or the platform's own API): the frame is a
//! texture, uploaded only when the guest's picture changed, and one triangle covers the
//! picture's rectangle. The fragment shader samples "sharp bilinear": whole multiples come out
//! as exact pixel copies, and the fraction left over at non-integer scales (4:3 stretching,
//! fit-to-window) is blended over one host pixel at each texel edge instead of giving
//! uneven nearest-neighbour rows.

use super::layout::Rect;
use crate::cli::Renderer;
use machine::{Frame, PixelFormat};
use std::sync::Arc;
use winit::window::Window;

const SHADER: &str = r#"
struct Params {
    tex_size: vec2<f32>,
    prescale: vec2<f32>,
};
@group(0) @binding(0) var picture: texture_2d<f32>;
@group(0) @binding(1) var linear_sampler: sampler;
@group(0) @binding(2) var<uniform> p: Params;

struct VertexOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// One triangle that covers the viewport: (0,0), (2,0), (0,2) in texture coordinates.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VertexOut {
    let uv = vec2<f32>(f32((i << 1u) & 2u), f32(i & 2u));
    var out: VertexOut;
    out.pos = vec4<f32>(uv.x * 2.0 - 1.0, 1.0 - uv.y * 2.0, 0.0, 1.0);
    out.uv = uv;
    return out;
}

@fragment
fn fs_main(in: VertexOut) -> @location(0) vec4<f32> {
    let texel = in.uv * p.tex_size;
    let offset = fract(texel) - 0.5;
    let flat = 0.5 - 0.5 / p.prescale;
    let edge = (offset - clamp(offset, -flat, flat)) * p.prescale + 0.5;
    let c = textureSample(picture, linear_sampler, (floor(texel) + edge) / p.tex_size);
    return vec4<f32>(c.rgb, 1.0);
}
"#;

pub struct GpuPresenter {
    surface: wgpu::Surface<'static>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    config: wgpu::SurfaceConfiguration,
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    sampler: wgpu::Sampler,
    params: wgpu::Buffer,
    texture_format: wgpu::TextureFormat,
    /// The frame's texture and its bind group, for the current frame size.
    texture: Option<(wgpu::Texture, wgpu::BindGroup, (u32, u32))>,
    name: String,
}

/// Why wgpu cannot draw here.
pub type GpuError = String;

impl GpuPresenter {
    /// wgpu on the APIs `choice` allows (`auto`: whatever the platform has; the environment's
    /// WGPU_BACKEND narrows that), for `window` at `size`.
    pub fn new(window: Arc<Window>, choice: Renderer, size: (u32, u32)) -> Result<GpuPresenter, GpuError> {
        let backends = match choice {
            Renderer::Vulkan => wgpu::Backends::VULKAN,
            Renderer::Gl => wgpu::Backends::GL,
            _ => wgpu::util::backend_bits_from_env().unwrap_or(wgpu::Backends::all()),
        };
        // No validation layers unless WGPU_VALIDATION or WGPU_DEBUG asks for them.
        let flags = wgpu::InstanceFlags::empty().with_env();
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor { backends, flags, ..Default::default() });
        let surface = instance.create_surface(window).map_err(|e| format!("no surface for the window: {e}"))?;
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::LowPower,
            force_fallback_adapter: false,
            compatible_surface: Some(&surface),
        }))
        .ok_or_else(|| format!("no graphics adapter ({backends:?}) can draw in the window"))?;
        let info = adapter.get_info();
        if choice == Renderer::Auto && info.device_type == wgpu::DeviceType::Cpu {
            // A software rasteriser (Mesa's lavapipe or llvmpipe) costs far more than drawing
            // with the CPU directly (measured: 100 ms against 7 ms a 1080p frame).
            return Err(format!("the only graphics adapter is a software one ({})", info.name));
        }
        let (device, queue) = pollster::block_on(adapter.request_device(
            &wgpu::DeviceDescriptor {
                label: Some("ferrite"),
                required_features: wgpu::Features::empty(),
                required_limits: wgpu::Limits::downlevel_webgl2_defaults().using_resolution(adapter.limits()),
                memory_hints: wgpu::MemoryHints::MemoryUsage,
            },
            None,
        ))
        .map_err(|e| format!("{} ({:?}): {e}", info.name, info.backend))?;
        // An error after start-up is logged once; the window then shows what it can.
        let reported = std::sync::atomic::AtomicBool::new(false);
        device.on_uncaptured_error(Box::new(move |e| {
            if !reported.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!("wgpu: {e}");
            }
        }));
        // Errors in setting up the pipeline mean this adapter cannot draw: the CPU will.
        device.push_error_scope(wgpu::ErrorFilter::Validation);

        let caps = surface.get_capabilities(&adapter);
        // A plain (not sRGB) target keeps the guest's colour values as they are; on an sRGB
        // target the texture is sRGB too, so decoding and encoding cancel out.
        let format = caps
            .formats
            .iter()
            .copied()
            .find(|f| !f.is_srgb())
            .or_else(|| caps.formats.first().copied())
            .ok_or_else(|| format!("{} ({:?}) cannot present to the window", info.name, info.backend))?;
        let texture_format =
            if format.is_srgb() { wgpu::TextureFormat::Rgba8UnormSrgb } else { wgpu::TextureFormat::Rgba8Unorm };
        let present_mode = if caps.present_modes.contains(&wgpu::PresentMode::Mailbox) {
            wgpu::PresentMode::Mailbox
        } else {
            wgpu::PresentMode::Fifo
        };
        let alpha_mode = if caps.alpha_modes.contains(&wgpu::CompositeAlphaMode::Opaque) {
            wgpu::CompositeAlphaMode::Opaque
        } else {
            caps.alpha_modes.first().copied().unwrap_or(wgpu::CompositeAlphaMode::Auto)
        };
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format,
            width: size.0.max(1),
            height: size.1.max(1),
            present_mode,
            desired_maximum_frame_latency: 1,
            alpha_mode,
            view_formats: vec![],
        };
        surface.configure(&device, &config);

        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("ferrite picture"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("ferrite picture"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: true },
                        view_dimension: wgpu::TextureViewDimension::D2,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Sampler(wgpu::SamplerBindingType::Filtering),
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("ferrite picture"),
            bind_group_layouts: &[&layout],
            push_constant_ranges: &[],
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("ferrite picture"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            multiview: None,
            cache: None,
        });
        let sampler = device.create_sampler(&wgpu::SamplerDescriptor {
            label: Some("ferrite picture"),
            mag_filter: wgpu::FilterMode::Linear,
            min_filter: wgpu::FilterMode::Linear,
            ..Default::default()
        });
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ferrite picture"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(device.pop_error_scope()) {
            return Err(format!("{} ({:?}) cannot draw the picture: {e}", info.name, info.backend));
        }
        let backend = match info.backend {
            wgpu::Backend::Vulkan => "Vulkan",
            wgpu::Backend::Gl => "GL",
            wgpu::Backend::Metal => "Metal",
            wgpu::Backend::Dx12 => "DX12",
            _ => "other",
        };
        let name = format!("wgpu {backend} on {}", info.name);
        Ok(GpuPresenter {
            surface,
            device,
            queue,
            config,
            pipeline,
            layout,
            sampler,
            params,
            texture_format,
            texture: None,
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn resize(&mut self, size: (u32, u32)) {
        self.config.width = size.0.max(1);
        self.config.height = size.1.max(1);
        self.surface.configure(&self.device, &self.config);
    }

    /// Uploads `frame` (a new picture from the guest), of which only `rows` changed since the
    /// last upload if the texture has its size.
    pub fn upload(&mut self, frame: &Frame, rows: std::ops::Range<u32>) {
        let size = (frame.width.max(1), frame.height.max(1));
        if frame.width == 0 || frame.height == 0 {
            return;
        }
        let mut rows = rows.start.min(size.1)..rows.end.min(size.1);
        if self.texture.as_ref().map(|t| t.2) != Some(size) {
            rows = 0..size.1;
            let limit = self.device.limits().max_texture_dimension_2d;
            if size.0 > limit || size.1 > limit {
                tracing::warn!("the guest's {}x{} screen is larger than this adapter's textures ({limit})", size.0, size.1);
                return;
            }
            let texture = self.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("ferrite picture"),
                size: wgpu::Extent3d { width: size.0, height: size.1, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: self.texture_format,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&Default::default());
            let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("ferrite picture"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::TextureView(&view) },
                    wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::Sampler(&self.sampler) },
                    wgpu::BindGroupEntry { binding: 2, resource: self.params.as_entire_binding() },
                ],
            });
            self.texture = Some((texture, group, size));
        }
        let Some((texture, _, _)) = &self.texture else { return };
        if rows.is_empty() {
            return;
        }
        let row_bytes = size.0 as usize * 4;
        // The texture is RGBA: a frame in another byte order (none the window gives this
        // presenter, but any frame shows right) is converted on the way.
        let rgba = match frame.format {
            PixelFormat::Rgba => None,
            other => {
                let src = &frame.pixels[rows.start as usize * row_bytes..rows.end as usize * row_bytes];
                let mut out = vec![0; src.len()];
                other.convert_rgba(src, &mut out);
                Some(out)
            }
        };
        self.queue.write_texture(
            wgpu::ImageCopyTexture {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: rows.start, z: 0 },
                aspect: wgpu::TextureAspect::All,
            },
            rgba.as_deref().unwrap_or(&frame.pixels[rows.start as usize * row_bytes..rows.end as usize * row_bytes]),
            wgpu::ImageDataLayout { offset: 0, bytes_per_row: Some(size.0 * 4), rows_per_image: Some(rows.len() as u32) },
            wgpu::Extent3d { width: size.0, height: rows.len() as u32, depth_or_array_layers: 1 },
        );
    }

    /// Draws the last uploaded picture into `rect` (black around it) and presents.
    pub fn draw(&mut self, rect: Rect) -> Result<(), String> {
        let out = match self.surface.get_current_texture() {
            Ok(t) => t,
            Err(wgpu::SurfaceError::Lost | wgpu::SurfaceError::Outdated) => {
                self.surface.configure(&self.device, &self.config);
                self.surface.get_current_texture().map_err(|e| format!("wgpu: {e}"))?
            }
            Err(wgpu::SurfaceError::Timeout) => return Ok(()),
            Err(e) => return Err(format!("wgpu: {e}")),
        };
        let view = out.texture.create_view(&Default::default());
        if let Some((_, _, (tw, th))) = &self.texture {
            let prescale = [(rect.w / tw).max(1) as f32, (rect.h / th).max(1) as f32];
            let params = [*tw as f32, *th as f32, prescale[0], prescale[1]];
            let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.queue.write_buffer(&self.params, 0, &bytes);
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("ferrite picture"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
            });
            if let Some((_, group, _)) = &self.texture {
                if rect.w > 0 && rect.h > 0 {
                    pass.set_viewport(rect.x as f32, rect.y as f32, rect.w as f32, rect.h as f32, 0.0, 1.0);
                    pass.set_pipeline(&self.pipeline);
                    pass.set_bind_group(0, group, &[]);
                    pass.draw(0..3, 0..1);
                }
            }
        }
        self.queue.submit([encoder.finish()]);
        out.present();
        Ok(())
    }
}
