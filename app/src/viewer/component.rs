//! The [`Viewer`] component: the canvas, its overlay controls, and the wiring between input,
//! camera, scene and renderer.
//!
//! On the server it renders the markup only (canvas, controls, a status line). In the browser
//! it opens the WebGL2 renderer on the canvas and draws on demand: a frame is requested when
//! the scene, the camera or the canvas size changes, and frames keep coming only while the
//! newest photo's highlight fades. While the camera moves, frames draw the subset of points
//! that [`super::detail`] says they can afford, and a full frame follows once it rests. It does not fetch anything or listen to the room: the page
//! owns the [`SceneData`] signal and feeds it (see [`super::loader`]).

use super::camera::OrbitCamera;
use super::frustum::{depth_for_model, frustum_vertices};
use super::input::{Gesture, Gestures, key_gesture, wheel_pixels};
use super::scene::{MAX_POINT_SIZE, MIN_POINT_SIZE, SceneData};
use crate::protocol::CameraView;
use leptos::ev::{KeyboardEvent, PointerEvent, WheelEvent};
use leptos::prelude::*;

/// The 3D view of the room's model.
///
/// Mouse: left drag orbits, right drag or shift+drag pans, the wheel zooms. Touch: one finger
/// orbits, two pinch and pan. With the canvas focused: arrow keys orbit, shift+arrows pan,
/// `+`/`-` zoom. The camera frames the model as it grows until the user moves it; "Fit to
/// model" frames it again and resumes following.
/// Asks the viewer to look through a photo: the photo id, and a counter so that asking for the
/// same photo twice moves the camera twice. Provided by the page as context; a card's "View
/// from here" sets it.
#[derive(Clone, Copy)]
pub struct ViewRequest(pub RwSignal<Option<(String, u64)>>);

impl ViewRequest {
    pub fn new() -> Self {
        Self(RwSignal::new(None))
    }

    pub fn view_from(&self, photo: &str) {
        self.0.update(|r| {
            let n = r.as_ref().map_or(0, |(_, n)| n + 1);
            *r = Some((photo.to_owned(), n));
        });
    }
}

impl Default for ViewRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// From the model towards where the photographers stood: the mean of the directions from the
/// model's centre to each camera, or the first camera's side when they cancel out.
pub fn photographers_side(center: [f64; 3], cameras: &[CameraView]) -> Option<[f64; 3]> {
    let unit = |v: [f64; 3]| {
        let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        (n.is_finite() && n > 1e-12).then(|| v.map(|x| x / n))
    };
    let mut sum = [0.0; 3];
    for camera in cameras {
        if let Some(d) = unit(std::array::from_fn(|i| camera.center[i] - center[i])) {
            (0..3).for_each(|i| sum[i] += d[i]);
        }
    }
    unit(sum).or_else(|| cameras.first().and_then(|c| unit(std::array::from_fn(|i| c.center[i] - center[i]))))
}

/// How many of `cameras` are wholly on screen: apex and image corners of the frustum drawn for
/// a model of `radius`.
pub fn cameras_in_view(camera: &OrbitCamera, aspect: f64, cameras: &[CameraView], radius: f64) -> usize {
    let depth = depth_for_model(radius);
    cameras
        .iter()
        .filter(|c| {
            let vertices = frustum_vertices(std::slice::from_ref(*c), depth);
            !vertices.is_empty() && vertices.iter().all(|v| camera.sees(*v, aspect))
        })
        .count()
}

/// Points framing and the fill measure look at, at most.
const FRAME_SAMPLE: usize = 4000;

#[component]
pub fn Viewer(
    /// What to draw. The page folds the room's snapshot and events into it and a
    /// [`ShardLoader`](super::loader) fills in points; the viewer itself only writes the point
    /// size (from its slider).
    scene: RwSignal<SceneData>,
) -> impl IntoView {
    let canvas = NodeRef::<leptos::html::Canvas>::new();
    let camera = RwSignal::new(OrbitCamera::default());
    // The canvas's CSS size: fitting needs its aspect and panning its height. Set by the
    // renderer on the first frame and on every resize.
    let size = RwSignal::new((1.0f64, 1.0f64));
    let follow = RwSignal::new(true);
    let gestures = StoredValue::new(Gestures::default());
    let failure = RwSignal::new(None::<String>);
    let revision = Memo::new(move |_| scene.with(|s| s.revision()));
    // Robust bounds cost a pass over (a sample of) every point: once per data change, shared by
    // framing and the renderer's frustum size.
    let bounds = Memo::new(move |_| {
        // Reading (not `track()`ing) a memo is what computes it and subscribes it to the scene.
        let _revision = revision.get();
        scene.with_untracked(|s| s.fit_bounds())
    });
    // The default view frames the points and the cameras together, from the photographers'
    // side, a little above.
    let framed = Memo::new(move |_| {
        let _revision = revision.get();
        scene.with_untracked(|s| s.frame_bounds())
    });
    let side = Memo::new(move |_| {
        let _revision = revision.get();
        let center = framed.get().and_then(|b| b.center())?;
        scene.with_untracked(|s| photographers_side(center.map(f64::from), s.cameras()))
    });
    // The points framing looks at: a few thousand, once per data change.
    let sample = Memo::new(move |_| {
        let _revision = revision.get();
        scene.with_untracked(|s| s.frame_sample(FRAME_SAMPLE))
    });

    // Keep the model framed while it grows, until the user takes the camera. Effects run only in
    // the browser, so the server renders the default camera (which draws nothing anyway).
    Effect::new(move |_| {
        let (width, height) = size.get();
        if follow.get() {
            let side = side.get();
            sample.with(|(points, cameras)| {
                if points.is_empty() && cameras.is_empty() {
                    return;
                }
                camera.update(|c| {
                    c.reset_fov();
                    c.frame_default(points, cameras, side, width / height);
                });
            });
        }
    });
    // A preset view frames the model the same way from another direction.
    let preset = move |set: fn(&mut OrbitCamera, [f64; 3])| {
        follow.set(false);
        let (width, height) = size.get_untracked();
        let side = side.get_untracked().unwrap_or([0.0, 0.0, -1.0]);
        sample.with_untracked(|(points, cameras)| {
            camera.update(|c| {
                c.reset_fov();
                set(c, side);
                c.fit_points(points, cameras, width / height);
            });
        });
    };
    if let Some(ViewRequest(request)) = use_context::<ViewRequest>() {
        Effect::new(move |_| {
            let Some((photo, _)) = request.get() else { return };
            let found = scene.with_untracked(|s| s.cameras().iter().find(|c| c.photo == photo).cloned());
            let Some(photo) = found else { return };
            // The orbit target goes to the model's centre depth, so orbiting from the photo's
            // viewpoint turns around what it shows.
            let distance = framed.get_untracked().and_then(|b| {
                let center = b.center()?;
                let d: f64 = (0..3).map(|i| (f64::from(center[i]) - photo.center[i]).powi(2)).sum::<f64>().sqrt();
                (d > 1e-9).then_some(d)
            });
            follow.set(false);
            camera.update(|c| c.view_from(&photo, distance.unwrap_or(1.0)));
        });
    }
    // What the test suite and curious users can read off the canvas: how much of it the model
    // fills, and how many cameras are wholly in view.
    let model_share = Memo::new(move |_| {
        let (width, height) = size.get();
        sample.with(|(points, _)| (!points.is_empty()).then(|| camera.with(|c| c.points_share(points, width / height))))
    });
    let cameras_shown = Memo::new(move |_| {
        let (width, height) = size.get();
        let radius = bounds.get().map_or(1.0, |b| f64::from(b.radius()));
        let _revision = revision.get();
        camera.with(|c| scene.with_untracked(|s| cameras_in_view(c, width / height, s.cameras(), radius)))
    });

    let steer = move |gesture: Gesture| {
        follow.set(false);
        let height = size.get_untracked().1;
        camera.update(|c| gesture.apply(c, height));
    };
    let at = |ev: &PointerEvent| [f64::from(ev.client_x()), f64::from(ev.client_y())];
    let on_pointer_down = move |ev: PointerEvent| {
        if gestures.try_update_value(|g| g.press(ev.pointer_id(), at(&ev))).unwrap_or(false) {
            #[cfg(feature = "hydrate")]
            browser::capture(&ev);
        }
    };
    let on_pointer_move = move |ev: PointerEvent| {
        // Right (2) or middle (4) button, or shift, pans.
        let pan = ev.shift_key() || ev.buttons() & 0b110 != 0;
        if let Some(gesture) = gestures.try_update_value(|g| g.moved(ev.pointer_id(), at(&ev), pan)).flatten() {
            ev.prevent_default();
            steer(gesture);
        }
    };
    let on_pointer_end = move |ev: PointerEvent| gestures.update_value(|g| g.release(ev.pointer_id()));
    let on_wheel = move |ev: WheelEvent| {
        // Listeners on elements are not passive, so this keeps the page from scrolling.
        ev.prevent_default();
        steer(wheel_pixels(ev.delta_y(), ev.delta_mode(), size.get_untracked().1));
    };
    let on_key = move |ev: KeyboardEvent| {
        // Leave browser shortcuts (ctrl/cmd + and -) alone.
        if ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
            return;
        }
        if let Some(gesture) = key_gesture(&ev.key(), ev.shift_key()) {
            ev.prevent_default();
            steer(gesture);
        }
    };
    let on_point_size = move |ev: leptos::ev::Event| {
        if let Ok(value) = event_target_value(&ev).parse::<f32>() {
            scene.update(|s| s.set_point_size(value));
        }
    };

    let point_size = move || scene.with(|s| s.point_size()).to_string();
    let status = move || {
        if let Some(failure) = failure.get() {
            return format!("3D view unavailable: {failure}");
        }
        scene.with(|s| {
            let plural = |n: usize, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
            let mut text = format!("{} · {}", plural(s.drawn_points(), "point"), plural(s.cameras().len(), "camera"));
            let (held, listed) = s.loading_progress();
            if held < listed {
                let what = if s.incoming_generation().is_some() { "refined model" } else { "model" };
                text.push_str(&format!(" · loading {what} {held}/{listed}"));
            }
            text
        })
    };

    #[cfg(feature = "hydrate")]
    browser::start(browser::Inputs { canvas, scene, bounds, camera, size, failure });

    view! {
        <div class="viewer">
            <canvas
                node_ref=canvas
                class="viewer-canvas"
                data-testid="viewer"
                data-points=move || scene.with(|s| s.drawn_points())
                data-cameras=move || scene.with(|s| s.cameras().len())
                data-generation=move || scene.with(|s| s.generation())
                data-model-share=move || model_share.get().map(|s| format!("{s:.3}")).unwrap_or_default()
                data-cameras-in-view=move || cameras_shown.get()
                data-eye=move || camera.with(|c| c.eye().map(|v| format!("{v:.5}")).join(","))
                role="application"
                aria-roledescription="3D viewer"
                aria-label="3D model of the site"
                aria-describedby="viewer-help"
                tabindex="0"
                on:pointerdown=on_pointer_down
                on:pointermove=on_pointer_move
                on:pointerup=on_pointer_end
                on:pointercancel=on_pointer_end
                on:wheel=on_wheel
                on:keydown=on_key
                on:contextmenu=move |ev| ev.prevent_default()
            ></canvas>
            <p id="viewer-help" class="visually-hidden">
                "Drag to turn the model, right-drag or shift-drag to move it, scroll or pinch to zoom. "
                "With the view focused: arrow keys turn, shift and arrow keys move, plus and minus zoom."
            </p>
            <div class="viewer-controls">
                <button type="button" data-testid="viewer-fit" on:click=move |_| follow.set(true)>
                    "Fit to model"
                </button>
                <button type="button" class="quiet" data-testid="viewer-top" on:click=move |_| preset(|c, _| c.top())>"Top"</button>
                <button type="button" class="quiet" data-testid="viewer-front" on:click=move |_| preset(OrbitCamera::front)>"Front"</button>
                <label class="viewer-point-size">
                    "Point size"
                    <input
                        type="range"
                        data-testid="viewer-point-size"
                        min=MIN_POINT_SIZE.to_string()
                        max=MAX_POINT_SIZE.to_string()
                        step="0.5"
                        value=point_size
                        prop:value=point_size
                        aria-valuetext=move || format!("{} pixels", point_size())
                        on:input=on_point_size
                    />
                </label>
            </div>
            <p class="viewer-status" data-testid="viewer-status">{status}</p>
        </div>
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use crate::viewer::bounds::Bounds;
    use crate::viewer::camera::OrbitCamera;
    use crate::viewer::detail::{PointBudget, SETTLE_MS};
    use crate::viewer::now_ms;
    use crate::viewer::render::Renderer;
    use crate::viewer::scene::SceneData;
    use leptos::ev::PointerEvent;
    use leptos::prelude::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;

    /// Keeps a drag going when the pointer leaves the canvas.
    pub(super) fn capture(ev: &PointerEvent) {
        if let Some(element) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) {
            // Without capture a drag merely ends at the canvas edge; nothing to report.
            _ = element.set_pointer_capture(ev.pointer_id());
        }
    }

    /// A resize observer and the callback it calls, which must live as long as it does.
    type Observer = (web_sys::ResizeObserver, Closure<dyn FnMut()>);

    /// An event listener that is removed when dropped, so the browser never calls a callback
    /// whose Rust side is gone.
    struct Listener {
        target: web_sys::EventTarget,
        event: &'static str,
        callback: Closure<dyn FnMut(web_sys::Event)>,
    }

    impl Listener {
        fn new(target: &web_sys::EventTarget, event: &'static str, f: impl FnMut(web_sys::Event) + 'static) -> Option<Self> {
            let callback = Closure::<dyn FnMut(web_sys::Event)>::new(f);
            target.add_event_listener_with_callback(event, callback.as_ref().unchecked_ref()).ok()?;
            Some(Self { target: target.clone(), event, callback })
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            _ = self.target.remove_event_listener_with_callback(self.event, self.callback.as_ref().unchecked_ref());
        }
    }

    /// What the browser side of one viewer shares between its effects and callbacks. Frame and
    /// resize callbacks hold it weakly, so it (and its GPU buffers) goes with the component.
    struct Shared {
        renderer: RefCell<Option<Renderer>>,
        frame_requested: Cell<bool>,
        observer: RefCell<Option<Observer>>,
        listeners: RefCell<Vec<Listener>>,
        scene: RwSignal<SceneData>,
        bounds: Memo<Option<Bounds>>,
        camera: RwSignal<OrbitCamera>,
        size: RwSignal<(f64, f64)>,
        /// What frames cost here, measured from the frames drawn.
        budget: RefCell<PointBudget>,
        /// When the camera last changed (`now_ms`).
        moved_at: Cell<f64>,
        /// The cost of a drawn frame is being measured.
        probe_pending: Cell<bool>,
        /// A full frame is due once the camera rests.
        settle_pending: Cell<bool>,
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            if let Some((observer, _callback)) = self.observer.take() {
                observer.disconnect();
            }
        }
    }

    impl Shared {
        /// Asks for one frame; several requests before it is drawn make one frame.
        fn request_frame(self: &Rc<Self>) {
            if self.frame_requested.replace(true) {
                return;
            }
            let weak = Rc::downgrade(self);
            request_animation_frame(move || {
                if let Some(shared) = weak.upgrade() {
                    shared.frame_requested.set(false);
                    shared.draw();
                }
            });
        }

        fn draw(self: &Rc<Self>) {
            let now = now_ms();
            let moving = now - self.moved_at.get() < SETTLE_MS;
            let (animating, drawn, total) = {
                let mut slot = self.renderer.borrow_mut();
                let Some(renderer) = slot.as_mut() else { return };
                if let Some(css) = renderer.resize() {
                    // Effects run later, so this cannot re-enter while the renderer is borrowed.
                    self.size.try_set(css);
                }
                let Some(camera) = self.camera.try_get_untracked() else { return };
                let bounds = self.bounds.try_get_untracked().flatten();
                self.scene
                    .try_with_untracked(|scene| {
                        renderer.sync(scene, bounds);
                        let total = renderer.points(scene);
                        let budget = moving.then(|| self.budget.borrow().moving(total));
                        let drawn = renderer.render(scene, &camera, now, budget);
                        (scene.is_animating(now), drawn, total)
                    })
                    .unwrap_or((false, 0, 0))
            };
            self.measure(drawn, now);
            if drawn < total {
                self.settle_later();
            }
            if animating {
                self.request_frame();
            }
        }

        /// Times the frame just drawn: the browser starts the next animation frame only once the
        /// GPU (or SwiftShader) has got through this one.
        fn measure(self: &Rc<Self>, points: usize, drawn_at: f64) {
            if self.probe_pending.replace(true) {
                return;
            }
            let weak = Rc::downgrade(self);
            request_animation_frame(move || {
                if let Some(shared) = weak.upgrade() {
                    shared.probe_pending.set(false);
                    shared.budget.borrow_mut().observe(points, now_ms() - drawn_at);
                }
            });
        }

        /// Draws the whole model once the camera has rested for [`SETTLE_MS`].
        fn settle_later(self: &Rc<Self>) {
            if self.settle_pending.replace(true) {
                return;
            }
            let wait = (self.moved_at.get() + SETTLE_MS - now_ms()).max(0.0) + 1.0;
            let weak = Rc::downgrade(self);
            set_timeout(
                move || {
                    let Some(shared) = weak.upgrade() else { return };
                    shared.settle_pending.set(false);
                    if now_ms() - shared.moved_at.get() >= SETTLE_MS {
                        shared.request_frame();
                    } else {
                        shared.settle_later();
                    }
                },
                std::time::Duration::from_millis(wait as u64),
            );
        }

        fn observe(self: &Rc<Self>, element: &web_sys::HtmlCanvasElement) {
            let weak = Rc::downgrade(self);
            let callback = Closure::<dyn FnMut()>::new(move || {
                if let Some(shared) = weak.upgrade() {
                    shared.request_frame();
                }
            });
            match web_sys::ResizeObserver::new(callback.as_ref().unchecked_ref()) {
                Ok(observer) => {
                    observer.observe(element);
                    *self.observer.borrow_mut() = Some((observer, callback));
                }
                // Every WebGL2 browser has ResizeObserver; without it the canvas keeps its first
                // size until the next redraw, which still resizes.
                Err(err) => leptos::logging::warn!("no ResizeObserver: {err:?}"),
            }
        }

        /// Survives a lost WebGL context (GPU reset, too many contexts, a long-hidden tab on
        /// mobile): saying we handle the loss lets the browser restore the context, and a
        /// restored context starts empty, so the renderer is rebuilt and re-uploads the scene,
        /// which still holds every point.
        fn survive_context_loss(self: &Rc<Self>, element: &web_sys::HtmlCanvasElement) {
            let weak = Rc::downgrade(self);
            let lost = Listener::new(element, "webglcontextlost", move |ev| {
                ev.prevent_default();
                // Freed now, while GL calls are no-ops: freeing the dead context's objects
                // on the restored one would be an error.
                if let Some(shared) = weak.upgrade() {
                    shared.renderer.borrow_mut().take();
                }
            });
            let weak = Rc::downgrade(self);
            let canvas = element.clone();
            let restored = Listener::new(element, "webglcontextrestored", move |_| {
                let Some(shared) = weak.upgrade() else { return };
                match Renderer::new(canvas.clone()) {
                    Ok(renderer) => {
                        *shared.renderer.borrow_mut() = Some(renderer);
                        shared.request_frame();
                    }
                    Err(err) => leptos::logging::warn!("3D viewer: the restored context is unusable: {err}"),
                }
            });
            self.listeners.borrow_mut().extend(lost.into_iter().chain(restored));
        }
    }

    /// The component's state the browser side reads and writes.
    pub(super) struct Inputs {
        pub canvas: NodeRef<leptos::html::Canvas>,
        pub scene: RwSignal<SceneData>,
        pub bounds: Memo<Option<Bounds>>,
        pub camera: RwSignal<OrbitCamera>,
        /// Written here: the canvas's CSS size.
        pub size: RwSignal<(f64, f64)>,
        /// Written here: why the renderer could not start.
        pub failure: RwSignal<Option<String>>,
    }

    /// Opens the renderer once the canvas exists and redraws whenever the scene or camera
    /// change.
    pub(super) fn start(inputs: Inputs) {
        let Inputs { canvas, scene, bounds, camera, size, failure } = inputs;
        let shared = Rc::new(Shared {
            renderer: RefCell::new(None),
            frame_requested: Cell::new(false),
            observer: RefCell::new(None),
            listeners: RefCell::new(Vec::new()),
            scene,
            bounds,
            camera,
            size,
            budget: RefCell::new(PointBudget::default()),
            moved_at: Cell::new(f64::NEG_INFINITY),
            probe_pending: Cell::new(false),
            settle_pending: Cell::new(false),
        });
        let setup = Rc::clone(&shared);
        Effect::new(move |_| {
            let Some(element) = canvas.get() else { return };
            if setup.renderer.borrow().is_some() {
                return;
            }
            match Renderer::new(element.clone()) {
                Ok(renderer) => {
                    *setup.renderer.borrow_mut() = Some(renderer);
                    setup.observe(&element);
                    setup.survive_context_loss(&element);
                    setup.request_frame();
                }
                Err(err) => {
                    leptos::logging::warn!("3D viewer: {err}");
                    failure.set(Some(err.to_string()));
                }
            }
        });
        let moved = Rc::clone(&shared);
        Effect::new(move |_| {
            camera.track();
            moved.moved_at.set(now_ms());
            moved.request_frame();
        });
        Effect::new(move |_| {
            scene.track();
            shared.request_frame();
        });
    }
}

// Rendering to HTML needs the `ssr` feature (as in the server, and in `cargo test --workspace`,
// where the server's dependency turns it on).
#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn the_server_renders_a_focusable_labelled_canvas_and_controls() {
        let owner = Owner::new();
        owner.set();
        let scene = RwSignal::new(SceneData::new());
        scene.update(|s| s.set_point_size(4.5));
        let html = view! { <Viewer scene/> }.to_html();
        for expected in [
            r#"data-testid="viewer""#,
            r#"aria-label="3D model of the site""#,
            r#"tabindex="0""#,
            r#"aria-describedby="viewer-help""#,
            r#"id="viewer-help""#,
            ">Fit to model</button>",
            r#"type="range""#,
            r#"value="4.5""#,
            "Point size",
            r#"data-points="0""#,
            "0 points · 0 cameras",
        ] {
            assert!(html.contains(expected), "{expected} missing from {html}");
        }
    }
}
