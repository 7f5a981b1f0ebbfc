//! Drawing the scene with three-d on the page's `<canvas>` (WebGL2, browser only).
//!
//! Points are `GL_POINTS` from a small custom program, one position buffer and one colour
//! buffer per shard: a shard is uploaded once when it arrives and freed when the scene drops
//! it, and a frame is one draw call per shard. Points are uploaded in [`spread_order`], so a
//! frame can draw a prefix of each buffer as an even subset while the camera moves. Camera
//! frustums are one `GL_LINES` buffer, rebuilt only when the cameras or the model's size change.
//!
//! This module draws when told to; it does not schedule frames or read input (the component
//! does), and it holds no scene state beyond GPU copies of what [`SceneData`] lists.

use super::bounds::Bounds;
use super::detail::{share, spread_order};
use super::camera::OrbitCamera;
use super::frustum::{depth_for_model, frustum_vertices};
use super::scene::SceneData;
use std::collections::HashMap;
use std::sync::Arc;
use three_d::context::{HasContext, LINES, POINTS};
use three_d::{ClearState, Program, RenderStates, RenderTarget, VertexBuffer, Viewport};
use wasm_bindgen::JsCast;
use web_sys::{HtmlCanvasElement, WebGl2RenderingContext, WebGlContextAttributes};

/// Why the viewer cannot draw. Shown to the user in place of the model.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("this browser does not offer WebGL2")]
    NoWebGl2,
    #[error("the WebGL2 context could not be set up: {0}")]
    Context(String),
    #[error("the viewer's shaders did not build: {0}")]
    Shader(String),
}

/// The canvas background (the stylesheet's panel colour, so the canvas reads as a panel).
const BACKGROUND: [f32; 3] = [0.114, 0.125, 0.149];
/// Frustum colour, RGBA: the stylesheet's accent, so cameras read as "people were here".
const FRUSTUM_COLOUR: [f32; 4] = [0.85, 0.64, 0.26, 1.0];
/// Drawing buffers larger than this per side cost memory and fill rate for no visible gain.
const MAX_BUFFER_SIDE: f64 = 4096.0;

// three-d prepends `#version 300 es` and precision qualifiers.
const POINT_VERTEX: &str = r#"
uniform mat4 u_view_projection;
uniform float u_point_size;
uniform float u_highlight;
in vec3 a_position;
in uvec3 a_color;
out vec3 v_color;
void main() {
    gl_Position = u_view_projection * vec4(a_position, 1.0);
    vec3 colour = vec3(a_color) / 255.0;
    // The newest photo's points keep their own colours, brightened, then fade to normal:
    // amber is the colour of frustums and buttons and would read as one of them.
    v_color = mix(colour, vec3(1.0), 0.45 * u_highlight);
    gl_PointSize = u_point_size * (1.0 + u_highlight);
}
"#;

const POINT_FRAGMENT: &str = r#"
in vec3 v_color;
layout (location = 0) out vec4 out_color;
void main() {
    // Round points: squares look like a mosaic once they are a few pixels wide.
    vec2 d = gl_PointCoord - vec2(0.5);
    if (dot(d, d) > 0.25) discard;
    out_color = vec4(v_color, 1.0);
}
"#;

const LINE_VERTEX: &str = r#"
uniform mat4 u_view_projection;
in vec3 a_position;
void main() {
    gl_Position = u_view_projection * vec4(a_position, 1.0);
}
"#;

const LINE_FRAGMENT: &str = r#"
uniform vec4 u_color;
layout (location = 0) out vec4 out_color;
void main() {
    out_color = u_color;
}
"#;

/// One shard on the GPU.
struct GpuShard {
    positions: VertexBuffer<[f32; 3]>,
    colours: VertexBuffer<[u8; 3]>,
    count: i32,
}

/// The WebGL2 side of the viewer for one canvas.
pub struct Renderer {
    canvas: HtmlCanvasElement,
    /// Kept besides three-d's copy to ask whether the context was lost (tab in the background
    /// too long, GPU reset): drawing then would only produce errors.
    gl: WebGl2RenderingContext,
    context: three_d::Context,
    points: Program,
    lines: Program,
    shards: HashMap<String, GpuShard>,
    frustums: Option<VertexBuffer<[f32; 3]>>,
    /// The scene revision the buffers match, and the frustum depth they were built with.
    synced: Option<(u64, f64)>,
    /// Drawing buffer size in device pixels, and device pixels per CSS pixel.
    buffer: (u32, u32),
    pixel_ratio: f64,
}

impl Renderer {
    /// Opens a WebGL2 context on `canvas`. `preserveDrawingBuffer` stays on so that screenshots
    /// (and Playwright) see the last frame, since frames are drawn only on demand.
    pub fn new(canvas: HtmlCanvasElement) -> Result<Self, RenderError> {
        let attributes = WebGlContextAttributes::new();
        attributes.set_preserve_drawing_buffer(true);
        // No multisampling: points are already round (see the fragment shader), and 4x MSAA
        // quadruples the fill cost that dominates a large cloud (4x slower frames in SwiftShader).
        attributes.set_antialias(false);
        let gl = canvas
            .get_context_with_context_options("webgl2", &attributes)
            .map_err(|e| RenderError::Context(format!("{e:?}")))?
            .ok_or(RenderError::NoWebGl2)?
            .dyn_into::<WebGl2RenderingContext>()
            .map_err(|_| RenderError::NoWebGl2)?;
        let glow = three_d::context::Context::from_webgl2_context(gl.clone());
        // three-d takes an `Arc` on every platform; on the web it never crosses a thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let glow = Arc::new(glow);
        let context = three_d::Context::from_gl_context(glow).map_err(|e| RenderError::Context(e.to_string()))?;
        let points = Program::from_source(&context, POINT_VERTEX, POINT_FRAGMENT)
            .map_err(|e| RenderError::Shader(e.to_string()))?;
        let lines = Program::from_source(&context, LINE_VERTEX, LINE_FRAGMENT)
            .map_err(|e| RenderError::Shader(e.to_string()))?;
        Ok(Self {
            canvas,
            gl,
            context,
            points,
            lines,
            shards: HashMap::new(),
            frustums: None,
            synced: None,
            buffer: (1, 1),
            pixel_ratio: 1.0,
        })
    }

    /// Matches the drawing buffer to the canvas's CSS size times `devicePixelRatio`. Returns the
    /// CSS size when it changed (the camera's aspect and pan speed depend on it).
    pub fn resize(&mut self) -> Option<(f64, f64)> {
        let ratio = web_sys::window().map(|w| w.device_pixel_ratio()).filter(|r| r.is_finite() && *r > 0.0).unwrap_or(1.0);
        let css = (f64::from(self.canvas.client_width().max(1)), f64::from(self.canvas.client_height().max(1)));
        let side = |v: f64| (v * ratio).round().clamp(1.0, MAX_BUFFER_SIDE) as u32;
        let buffer = (side(css.0), side(css.1));
        if buffer == self.buffer && ratio == self.pixel_ratio {
            return None;
        }
        self.buffer = buffer;
        self.pixel_ratio = ratio;
        self.canvas.set_width(buffer.0);
        self.canvas.set_height(buffer.1);
        Some(css)
    }

    /// Brings the GPU buffers in line with `scene`: uploads shards that appeared, frees those
    /// that went, and rebuilds the frustums if the cameras or the model size changed. `bounds`
    /// are the scene's [`SceneData::fit_bounds`], which size the frustums. Cheap when nothing
    /// changed.
    pub fn sync(&mut self, scene: &SceneData, bounds: Option<Bounds>) {
        let depth = depth_for_model(bounds.map_or(0.0, |b| f64::from(b.radius())));
        if self.synced == Some((scene.revision(), depth)) {
            return;
        }
        let drawn: HashMap<&str, _> = scene.drawn_shards().collect();
        self.shards.retain(|hash, _| drawn.contains_key(hash.as_str()));
        for (hash, points) in &drawn {
            if self.shards.contains_key(*hash) {
                continue;
            }
            let (positions, colours): (Vec<[f32; 3]>, Vec<[u8; 3]>) =
                spread_order(points.len()).map(|i| (points[i].position, points[i].color)).unzip();
            let count = i32::try_from(points.len()).unwrap_or(i32::MAX);
            self.shards.insert(
                (*hash).to_owned(),
                GpuShard {
                    positions: VertexBuffer::new_with_data(&self.context, &positions),
                    colours: VertexBuffer::new_with_data(&self.context, &colours),
                    count,
                },
            );
        }
        let vertices = frustum_vertices(scene.cameras(), depth);
        self.frustums = (!vertices.is_empty()).then(|| VertexBuffer::new_with_data(&self.context, &vertices));
        self.synced = Some((scene.revision(), depth));
    }

    /// Points in the GPU buffers that a frame of `scene` draws.
    pub fn points(&self, scene: &SceneData) -> usize {
        scene.drawn_shards().filter_map(|(hash, _)| self.shards.get(hash)).map(|s| s.count as usize).sum()
    }

    /// Draws one frame of `scene` as seen by `camera`, at most `budget` points of it (an even
    /// subset); `now_ms` drives the highlight fade. Returns the points drawn.
    pub fn render(&self, scene: &SceneData, camera: &OrbitCamera, now_ms: f64, budget: Option<usize>) -> usize {
        if self.gl.is_context_lost() {
            return 0;
        }
        let total = self.points(scene);
        let budget = budget.unwrap_or(total);
        let mut drawn = 0;
        let (width, height) = self.buffer;
        let viewport = Viewport::new_at_origo(width, height);
        let view_projection = three_d::Mat4::from(camera.view_projection(f64::from(width) / f64::from(height)));
        let target = RenderTarget::screen(&self.context, width, height);
        let [r, g, b] = BACKGROUND;
        target.clear(ClearState::color_and_depth(r, g, b, 1.0, 1.0));
        let highlight = scene.highlight(now_ms);
        let point_size = scene.point_size() * self.pixel_ratio as f32;
        for (hash, _) in scene.drawn_shards() {
            let Some(shard) = self.shards.get(hash) else { continue };
            let count = share(shard.count as usize, budget, total);
            if count == 0 {
                continue;
            }
            drawn += count;
            let count = i32::try_from(count).unwrap_or(i32::MAX);
            let strength = highlight.filter(|(h, _)| *h == hash).map_or(0.0, |(_, s)| s);
            self.points.use_uniform_if_required("u_view_projection", view_projection);
            self.points.use_uniform_if_required("u_point_size", point_size);
            self.points.use_uniform_if_required("u_highlight", strength);
            self.points.use_vertex_attribute("a_position", &shard.positions);
            self.points.use_vertex_attribute("a_color", &shard.colours);
            self.points.draw_with(RenderStates::default(), viewport, || {
                // SAFETY: the program and both attribute buffers are bound by three-d above, and
                // `count` is at most the number of vertices in each buffer.
                unsafe { self.context.draw_arrays(POINTS, 0, count) }
            });
        }
        if let Some(frustums) = &self.frustums {
            let count = i32::try_from(frustums.vertex_count()).unwrap_or(i32::MAX);
            let [r, g, b, a] = FRUSTUM_COLOUR;
            self.lines.use_uniform_if_required("u_view_projection", view_projection);
            self.lines.use_uniform_if_required("u_color", three_d::vec4(r, g, b, a));
            self.lines.use_vertex_attribute("a_position", frustums);
            self.lines.draw_with(RenderStates::default(), viewport, || {
                // SAFETY: as above; the buffer holds two vertices per segment.
                unsafe { self.context.draw_arrays(LINES, 0, count) }
            });
        }
        // For tests and benchmarks: how much of the model the last frame showed.
        _ = self.canvas.set_attribute("data-drawn", &drawn.to_string());
        drawn
    }
}
