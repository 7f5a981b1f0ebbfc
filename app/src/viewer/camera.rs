//! The orbit camera: a point it looks at, a distance, and two angles.
//!
//! This is the state and the arithmetic only: how mouse deltas, wheel steps and two-finger
//! gestures move the camera, how it frames a bounding box, and the view and projection matrices
//! (OpenGL conventions, column-major, clip depth -1..1). It does not read input events or touch
//! the GPU; [`super::input`] and the renderer do.
//!
//! Angles are measured in a display frame where `+y` is up: world `-y` (see [`super`]). The
//! target stays in world coordinates so that what the page stores never depends on the display.

use super::bounds::Bounds;
use crate::protocol::CameraView;
use std::f64::consts::FRAC_PI_2;

/// A 4x4 matrix as four columns, the layout GL uniforms and cgmath's `Matrix4::from` take.
pub type Mat4 = [[f32; 4]; 4];

/// Radians of orbit per pixel dragged: a drag across a 900-pixel canvas turns about 300°.
const ORBIT_PER_PIXEL: f64 = 0.006;
/// Pitch stops short of the poles, where yaw would spin the view around the line of sight.
const MAX_PITCH: f64 = FRAC_PI_2 - 0.05;
/// Zoom per wheel pixel: one notch (about 100 pixels) moves about 10 % while far away; closer
/// than the model's radius the steps shrink (see [`OrbitCamera::wheel`]).
const ZOOM_PER_WHEEL_PIXEL: f64 = 0.001;
/// Zoom limits relative to the framed model's radius, so a stray wheel cannot lose the model.
const MIN_DISTANCE_FACTOR: f64 = 0.01;
const MAX_DISTANCE_FACTOR: f64 = 200.0;
/// Fitting leaves this much room around the framed box.
const FIT_MARGIN: f64 = 1.06;
/// The default view looks down on the site at this elevation: the ground plan and the facades
/// both read, which eye level (0) does not.
pub const DEFAULT_PITCH: f64 = 0.45;

/// The viewer's camera. Plain data: copy it into a signal, change it, read its matrices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrbitCamera {
    /// The point orbited around, in world coordinates.
    pub target: [f64; 3],
    /// From the eye to the target, in world units.
    pub distance: f64,
    /// Around the display's up axis, 0 = looking from display `+z` (world `-z`, in front of where
    /// the photographers stood), positive turning towards display `+x`.
    pub yaw: f64,
    /// Elevation above the target's horizontal plane, within ±(90° - a little).
    pub pitch: f64,
    /// Vertical field of view in radians.
    pub fov_y: f64,
    /// Radius of the model last framed; scales zoom limits and clip planes.
    pub scale: f64,
}

impl Default for OrbitCamera {
    fn default() -> Self {
        Self { target: [0.0; 3], distance: 5.0, yaw: 0.0, pitch: 0.35, fov_y: 50f64.to_radians(), scale: 1.0 }
    }
}

impl OrbitCamera {
    /// Turns the camera around the target by a drag of `dx`, `dy` pixels. Dragging right turns the
    /// model right; dragging down looks more from above.
    pub fn orbit(&mut self, dx: f64, dy: f64) {
        self.orbit_by(-dx * ORBIT_PER_PIXEL, dy * ORBIT_PER_PIXEL);
    }

    /// Turns by angles in radians (keyboard steps).
    pub fn orbit_by(&mut self, yaw: f64, pitch: f64) {
        if !(yaw.is_finite() && pitch.is_finite()) {
            return;
        }
        self.yaw = (self.yaw + yaw).rem_euclid(std::f64::consts::TAU);
        self.pitch = (self.pitch + pitch).clamp(-MAX_PITCH, MAX_PITCH);
    }

    /// Moves the target so that the point under the cursor follows a drag of `dx`, `dy` CSS
    /// pixels on a viewport `viewport_height` pixels tall.
    pub fn pan(&mut self, dx: f64, dy: f64, viewport_height: f64) {
        if !(dx.is_finite() && dy.is_finite() && viewport_height.is_finite() && viewport_height > 0.0) {
            return;
        }
        let units_per_pixel = 2.0 * self.distance * (self.fov_y / 2.0).tan() / viewport_height;
        let (right, up, _) = self.basis();
        for axis in 0..3 {
            self.target[axis] += (-dx * right[axis] + dy * up[axis]) * units_per_pixel;
        }
    }

    /// Multiplies the distance by `factor` (below 1 moves closer), within limits set by the
    /// model's size.
    pub fn zoom(&mut self, factor: f64) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        let scale = self.scale.max(f64::MIN_POSITIVE);
        self.distance =
            (self.distance * factor).clamp(scale * MIN_DISTANCE_FACTOR, scale * MAX_DISTANCE_FACTOR);
    }

    /// A wheel turn of `delta_y` pixels (positive = towards the user = zoom out, as in maps).
    pub fn wheel(&mut self, delta_y: f64) {
        // Trackpads send many small deltas and some mice one huge one; the clamp keeps a single
        // event from jumping across the whole zoom range.
        let step = delta_y.clamp(-500.0, 500.0) * ZOOM_PER_WHEEL_PIXEL;
        // Inside the model's radius, zooming in slows down (a quarter of the speed at most), so
        // a few notches come close to a wall instead of passing through it.
        let nearness = (self.distance / self.scale.max(f64::MIN_POSITIVE)).clamp(0.25, 1.0);
        self.zoom((if step < 0.0 { step * nearness } else { step }).exp());
    }

    /// Turns to look at the model from `direction` (world, from the model towards the eye),
    /// with [`DEFAULT_PITCH`] of elevation; a direction without a horizontal part keeps the yaw.
    pub fn face(&mut self, direction: [f64; 3]) {
        let display = to_world(direction);
        if display[0].is_finite() && display[2].is_finite() && display[0].hypot(display[2]) > 1e-9 {
            self.yaw = display[0].atan2(display[2]).rem_euclid(std::f64::consts::TAU);
        }
        self.pitch = DEFAULT_PITCH;
    }

    /// Looks straight down on the model (plan view), keeping the yaw.
    pub fn top(&mut self) {
        self.pitch = MAX_PITCH;
    }

    /// Looks at the model level from the photographers' side (elevation 0).
    pub fn front(&mut self, direction: [f64; 3]) {
        self.face(direction);
        self.pitch = 0.0;
    }

    /// Puts the eye where `photo` was taken, looking where it looked, with its field of view;
    /// the orbit target is `distance` in front of it. The roll of the photo is not kept: the
    /// orbit camera is always upright.
    pub fn view_from(&mut self, photo: &CameraView, distance: f64) {
        let r = photo.rotation;
        // The camera looks along its +z: in the world that is the third row of R.
        let forward = [r[2][0], r[2][1], r[2][2]];
        let valid = forward.iter().chain(photo.center.iter()).all(|v| v.is_finite())
            && distance.is_finite()
            && distance > 0.0
            && photo.fy > 0.0
            && photo.height > 0;
        if !valid {
            return;
        }
        let back = to_world(forward.map(|v| -v));
        self.pitch = back[1].clamp(-1.0, 1.0).asin().clamp(-MAX_PITCH, MAX_PITCH);
        if back[0].hypot(back[2]) > 1e-9 {
            self.yaw = back[0].atan2(back[2]).rem_euclid(std::f64::consts::TAU);
        }
        self.distance = distance;
        self.target = std::array::from_fn(|i| photo.center[i] + forward[i] * distance);
        self.fov_y = (2.0 * (f64::from(photo.height) / 2.0 / photo.fy).atan()).clamp(0.2, 2.6);
    }

    /// The field of view of the default view.
    pub fn reset_fov(&mut self) {
        self.fov_y = OrbitCamera::default().fov_y;
    }

    /// Frames what `points` show (a sample of the model) and every one of `always` (the
    /// cameras' frustums) for a viewport of width/height `aspect`, keeping the viewing
    /// direction: the target moves to the middle of their extent on screen, at the points'
    /// median depth, and the distance is the least that keeps all of `always` and all but the
    /// outermost [`FRAME_TRIM`] of `points` on screen. Tighter than any box: a box's corners are
    /// empty space.
    pub fn fit_points(&mut self, points: &[[f32; 3]], always: &[[f32; 3]], aspect: f64) {
        let finite = |p: &&[f32; 3]| p.iter().all(|v| v.is_finite());
        let aspect = if aspect.is_finite() && aspect > 0.0 { aspect } else { 1.0 };
        let tan_v = (self.fov_y / 2.0).tan();
        let tan_h = tan_v * aspect;
        let (right, up, back) = self.basis();
        let to_view = |p: &[f32; 3]| {
            let p = p.map(f64::from);
            let dot = |a: [f64; 3]| a[0] * p[0] + a[1] * p[1] + a[2] * p[2];
            [dot(right), dot(up), dot(back)]
        };
        let model: Vec<[f64; 3]> = points.iter().filter(finite).map(to_view).collect();
        let cameras: Vec<[f64; 3]> = always.iter().filter(finite).map(to_view).collect();
        if model.is_empty() && cameras.is_empty() {
            return;
        }
        let axis = |set: &[[f64; 3]], i: usize| -> Vec<f64> { set.iter().map(|v| v[i]).collect() };
        // The extent on each screen axis: the model's, trimmed, joined with every camera.
        let extent = |i: usize| {
            let values = axis(&model, i);
            let mut lo = if values.is_empty() { f64::INFINITY } else { quantile(&values, FRAME_TRIM) };
            let mut hi = if values.is_empty() { f64::NEG_INFINITY } else { quantile(&values, 1.0 - FRAME_TRIM) };
            for c in &cameras {
                lo = lo.min(c[i]);
                hi = hi.max(c[i]);
            }
            (lo, hi)
        };
        let ((x0, x1), (y0, y1)) = (extent(0), extent(1));
        let depth_source = if model.is_empty() { &cameras } else { &model };
        let centre = [(x0 + x1) / 2.0, (y0 + y1) / 2.0, quantile(&axis(depth_source, 2), 0.5)];
        // The distance each point needs to be inside horizontally, and vertically. Trimmed per
        // axis: trimming their maximum would let the trim fall all on one edge.
        let needed = |v: &[f64; 3]| {
            let (dx, dy, dz) = ((v[0] - centre[0]).abs(), (v[1] - centre[1]).abs(), v[2] - centre[2]);
            (dz + dx * FIT_MARGIN / tan_h, dz + dy * FIT_MARGIN / tan_v)
        };
        let (across, up_down): (Vec<f64>, Vec<f64>) = model.iter().map(needed).unzip();
        let mut distance = if model.is_empty() {
            0.0
        } else {
            quantile(&across, 1.0 - FRAME_TRIM).max(quantile(&up_down, 1.0 - FRAME_TRIM))
        };
        for c in &cameras {
            let (h, v) = needed(c);
            distance = distance.max(h).max(v);
        }
        let scale = ((x1 - x0).hypot(y1 - y0) / 2.0).max(1e-3);
        self.target = std::array::from_fn(|i| right[i] * centre[0] + up[i] * centre[1] + back[i] * centre[2]);
        self.scale = scale;
        self.distance = distance.max(scale * 0.25).max(1e-3);
    }

    /// The default view: from the photographers' `side`, the elevation and turn (among a few
    /// around [`DEFAULT_PITCH`]) at which [`Self::fit_points`] makes the model largest with
    /// every camera on screen. Cameras stand between the eye and the model, so the best angle
    /// depends on where they are; trying a dozen costs a few milliseconds.
    pub fn frame_default(&mut self, points: &[[f32; 3]], always: &[[f32; 3]], side: Option<[f64; 3]>, aspect: f64) {
        if let Some(side) = side {
            self.face(side);
        }
        let (yaw, mut best) = (self.yaw, None::<(f64, OrbitCamera)>);
        for turn in [0.0, -0.5, 0.5] {
            for pitch in [0.3, DEFAULT_PITCH, 0.7, 1.0, 1.25] {
                let mut candidate = *self;
                candidate.yaw = (yaw + turn).rem_euclid(std::f64::consts::TAU);
                candidate.pitch = pitch;
                candidate.fit_points(points, always, aspect);
                // A slight preference for the plain view from the photographers' side.
                let share = candidate.points_share(points, aspect) * if turn == 0.0 { 1.1 } else { 1.0 };
                if best.as_ref().is_none_or(|(s, _)| share > *s) {
                    best = Some((share, candidate));
                }
            }
        }
        if let Some((_, camera)) = best {
            *self = camera;
        }
    }

    /// The share of a viewport of width/height `aspect` that `points` cover: the screen
    /// rectangle around all but the outermost [`FRAME_TRIM`] of them (those in front of the
    /// eye, clipped to the screen), over the screen's area.
    pub fn points_share(&self, points: &[[f32; 3]], aspect: f64) -> f64 {
        let m = self.view_projection(aspect);
        let mut xs = Vec::with_capacity(points.len());
        let mut ys = Vec::with_capacity(points.len());
        for p in points {
            let c = transform(&m, *p);
            if c[3] > 0.0 {
                xs.push(f64::from(c[0] / c[3]).clamp(-1.0, 1.0));
                ys.push(f64::from(c[1] / c[3]).clamp(-1.0, 1.0));
            }
        }
        if xs.is_empty() {
            return 0.0;
        }
        let extent = |v: &[f64]| quantile(v, 1.0 - FRAME_TRIM) - quantile(v, FRAME_TRIM);
        extent(&xs) * extent(&ys) / 4.0
    }

    /// How much of a viewport of width/height `aspect` the box covers once projected: the area
    /// of the screen rectangle around its corners (clipped to the screen), over the screen's.
    pub fn screen_share(&self, bounds: &Bounds, aspect: f64) -> f64 {
        let m = self.view_projection(aspect);
        let (mut lo, mut hi) = ([1.0f64; 2], [-1.0f64; 2]);
        for corner in corners(bounds) {
            let c = transform(&m, corner);
            if c[3] <= 0.0 {
                // Part of the box is behind the eye: it surrounds the view.
                return 1.0;
            }
            for axis in 0..2 {
                let v = f64::from(c[axis] / c[3]).clamp(-1.0, 1.0);
                lo[axis] = lo[axis].min(v);
                hi[axis] = hi[axis].max(v);
            }
        }
        ((hi[0] - lo[0]).max(0.0) * (hi[1] - lo[1]).max(0.0)) / 4.0
    }

    /// Whether a world point is inside the view (in front of the eye, within the screen).
    pub fn sees(&self, point: [f32; 3], aspect: f64) -> bool {
        let c = transform(&self.view_projection(aspect), point);
        c[3] > 0.0 && (0..3).all(|axis| (c[axis] / c[3]).abs() <= 1.0)
    }

    /// Two fingers moved from `previous` to `current` (CSS pixels): spreading them zooms in by the
    /// ratio of their spans, and moving their midpoint pans.
    pub fn pinch(&mut self, previous: [[f64; 2]; 2], current: [[f64; 2]; 2], viewport_height: f64) {
        let span = |p: [[f64; 2]; 2]| (p[0][0] - p[1][0]).hypot(p[0][1] - p[1][1]);
        let mid = |p: [[f64; 2]; 2]| [(p[0][0] + p[1][0]) / 2.0, (p[0][1] + p[1][1]) / 2.0];
        let (before, after) = (span(previous), span(current));
        // Fingers closer than a few pixels give a ratio that is mostly noise.
        if before > 4.0 && after > 4.0 {
            self.zoom(before / after);
        }
        let (a, b) = (mid(previous), mid(current));
        self.pan(b[0] - a[0], b[1] - a[1], viewport_height);
    }

    /// Frames `bounds` for a viewport of width/height `aspect`: the target moves to the box's
    /// centre and the distance is the least that keeps every corner of the box inside both the
    /// vertical and the horizontal field of view, so the model fills the screen instead of its
    /// (much larger) bounding sphere doing so. The viewing direction is kept, so fitting never
    /// disorients.
    pub fn fit(&mut self, bounds: &Bounds, aspect: f64) {
        let Some(center) = bounds.center() else { return };
        // A model that is one point (or a flat line) still needs a finite, nonzero frame.
        let radius = f64::from(bounds.radius()).max(1e-3);
        let aspect = if aspect.is_finite() && aspect > 0.0 { aspect } else { 1.0 };
        let tan_v = (self.fov_y / 2.0).tan();
        let tan_h = tan_v * aspect;
        let (right, up, back) = self.basis();
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let center = center.map(f64::from);
        // A corner at (x, y, z) in the view's frame around the centre is inside when
        // |x| <= (d - z)·tan_h and |y| <= (d - z)·tan_v.
        let mut distance: f64 = 0.0;
        for corner in corners(bounds) {
            let offset: [f64; 3] = std::array::from_fn(|i| f64::from(corner[i]) - center[i]);
            let (x, y, z) = (dot(offset, right).abs(), dot(offset, up).abs(), dot(offset, back));
            distance = distance.max(z + x * FIT_MARGIN / tan_h).max(z + y * FIT_MARGIN / tan_v);
        }
        self.target = center;
        self.scale = radius;
        // Never closer than the box itself reaches towards the eye.
        self.distance = distance.max(radius * 0.5).max(1e-3);
    }

    /// The eye position in world coordinates.
    pub fn eye(&self) -> [f64; 3] {
        let (_, _, back) = self.basis();
        std::array::from_fn(|axis| self.target[axis] + back[axis] * self.distance)
    }

    /// Right, up and backward (eye minus target, normalised) unit vectors in world coordinates.
    fn basis(&self) -> ([f64; 3], [f64; 3], [f64; 3]) {
        let (sy, cy) = self.yaw.sin_cos();
        let (sp, cp) = self.pitch.sin_cos();
        // In the display frame (+y up): back = (cp·sy, sp, cp·cy), right = (cy, 0, -sy),
        // up = back × right. The display frame is the world turned 180° about x, so each
        // vector maps to the world by negating y and z.
        let back = to_world([cp * sy, sp, cp * cy]);
        let right = to_world([cy, 0.0, -sy]);
        let up = to_world([-sp * sy, cp, -sp * cy]);
        (right, up, back)
    }

    /// World to eye coordinates (eye looks along its -z, +y up on screen).
    pub fn view_matrix(&self) -> Mat4 {
        let (right, up, back) = self.basis();
        let eye = self.eye();
        let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let m = [
            [right[0], up[0], back[0], 0.0],
            [right[1], up[1], back[1], 0.0],
            [right[2], up[2], back[2], 0.0],
            [-dot(right, eye), -dot(up, eye), -dot(back, eye), 1.0],
        ];
        to_f32(m)
    }

    /// Near and far clip distances: tight around the model so depth precision goes to it.
    pub fn clip_planes(&self) -> (f64, f64) {
        let near = (self.distance * 0.01).max(self.scale * 1e-4).max(1e-6);
        let far = (self.distance + self.scale * 20.0).max(near * 2.0);
        (near, far)
    }

    /// Perspective projection for a viewport of width/height `aspect`.
    pub fn projection_matrix(&self, aspect: f64) -> Mat4 {
        let aspect = if aspect.is_finite() && aspect > 0.0 { aspect } else { 1.0 };
        let (near, far) = self.clip_planes();
        let f = 1.0 / (self.fov_y / 2.0).tan();
        to_f32([
            [f / aspect, 0.0, 0.0, 0.0],
            [0.0, f, 0.0, 0.0],
            [0.0, 0.0, (far + near) / (near - far), -1.0],
            [0.0, 0.0, 2.0 * far * near / (near - far), 0.0],
        ])
    }

    /// Projection times view: world coordinates to clip space.
    pub fn view_projection(&self, aspect: f64) -> Mat4 {
        mul(&self.projection_matrix(aspect), &self.view_matrix())
    }
}

/// The share of framed points allowed off screen at each side: a stray triangulation must not
/// shrink the model to a dot.
pub const FRAME_TRIM: f64 = 0.01;

/// The `q` quantile (0 to 1) of `values`, by nearest rank; 0 for none.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

/// The eight corners of a box.
fn corners(bounds: &Bounds) -> [[f32; 3]; 8] {
    std::array::from_fn(|i| {
        [
            if i & 1 == 0 { bounds.min[0] } else { bounds.max[0] },
            if i & 2 == 0 { bounds.min[1] } else { bounds.max[1] },
            if i & 4 == 0 { bounds.min[2] } else { bounds.max[2] },
        ]
    })
}

/// The display frame (y up) to world (y down) and back: a half turn about x, its own inverse.
/// A half turn, not a mirror, so the model is not shown reflected.
pub fn to_world(p: [f64; 3]) -> [f64; 3] {
    [p[0], -p[1], -p[2]]
}

fn to_f32(m: [[f64; 4]; 4]) -> Mat4 {
    m.map(|column| column.map(|v| v as f32))
}

/// `a · b` for column-major matrices.
pub fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    std::array::from_fn(|col| std::array::from_fn(|row| (0..4).map(|k| a[k][row] * b[col][k]).sum()))
}

/// `m · (p, 1)`, homogeneous result.
pub fn transform(m: &Mat4, p: [f32; 3]) -> [f32; 4] {
    std::array::from_fn(|row| m[0][row] * p[0] + m[1][row] * p[1] + m[2][row] * p[2] + m[3][row])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn ndc(camera: &OrbitCamera, aspect: f64, p: [f32; 3]) -> [f32; 3] {
        let c = transform(&camera.view_projection(aspect), p);
        [c[0] / c[3], c[1] / c[3], c[2] / c[3]]
    }

    #[test]
    fn the_target_is_at_the_centre_of_the_screen_and_world_minus_y_is_up() {
        let camera = OrbitCamera { target: [1.0, 2.0, 3.0], pitch: 0.0, ..OrbitCamera::default() };
        let centre = ndc(&camera, 1.5, [1.0, 2.0, 3.0]);
        assert!(centre[0].abs() < 1e-5 && centre[1].abs() < 1e-5, "{centre:?}");
        assert!(centre[2] > -1.0 && centre[2] < 1.0);
        // A point "above" in the reconstruction's frame has a smaller y.
        let above = ndc(&camera, 1.5, [1.0, 1.0, 3.0]);
        assert!(above[1] > 0.1, "world -y must be screen up: {above:?}");
        // Default yaw looks from world -z (where the photographers stood) towards +z.
        let eye = camera.eye();
        assert!(close(eye[2], 3.0 - camera.distance, 1e-9), "{eye:?}");
        // Handedness is kept (a rotation, not a mirror): world +x is screen right from there.
        let right = ndc(&camera, 1.5, [2.0, 2.0, 3.0]);
        assert!(right[0] > 0.1, "{right:?}");
    }

    #[test]
    fn the_view_matrix_is_a_rigid_motion_to_the_eye() {
        let camera = OrbitCamera { target: [0.5, -1.0, 2.0], distance: 4.0, yaw: 0.7, pitch: -0.4, ..OrbitCamera::default() };
        let view = camera.view_matrix();
        let eye = camera.eye().map(|v| v as f32);
        let at_eye = transform(&view, eye);
        assert!(at_eye[..3].iter().all(|v| v.abs() < 1e-5), "{at_eye:?}");
        let target = transform(&view, camera.target.map(|v| v as f32));
        assert!(target[0].abs() < 1e-5 && target[1].abs() < 1e-5);
        assert!((target[2] + 4.0).abs() < 1e-5, "target is in front, along -z: {target:?}");
    }

    #[test]
    fn orbit_turns_and_clamps_pitch() {
        let mut camera = OrbitCamera { yaw: 0.0, pitch: 0.0, ..OrbitCamera::default() };
        camera.orbit(-100.0, 0.0);
        assert!(close(camera.yaw, 0.6, 1e-9));
        camera.orbit(0.0, 1e6);
        assert!(close(camera.pitch, MAX_PITCH, 1e-12));
        camera.orbit(0.0, -1e6);
        assert!(close(camera.pitch, -MAX_PITCH, 1e-12));
        let before = camera;
        camera.orbit(f64::NAN, 3.0);
        assert_eq!(camera, before, "non-finite input changes nothing");
        // The distance to the target never changes while orbiting.
        let d = |c: &OrbitCamera| {
            let e = c.eye();
            (0..3).map(|i| (e[i] - c.target[i]).powi(2)).sum::<f64>().sqrt()
        };
        assert!(close(d(&camera), camera.distance, 1e-9));
    }

    #[test]
    fn pan_keeps_the_point_under_the_cursor() {
        let mut camera = OrbitCamera { target: [0.0; 3], distance: 10.0, yaw: 0.3, pitch: 0.2, ..OrbitCamera::default() };
        let height = 600.0;
        let aspect = 1.0;
        let before = ndc(&camera, aspect, [0.0; 3]);
        camera.pan(60.0, -30.0, height);
        let after = ndc(&camera, aspect, [0.0; 3]);
        // NDC spans 2 over the viewport: 60 px right = +0.2, 30 px up = +0.1 (NDC y is up).
        assert!(((after[0] - before[0]) - 0.2).abs() < 1e-4, "{before:?} {after:?}");
        assert!(((after[1] - before[1]) - 0.1).abs() < 1e-4, "{before:?} {after:?}");
    }

    #[test]
    fn zoom_and_wheel_stay_within_limits() {
        let mut camera = OrbitCamera { distance: 10.0, scale: 2.0, ..OrbitCamera::default() };
        camera.wheel(100.0);
        assert!(camera.distance > 10.0);
        camera.wheel(-100.0);
        assert!(close(camera.distance, 10.0, 1e-9));
        for _ in 0..1000 {
            camera.wheel(-500.0);
        }
        assert!(close(camera.distance, 2.0 * MIN_DISTANCE_FACTOR, 1e-12));
        for _ in 0..1000 {
            camera.wheel(500.0);
        }
        assert!(close(camera.distance, 2.0 * MAX_DISTANCE_FACTOR, 1e-9));
        camera.zoom(0.0);
        camera.zoom(f64::INFINITY);
        assert!(close(camera.distance, 2.0 * MAX_DISTANCE_FACTOR, 1e-9));
    }

    #[test]
    fn pinch_spreading_zooms_in_and_moving_together_pans() {
        let mut camera = OrbitCamera { distance: 10.0, ..OrbitCamera::default() };
        camera.pinch([[100.0, 100.0], [200.0, 100.0]], [[50.0, 100.0], [250.0, 100.0]], 500.0);
        assert!(close(camera.distance, 5.0, 1e-9), "{}", camera.distance);
        assert_eq!(camera.target, [0.0; 3], "midpoint did not move");
        camera.pinch([[50.0, 100.0], [250.0, 100.0]], [[60.0, 100.0], [260.0, 100.0]], 500.0);
        assert!(close(camera.distance, 5.0, 1e-9));
        assert_ne!(camera.target, [0.0; 3]);
    }

    #[test]
    fn fit_frames_the_box_in_the_narrower_field_of_view() {
        let bounds = Bounds { min: [-1.0, -2.0, 3.0], max: [3.0, 2.0, 5.0] };
        for aspect in [0.5, 1.0, 2.0] {
            let mut camera = OrbitCamera { yaw: 1.0, pitch: 0.5, ..OrbitCamera::default() };
            camera.fit(&bounds, aspect);
            assert_eq!(camera.target, [1.0, 0.0, 4.0]);
            assert!((camera.yaw, camera.pitch) == (1.0, 0.5), "orientation kept");
            // Every corner lands inside the viewport.
            for i in 0..8 {
                let corner = [
                    if i & 1 == 0 { bounds.min[0] } else { bounds.max[0] },
                    if i & 2 == 0 { bounds.min[1] } else { bounds.max[1] },
                    if i & 4 == 0 { bounds.min[2] } else { bounds.max[2] },
                ];
                let p = ndc(&camera, aspect, corner);
                assert!(p.iter().all(|v| v.abs() <= 1.0), "aspect {aspect}: {corner:?} -> {p:?}");
            }
        }
        let mut camera = OrbitCamera::default();
        camera.fit(&Bounds { min: [1.0; 3], max: [1.0; 3] }, 1.0);
        assert!(camera.distance.is_finite() && camera.distance > 0.0, "a single point still frames");
    }

    #[test]
    fn fit_is_tight_the_box_fills_most_of_the_screen() {
        // A facade: wide, tall, shallow, seen from its front at the default elevation.
        let bounds = Bounds { min: [-4.0, -3.0, -0.5], max: [4.0, 3.0, 0.5] };
        let mut camera = OrbitCamera::default();
        camera.face([0.0, 0.0, -1.0]);
        camera.fit(&bounds, 1.6);
        let share = camera.screen_share(&bounds, 1.6);
        assert!(share > 0.5, "the model fills more than half the screen: {share}");
        for corner in corners(&bounds) {
            assert!(camera.sees(corner, 1.6), "{corner:?}");
        }
    }

    #[test]
    fn fitting_points_frames_what_they_show_not_their_box() {
        // A facade (a thin wall of points) and two cameras in front of it, as a room has them.
        let mut points: Vec<[f32; 3]> = Vec::new();
        for i in 0..40 {
            for j in 0..30 {
                points.push([i as f32 * 0.2 - 4.0, j as f32 * 0.2 - 3.0, 0.0]);
            }
        }
        points.push([0.0, 0.0, 500.0]); // one wild point far behind
        let cameras = [[-1.0, 0.0, -8.0], [1.0, 0.0, -8.0]];
        let mut camera = OrbitCamera::default();
        camera.face([0.0, 0.0, -1.0]);
        camera.fit_points(&points, &cameras, 1.6);
        let plain = camera.points_share(&points, 1.6);
        assert!(camera.sees([-1.0, 0.0, -8.0], 1.6) && camera.sees([1.0, 0.0, -8.0], 1.6), "cameras on screen");
        camera.frame_default(&points, &cameras, Some([0.0, 0.0, -1.0]), 1.6);
        let share = camera.points_share(&points, 1.6);
        println!("the facade fills {plain:.2} of the screen from the default angle, {share:.2} from the best");
        let inside = points.iter().filter(|p| camera.sees(**p, 1.6)).count();
        assert!(inside as f64 >= 0.95 * points.len() as f64, "{inside} of {} points on screen", points.len());
        for pitch in [0.2, 0.6, 1.1] {
            let mut tilted = OrbitCamera { yaw: 0.4, pitch, ..OrbitCamera::default() };
            tilted.fit_points(&points, &cameras, 0.6);
            let inside = points.iter().filter(|p| tilted.sees(**p, 0.6)).count();
            assert!(inside as f64 >= 0.95 * points.len() as f64, "pitch {pitch}: {inside} of {} on screen", points.len());
        }
        assert!(share >= plain && share > 0.18, "points fill {share} of the screen");
        assert!(camera.sees([-1.0, 0.0, -8.0], 1.6) && camera.sees([1.0, 0.0, -8.0], 1.6), "cameras on screen");
        assert!(camera.distance.is_finite() && camera.distance > 0.0);
    }

    #[test]
    fn the_default_view_faces_the_photographers_side_from_above() {
        let mut camera = OrbitCamera::default();
        // Photographers stood at world -z of the model: the eye goes there, raised (world -y).
        camera.face([0.0, 0.0, -1.0]);
        camera.fit(&Bounds { min: [-1.0; 3], max: [1.0; 3] }, 1.0);
        let eye = camera.eye();
        assert!(eye[2] < -1.0 && eye[1] < 0.0, "{eye:?}");
        camera.top();
        assert!(camera.eye()[1] < -camera.distance * 0.9, "top looks down from world -y: {:?}", camera.eye());
        camera.front([1.0, 0.0, 0.0]);
        let eye = camera.eye();
        assert!(eye[0] > 1.0 && eye[1].abs() < 1e-9, "front is level, from +x: {eye:?}");
    }

    #[test]
    fn viewing_from_a_photo_puts_the_eye_at_its_centre_looking_its_way() {
        // A camera at (1, 0, -5) looking along world +z (identity rotation), 100 px focal on an
        // 80 px tall image.
        let photo = CameraView::example("p", crate::protocol::IDENTITY, [1.0, 0.0, -5.0]);
        let mut camera = OrbitCamera::default();
        camera.view_from(&photo, 5.0);
        let eye = camera.eye();
        for (got, want) in eye.iter().zip([1.0, 0.0, -5.0]) {
            assert!(close(*got, want, 1e-9), "{eye:?}");
        }
        assert_eq!(camera.target, [1.0, 0.0, 0.0]);
        assert!(close(camera.fov_y, 2.0 * (40.0f64 / 100.0).atan(), 1e-12));
        // What the photo saw straight ahead is at the centre of the screen.
        assert!(camera.sees([1.0, 0.0, 3.0], 1.25));
        let p = ndc(&camera, 1.25, [1.0, 0.0, 3.0]);
        assert!(p[0].abs() < 1e-5 && p[1].abs() < 1e-5, "{p:?}");
    }

    #[test]
    fn zooming_in_slows_down_inside_the_model() {
        let mut far = OrbitCamera { distance: 10.0, scale: 1.0, ..OrbitCamera::default() };
        far.wheel(-100.0);
        let far_step = 10.0 / far.distance;
        let mut near = OrbitCamera { distance: 0.2, scale: 1.0, ..OrbitCamera::default() };
        near.wheel(-100.0);
        let near_step = 0.2 / near.distance;
        assert!(far_step > near_step && near_step > 1.0, "{far_step} {near_step}");
        // Five notches from a tight fit stay outside the model.
        let bounds = Bounds { min: [-1.0; 3], max: [1.0; 3] };
        let mut camera = OrbitCamera::default();
        camera.fit(&bounds, 1.0);
        for _ in 0..5 {
            camera.wheel(-100.0);
        }
        assert!(camera.distance > camera.scale * 0.5, "{} vs radius {}", camera.distance, camera.scale);
    }

    #[test]
    fn matrix_product_matches_applying_in_turn() {
        let camera = OrbitCamera { yaw: 2.0, pitch: -0.3, ..OrbitCamera::default() };
        let (p, v) = (camera.projection_matrix(1.3), camera.view_matrix());
        let point = [0.3, -0.2, 0.9];
        let step = transform(&v, point);
        let twice = transform(&p, [step[0] / step[3], step[1] / step[3], step[2] / step[3]]);
        let once = transform(&mul(&p, &v), point);
        for i in 0..4 {
            assert!((twice[i] - once[i]).abs() < 1e-4, "{twice:?} {once:?}");
        }
    }
}
