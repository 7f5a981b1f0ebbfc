//! Turning pointer, touch and key input into camera moves.
//!
//! The browser side only forwards coordinates and key names; the decisions (which pointer
//! drives which gesture, what a key does) live here so they are tested natively. It does not
//! read DOM events itself.
//!
//! Mouse: left drag orbits, right (or middle) drag or shift+drag pans, the wheel zooms.
//! Touch: one finger orbits, two fingers pinch to zoom and move together to pan. Keys, with
//! the canvas focused: arrows move the camera around the model in the arrow's direction,
//! shift+arrows pan, `+`/`-` zoom.

use super::camera::OrbitCamera;

/// One camera move.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gesture {
    /// CSS pixels dragged.
    Orbit { dx: f64, dy: f64 },
    Pan { dx: f64, dy: f64 },
    /// Two pointers, before and after one of them moved.
    Pinch { previous: [[f64; 2]; 2], current: [[f64; 2]; 2] },
    /// Radians (keyboard).
    Turn { yaw: f64, pitch: f64 },
    /// Distance factor (keyboard); below 1 moves closer.
    Zoom(f64),
    /// Wheel turned by this many pixels (positive zooms out).
    Wheel { delta_y: f64 },
}

impl Gesture {
    /// Applies the move to `camera` on a viewport `viewport_height` CSS pixels tall.
    pub fn apply(self, camera: &mut OrbitCamera, viewport_height: f64) {
        match self {
            Self::Orbit { dx, dy } => camera.orbit(dx, dy),
            Self::Pan { dx, dy } => camera.pan(dx, dy, viewport_height),
            Self::Pinch { previous, current } => camera.pinch(previous, current, viewport_height),
            Self::Turn { yaw, pitch } => camera.orbit_by(yaw, pitch),
            Self::Zoom(factor) => camera.zoom(factor),
            Self::Wheel { delta_y } => camera.wheel(delta_y),
        }
    }
}

/// The pointers held down on the canvas, in the order they went down. A third finger is
/// ignored rather than turning a pinch into something unpredictable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gestures {
    pointers: Vec<(i32, [f64; 2])>,
}

impl Gestures {
    /// A pointer went down at `at` (CSS pixels relative to the canvas). Returns whether it is
    /// tracked (the caller then captures it, so drags continue outside the canvas).
    pub fn press(&mut self, id: i32, at: [f64; 2]) -> bool {
        if let Some(p) = self.pointers.iter_mut().find(|(p, _)| *p == id) {
            p.1 = at;
            return true;
        }
        if self.pointers.len() >= 2 {
            return false;
        }
        self.pointers.push((id, at));
        true
    }

    /// A pointer went up or was cancelled.
    pub fn release(&mut self, id: i32) {
        self.pointers.retain(|(p, _)| *p != id);
    }

    /// How many pointers are down.
    pub fn active(&self) -> usize {
        self.pointers.len()
    }

    /// A tracked pointer moved to `at`. With one pointer this orbits, or pans when `pan` (shift,
    /// or the right or middle button); with two, it is a pinch. Untracked pointers (a mouse
    /// hovering) give nothing.
    pub fn moved(&mut self, id: i32, at: [f64; 2], pan: bool) -> Option<Gesture> {
        if !(at[0].is_finite() && at[1].is_finite()) {
            return None;
        }
        let index = self.pointers.iter().position(|(p, _)| *p == id)?;
        let before = std::mem::replace(&mut self.pointers[index].1, at);
        if self.pointers.len() == 1 {
            let (dx, dy) = (at[0] - before[0], at[1] - before[1]);
            return Some(if pan { Gesture::Pan { dx, dy } } else { Gesture::Orbit { dx, dy } });
        }
        let other = self.pointers[1 - index].1;
        let (previous, current) = if index == 0 { ([before, other], [at, other]) } else { ([other, before], [other, at]) };
        Some(Gesture::Pinch { previous, current })
    }
}

/// A wheel event's vertical delta in pixels. `delta_mode` is `WheelEvent.deltaMode`: 0 pixels,
/// 1 lines (Firefox with a mouse), 2 pages.
pub fn wheel_pixels(delta_y: f64, delta_mode: u32, viewport_height: f64) -> Gesture {
    let delta_y = match delta_mode {
        1 => delta_y * 16.0,
        2 => delta_y * viewport_height.max(1.0),
        _ => delta_y,
    };
    Gesture::Wheel { delta_y }
}

/// Keyboard orbit step: 24 presses go once around.
const KEY_TURN: f64 = std::f64::consts::PI / 12.0;
/// Keyboard pan step in CSS pixels.
const KEY_PAN: f64 = 40.0;
/// Keyboard zoom step.
const KEY_ZOOM: f64 = 1.2;

/// The camera move for a key (`KeyboardEvent.key`), or `None` for keys the viewer leaves alone
/// (so Tab, Enter and the rest keep working).
pub fn key_gesture(key: &str, shift: bool) -> Option<Gesture> {
    let arrow = match key {
        "ArrowLeft" => Some((-1.0, 0.0)),
        "ArrowRight" => Some((1.0, 0.0)),
        "ArrowUp" => Some((0.0, 1.0)),
        "ArrowDown" => Some((0.0, -1.0)),
        _ => None,
    };
    if let Some((x, y)) = arrow {
        // The camera moves the way the arrow points: for a pan that is the model moving the
        // other way on screen, for an orbit the eye going round to that side.
        return Some(if shift {
            Gesture::Pan { dx: -x * KEY_PAN, dy: y * KEY_PAN }
        } else {
            Gesture::Turn { yaw: x * KEY_TURN, pitch: y * KEY_TURN }
        });
    }
    match key {
        "+" | "=" => Some(Gesture::Zoom(1.0 / KEY_ZOOM)),
        "-" | "_" => Some(Gesture::Zoom(KEY_ZOOM)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pointer_orbits_or_pans() {
        let mut g = Gestures::default();
        assert_eq!(g.moved(1, [5.0, 5.0], false), None, "hovering does nothing");
        assert!(g.press(1, [10.0, 10.0]));
        assert_eq!(g.moved(1, [15.0, 8.0], false), Some(Gesture::Orbit { dx: 5.0, dy: -2.0 }));
        assert_eq!(g.moved(1, [16.0, 8.0], true), Some(Gesture::Pan { dx: 1.0, dy: 0.0 }));
        assert_eq!(g.moved(1, [f64::NAN, 8.0], false), None);
        g.release(1);
        assert_eq!(g.active(), 0);
        assert_eq!(g.moved(1, [20.0, 8.0], false), None);
    }

    #[test]
    fn two_pointers_pinch_and_a_third_is_ignored() {
        let mut g = Gestures::default();
        g.press(1, [0.0, 0.0]);
        g.press(2, [100.0, 0.0]);
        assert!(!g.press(3, [50.0, 50.0]));
        assert_eq!(
            g.moved(2, [120.0, 0.0], false),
            Some(Gesture::Pinch { previous: [[0.0, 0.0], [100.0, 0.0]], current: [[0.0, 0.0], [120.0, 0.0]] })
        );
        assert_eq!(
            g.moved(1, [-10.0, 0.0], false),
            Some(Gesture::Pinch { previous: [[0.0, 0.0], [120.0, 0.0]], current: [[-10.0, 0.0], [120.0, 0.0]] })
        );
        assert_eq!(g.moved(3, [60.0, 60.0], false), None);
        // Lifting one finger continues as an orbit from where the other is, without a jump.
        g.release(1);
        assert_eq!(g.moved(2, [125.0, 0.0], false), Some(Gesture::Orbit { dx: 5.0, dy: 0.0 }));
    }

    #[test]
    fn keys_move_the_camera_the_way_the_arrow_points() {
        let mut camera = OrbitCamera { yaw: 0.0, pitch: 0.0, ..OrbitCamera::default() };
        key_gesture("ArrowUp", false).expect("up").apply(&mut camera, 500.0);
        assert!(camera.pitch > 0.0 && camera.eye()[1] < 0.0, "eye rises: world -y is up");
        key_gesture("ArrowRight", false).expect("right").apply(&mut camera, 500.0);
        assert!(camera.eye()[0] > 0.0, "eye goes to the right");
        let before = camera.distance;
        key_gesture("+", false).expect("zoom").apply(&mut camera, 500.0);
        assert!(camera.distance < before);
        key_gesture("-", false).expect("zoom").apply(&mut camera, 500.0);
        assert!((camera.distance - before).abs() < 1e-9);
        assert!(matches!(key_gesture("ArrowLeft", true), Some(Gesture::Pan { dx, .. }) if dx > 0.0));
        assert_eq!(key_gesture("Tab", false), None);
        assert_eq!(key_gesture("a", false), None);
    }

    #[test]
    fn wheel_lines_and_pages_become_pixels() {
        assert_eq!(wheel_pixels(3.0, 1, 500.0), Gesture::Wheel { delta_y: 48.0 });
        assert_eq!(wheel_pixels(1.0, 2, 500.0), Gesture::Wheel { delta_y: 500.0 });
        assert_eq!(wheel_pixels(-20.0, 0, 500.0), Gesture::Wheel { delta_y: -20.0 });
    }
}
