//! What the viewer draws, and the rules for changing it as the room evolves.
//!
//! [`SceneData`] holds the manifest generation on screen, its shards in manifest order (those
//! that have arrived), the registered cameras, the newest photo's highlight and the point size.
//! The page owns it in a signal, folds the room's snapshot and events into it, and a loader
//! fills in shard points as they arrive. Rules:
//!
//! - **Progressive.** A shard of the generation on screen is drawn as soon as it arrives, in
//!   manifest order, whatever order the fetches finish in.
//! - **Never flash empty.** A refinement announces a new generation that replaces the whole list.
//!   The old one stays on screen, with its cameras, until every shard of the new one has
//!   arrived; then both swap at once. Shards are content-addressed, so ones the two generations
//!   share are not fetched again.
//! - **Bounded memory.** Shards that neither the drawn nor the incoming generation lists are
//!   dropped.
//!
//! This is plain data and logic: no fetching, no GPU, no clock (callers pass `now_ms`).

use super::bounds::{Bounds, robust_bounds};
use crate::protocol::{CameraView, Manifest, RoomEvent, RoomSnapshot, ShardRef};
use crate::shard::ShardPoint;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How long the newest photo's points stay highlighted.
pub const HIGHLIGHT_MS: f64 = 2000.0;
pub const MIN_POINT_SIZE: f32 = 1.0;
pub const MAX_POINT_SIZE: f32 = 12.0;
pub const DEFAULT_POINT_SIZE: f32 = 3.0;

/// A generation announced but not yet complete.
#[derive(Clone, Debug, PartialEq)]
struct Incoming {
    generation: u64,
    shards: Vec<ShardRef>,
    /// `None` keeps the cameras on screen (a manifest without camera news).
    cameras: Option<Vec<CameraView>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Highlight {
    shard: String,
    /// When its points first appeared on screen; the fade starts then, not at the event, so a
    /// slow fetch does not eat the highlight.
    since_ms: Option<f64>,
}

/// What became of a shard handed to [`SceneData::insert_shard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Part of the generation on screen: drawn now.
    Drawn,
    /// Part of the incoming generation, which still misses others.
    Staged,
    /// It completed the incoming generation, which is now on screen.
    Swapped,
    /// Already held; nothing changed.
    AlreadyHeld,
    /// Neither generation lists it any more (a fetch that finished after a refinement).
    NotWanted,
}

/// The viewer's model of the room. See the module documentation for its rules.
#[derive(Clone, Debug)]
pub struct SceneData {
    generation: u64,
    /// The drawn generation's manifest, in order, without duplicates.
    shards: Vec<ShardRef>,
    cameras: Vec<CameraView>,
    incoming: Option<Incoming>,
    held: HashMap<String, Arc<Vec<ShardPoint>>>,
    highlight: Option<Highlight>,
    point_size: f32,
    revision: u64,
}

impl Default for SceneData {
    fn default() -> Self {
        Self {
            generation: 0,
            shards: Vec::new(),
            cameras: Vec::new(),
            incoming: None,
            held: HashMap::new(),
            highlight: None,
            point_size: DEFAULT_POINT_SIZE,
            revision: 0,
        }
    }
}

// Held shards are immutable and content-addressed, so comparing hashes compares contents; this
// keeps `PartialEq` cheap enough for signals that compare before notifying.
impl PartialEq for SceneData {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
            && self.point_size == other.point_size
            && self.generation == other.generation
            && self.shards == other.shards
            && self.cameras == other.cameras
            && self.incoming == other.incoming
            && self.highlight == other.highlight
            && self.held.len() == other.held.len()
            && self.held.keys().all(|k| other.held.contains_key(k))
    }
}

fn dedup(shards: &[ShardRef]) -> Vec<ShardRef> {
    let mut seen = HashSet::new();
    shards.iter().filter(|s| seen.insert(s.hash.as_str())).cloned().collect()
}

impl SceneData {
    pub fn new() -> Self {
        Self::default()
    }

    /// The manifest generation on screen.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation waiting for its shards, if a refinement announced one.
    pub fn incoming_generation(&self) -> Option<u64> {
        self.incoming.as_ref().map(|i| i.generation)
    }

    /// Counts every change to what is drawn (not point size), so renderers and bounds can tell
    /// cheaply whether to look again.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The cameras of the generation on screen, in registration order.
    pub fn cameras(&self) -> &[CameraView] {
        &self.cameras
    }

    /// The shards on screen, in manifest order: those of the drawn generation that have arrived.
    pub fn drawn_shards(&self) -> impl Iterator<Item = (&str, &Arc<Vec<ShardPoint>>)> + Clone {
        self.shards.iter().filter_map(|s| self.held.get(&s.hash).map(|points| (s.hash.as_str(), points)))
    }

    /// Points on screen.
    pub fn drawn_points(&self) -> usize {
        self.drawn_shards().map(|(_, p)| p.len()).sum()
    }

    /// (shards held, shards listed) of the generation being loaded: the incoming one if any,
    /// else the one on screen. For a "loading 3 / 7" display.
    pub fn loading_progress(&self) -> (usize, usize) {
        let list = self.incoming.as_ref().map_or(&self.shards, |i| &i.shards);
        (list.iter().filter(|s| self.held.contains_key(&s.hash)).count(), list.len())
    }

    pub fn point_size(&self) -> f32 {
        self.point_size
    }

    /// Sets the point size in CSS pixels, clamped to the slider's range; non-finite is ignored.
    pub fn set_point_size(&mut self, size: f32) {
        if size.is_finite() {
            self.point_size = size.clamp(MIN_POINT_SIZE, MAX_POINT_SIZE);
        }
    }

    /// Shards to fetch, most useful first: while a new generation is incoming only its missing
    /// shards (the old generation's stragglers would be thrown away at the swap), otherwise the
    /// drawn generation's missing shards in manifest order.
    pub fn wanted(&self) -> Vec<ShardRef> {
        let list = self.incoming.as_ref().map_or(&self.shards, |i| &i.shards);
        list.iter().filter(|s| !self.held.contains_key(&s.hash)).cloned().collect()
    }

    /// Whether a shard fetched now would still be used (a loader asks before each retry).
    pub fn is_wanted(&self, hash: &str) -> bool {
        !self.held.contains_key(hash) && self.listed(hash)
    }

    fn listed(&self, hash: &str) -> bool {
        self.shards.iter().any(|s| s.hash == hash)
            || self.incoming.as_ref().is_some_and(|i| i.shards.iter().any(|s| s.hash == hash))
    }

    /// Takes a manifest (and, from a refinement or snapshot, the cameras that go with it).
    ///
    /// The same generation as on screen replaces the list at once (shards appended between
    /// refinements). Another generation is staged as incoming and swapped in when complete, or
    /// at once when nothing of the current one is on screen yet (there is nothing to keep).
    pub fn set_manifest(&mut self, manifest: &Manifest, cameras: Option<Vec<CameraView>>) {
        let shards = dedup(&manifest.shards);
        if manifest.generation == self.generation && self.incoming.is_none() {
            self.shards = shards;
            if let Some(cameras) = cameras {
                self.cameras = cameras;
            }
        } else if self.drawn_shards().next().is_none() && self.incoming.is_none() {
            self.generation = manifest.generation;
            self.shards = shards;
            if let Some(cameras) = cameras {
                self.cameras = cameras;
            }
        } else {
            // A newer announcement replaces an older incoming one: only the latest matters.
            let cameras = cameras.or_else(|| {
                self.incoming.take().filter(|i| i.generation == manifest.generation).and_then(|i| i.cameras)
            });
            self.incoming = Some(Incoming { generation: manifest.generation, shards, cameras });
        }
        self.prune();
        self.swap_if_complete(None);
        self.revision += 1;
    }

    /// A snapshot replaces everything the scene knew about the room (the shard cache excepted).
    pub fn apply_snapshot(&mut self, snapshot: &RoomSnapshot) {
        self.set_manifest(&snapshot.manifest, Some(snapshot.cameras.clone()));
    }

    /// Folds one room event in. Registrations add their camera and shard (to the incoming
    /// generation while one is pending, since the server already appends to it) and move the
    /// highlight; refinements bring a new generation.
    pub fn apply_event(&mut self, event: &RoomEvent, now_ms: f64) {
        match event {
            RoomEvent::PhotoRegistered { photo, camera, shard, .. } => {
                let (list, cameras) = match self.incoming.as_mut() {
                    Some(incoming) => {
                        (&mut incoming.shards, incoming.cameras.get_or_insert_with(|| self.cameras.clone()))
                    }
                    None => (&mut self.shards, &mut self.cameras),
                };
                cameras.retain(|c| c.photo != *photo);
                cameras.push(camera.clone());
                if let Some(shard) = shard {
                    if !list.iter().any(|s| s.hash == shard.hash) {
                        list.push(shard.clone());
                    }
                    let on_screen = self.incoming.is_none() && self.held.contains_key(&shard.hash);
                    self.highlight =
                        Some(Highlight { shard: shard.hash.clone(), since_ms: on_screen.then_some(now_ms) });
                }
                self.swap_if_complete(Some(now_ms));
                self.revision += 1;
            }
            RoomEvent::RefinementDone { manifest, cameras, .. } => {
                self.set_manifest(manifest, Some(cameras.clone()));
            }
            _ => {}
        }
    }

    /// Stores a fetched shard and draws it if its generation allows. `now_ms` starts the
    /// highlight's fade when the highlighted shard first appears.
    pub fn insert_shard(&mut self, hash: &str, points: Arc<Vec<ShardPoint>>, now_ms: f64) -> Inserted {
        if self.held.contains_key(hash) {
            return Inserted::AlreadyHeld;
        }
        if !self.listed(hash) {
            return Inserted::NotWanted;
        }
        self.held.insert(hash.to_owned(), points);
        self.revision += 1;
        if self.swap_if_complete(Some(now_ms)) {
            return Inserted::Swapped;
        }
        if self.shards.iter().any(|s| s.hash == hash) {
            self.start_highlight_if_shown(now_ms);
            Inserted::Drawn
        } else {
            Inserted::Staged
        }
    }

    /// Forgets everything, as for a room that was reset. Unlike a new generation this does
    /// empty the screen, so it is for when the old model is wrong, not merely outdated.
    pub fn clear(&mut self) {
        let point_size = self.point_size;
        let revision = self.revision + 1;
        *self = Self { point_size, revision, ..Self::default() };
    }

    /// How strongly the newest photo's points are highlighted now: 1 when they appear, fading
    /// to 0 over [`HIGHLIGHT_MS`]; `None` when nothing is highlighted.
    pub fn highlight(&self, now_ms: f64) -> Option<(&str, f32)> {
        let h = self.highlight.as_ref()?;
        let since = h.since_ms?;
        let t = ((now_ms - since) / HIGHLIGHT_MS).clamp(0.0, 1.0);
        // Smoothstep: the highlight lingers, then fades without a visible cut at the end.
        let strength = 1.0 - t * t * (3.0 - 2.0 * t);
        (strength > 0.0).then_some((h.shard.as_str(), strength as f32))
    }

    /// Whether frames are needed to animate the highlight's fade.
    pub fn is_animating(&self, now_ms: f64) -> bool {
        self.highlight(now_ms).is_some()
    }

    /// The box to frame: robust bounds of the drawn points, or of the camera centres while no
    /// point has arrived, so the first photos still frame something.
    /// What the default view frames: an even sample of the drawn points (at most `limit`), and
    /// every vertex of every camera's frustum as drawn, so the photographers' cameras are on
    /// screen too.
    pub fn frame_sample(&self, limit: usize) -> (Vec<[f32; 3]>, Vec<[f32; 3]>) {
        let total = self.drawn_points();
        let stride = total.div_ceil(limit.max(1)).max(1);
        let points = self.drawn_shards().flat_map(|(_, p)| p.iter()).step_by(stride).map(|p| p.position).collect();
        let radius = self.fit_bounds().map_or(0.0, |b| f64::from(b.radius()));
        let depth = crate::viewer::frustum::depth_for_model(radius);
        (points, crate::viewer::frustum::frustum_vertices(&self.cameras, depth))
    }

    /// What the default view frames: the points (robustly) and every camera centre, so the
    /// photographers' frustums are never off-screen.
    pub fn frame_bounds(&self) -> Option<Bounds> {
        let points = self.fit_bounds();
        // Room for each frustum around its apex, as drawn (see `frustum`).
        let pad = (crate::viewer::frustum::depth_for_model(points.map_or(0.0, |b| f64::from(b.radius()))) * 1.2) as f32;
        let cameras = Bounds::of_points(self.cameras.iter().map(|c| c.center.map(|v| v as f32)))
            .map(|b| Bounds { min: b.min.map(|v| v - pad), max: b.max.map(|v| v + pad) });
        match (points, cameras) {
            (Some(a), Some(b)) => Some(Bounds {
                min: std::array::from_fn(|i| a.min[i].min(b.min[i])),
                max: std::array::from_fn(|i| a.max[i].max(b.max[i])),
            }),
            (a, b) => a.or(b),
        }
    }

    pub fn fit_bounds(&self) -> Option<Bounds> {
        robust_bounds(self.drawn_shards().map(|(_, p)| p.as_slice())).or_else(|| {
            Bounds::of_points(self.cameras.iter().map(|c| c.center.map(|v| v as f32)))
        })
    }

    fn start_highlight_if_shown(&mut self, now_ms: f64) {
        if let Some(h) = self.highlight.as_mut().filter(|h| h.since_ms.is_none())
            && self.shards.iter().any(|s| s.hash == h.shard)
            && self.held.contains_key(&h.shard)
        {
            h.since_ms = Some(now_ms);
        }
    }

    /// Swaps the incoming generation in once all its shards are held. Returns whether it did.
    fn swap_if_complete(&mut self, now_ms: Option<f64>) -> bool {
        let complete = self.incoming.as_ref().is_some_and(|i| i.shards.iter().all(|s| self.held.contains_key(&s.hash)));
        if !complete {
            return false;
        }
        let Some(incoming) = self.incoming.take() else { return false };
        self.generation = incoming.generation;
        self.shards = incoming.shards;
        if let Some(cameras) = incoming.cameras {
            self.cameras = cameras;
        }
        self.prune();
        if let Some(now_ms) = now_ms {
            self.start_highlight_if_shown(now_ms);
        }
        true
    }

    /// Drops shards no generation lists, and a highlight on a shard that is gone.
    fn prune(&mut self) {
        let listed: HashSet<&str> = self
            .shards
            .iter()
            .chain(self.incoming.iter().flat_map(|i| i.shards.iter()))
            .map(|s| s.hash.as_str())
            .collect();
        self.held.retain(|hash, _| listed.contains(hash.as_str()));
        if self.highlight.as_ref().is_some_and(|h| !listed.contains(h.shard.as_str())) {
            self.highlight = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(hash: &str) -> ShardRef {
        ShardRef { hash: hash.into(), points: 1 }
    }

    fn manifest(generation: u64, hashes: &[&str]) -> Manifest {
        Manifest { generation, shards: hashes.iter().map(|h| shard(h)).collect() }
    }

    fn points(x: f32) -> Arc<Vec<ShardPoint>> {
        Arc::new(vec![ShardPoint { position: [x, 0.0, 0.0], color: [1, 2, 3] }])
    }

    fn camera(photo: &str) -> CameraView {
        CameraView::example(photo, crate::protocol::IDENTITY, [0.0; 3])
    }

    fn drawn(scene: &SceneData) -> Vec<&str> {
        scene.drawn_shards().map(|(h, _)| h).collect()
    }

    fn hashes(refs: Vec<ShardRef>) -> Vec<String> {
        refs.into_iter().map(|s| s.hash).collect()
    }

    #[test]
    fn shards_appear_as_they_arrive_in_manifest_order() {
        let mut scene = SceneData::new();
        scene.set_manifest(&manifest(0, &["a", "b", "c"]), None);
        assert_eq!(hashes(scene.wanted()), ["a", "b", "c"]);
        assert_eq!(scene.insert_shard("b", points(2.0), 0.0), Inserted::Drawn);
        assert_eq!(drawn(&scene), ["b"]);
        assert_eq!(scene.insert_shard("a", points(1.0), 0.0), Inserted::Drawn);
        assert_eq!(drawn(&scene), ["a", "b"]);
        assert_eq!(scene.insert_shard("a", points(1.0), 0.0), Inserted::AlreadyHeld);
        assert_eq!(hashes(scene.wanted()), ["c"]);
        assert_eq!(scene.loading_progress(), (2, 3));
        assert_eq!(scene.insert_shard("zzz", points(0.0), 0.0), Inserted::NotWanted);
        assert_eq!(scene.drawn_points(), 2);
    }

    #[test]
    fn a_refinement_keeps_the_old_model_until_the_new_one_is_complete() {
        let mut scene = SceneData::new();
        scene.apply_snapshot(&RoomSnapshot {
            manifest: manifest(3, &["a", "b", "c"]),
            cameras: vec![camera("p1")],
            ..RoomSnapshot::default()
        });
        assert_eq!(scene.generation(), 3, "nothing was on screen, so the snapshot's generation is adopted at once");
        for h in ["a", "b", "c"] {
            scene.insert_shard(h, points(0.0), 0.0);
        }
        scene.apply_event(
            &RoomEvent::RefinementDone { manifest: manifest(4, &["d", "a", "e"]), cameras: vec![camera("p1"), camera("p2")], seconds: 1.0 },
            0.0,
        );
        assert_eq!(drawn(&scene), ["a", "b", "c"], "old generation stays on screen");
        assert_eq!(scene.cameras().len(), 1, "and its cameras with it");
        assert_eq!((scene.generation(), scene.incoming_generation()), (3, Some(4)));
        assert_eq!(hashes(scene.wanted()), ["d", "e"], "shared shard 'a' is not fetched again");
        assert_eq!(scene.insert_shard("e", points(0.0), 0.0), Inserted::Staged);
        assert_eq!(drawn(&scene), ["a", "b", "c"]);
        assert_eq!(scene.loading_progress(), (2, 3));
        assert_eq!(scene.insert_shard("d", points(0.0), 0.0), Inserted::Swapped);
        assert_eq!(drawn(&scene), ["d", "a", "e"]);
        assert_eq!(scene.cameras().len(), 2);
        assert_eq!((scene.generation(), scene.incoming_generation()), (4, None));
        assert!(!scene.held.contains_key("b") && !scene.held.contains_key("c"), "unlisted shards are dropped");
        // A straggler of the old generation is not taken back.
        assert_eq!(scene.insert_shard("b", points(0.0), 0.0), Inserted::NotWanted);
    }

    #[test]
    fn a_new_generation_made_of_held_shards_swaps_at_once() {
        let mut scene = SceneData::new();
        scene.set_manifest(&manifest(1, &["a", "b"]), None);
        scene.insert_shard("a", points(0.0), 0.0);
        scene.insert_shard("b", points(0.0), 0.0);
        scene.set_manifest(&manifest(2, &["b"]), None);
        assert_eq!((scene.generation(), drawn(&scene)), (2, vec!["b"]));
    }

    #[test]
    fn a_second_refinement_replaces_the_pending_one() {
        let mut scene = SceneData::new();
        scene.set_manifest(&manifest(1, &["a"]), None);
        scene.insert_shard("a", points(0.0), 0.0);
        scene.set_manifest(&manifest(2, &["b"]), None);
        scene.insert_shard("x", points(0.0), 0.0);
        scene.set_manifest(&manifest(3, &["c", "d"]), None);
        assert_eq!(hashes(scene.wanted()), ["c", "d"]);
        assert!(!scene.is_wanted("b"));
        assert_eq!(scene.insert_shard("b", points(0.0), 0.0), Inserted::NotWanted);
        assert_eq!(drawn(&scene), ["a"]);
        scene.insert_shard("c", points(0.0), 0.0);
        scene.insert_shard("d", points(0.0), 0.0);
        assert_eq!((scene.generation(), drawn(&scene)), (3, vec!["c", "d"]));
    }

    #[test]
    fn registrations_append_and_go_to_the_incoming_generation_while_one_is_pending() {
        let mut scene = SceneData::new();
        scene.set_manifest(&manifest(0, &["a"]), Some(vec![camera("p1")]));
        scene.insert_shard("a", points(0.0), 0.0);
        let registered = |p: &str, h: &str| RoomEvent::PhotoRegistered { photo: p.into(), camera: camera(p), shard: Some(shard(h)), model_points: None };
        scene.apply_event(&registered("p2", "b"), 0.0);
        assert_eq!(hashes(scene.wanted()), ["b"]);
        assert_eq!(scene.cameras().len(), 2);
        scene.insert_shard("b", points(0.0), 0.0);
        assert_eq!(drawn(&scene), ["a", "b"]);

        scene.apply_event(&RoomEvent::RefinementDone { manifest: manifest(1, &["c"]), cameras: vec![camera("p1"), camera("p2")], seconds: 0.1 }, 0.0);
        scene.apply_event(&registered("p3", "d"), 0.0);
        assert_eq!(drawn(&scene), ["a", "b"]);
        assert_eq!(scene.cameras().len(), 2, "p3 belongs to the incoming generation");
        assert_eq!(hashes(scene.wanted()), ["c", "d"]);
        scene.insert_shard("c", points(0.0), 0.0);
        scene.insert_shard("d", points(0.0), 0.0);
        assert_eq!(drawn(&scene), ["c", "d"]);
        assert_eq!(scene.cameras().iter().map(|c| c.photo.as_str()).collect::<Vec<_>>(), ["p1", "p2", "p3"]);
        // A registration without a shard (no new points) still adds its camera.
        scene.apply_event(&RoomEvent::PhotoRegistered { photo: "p4".into(), camera: camera("p4"), shard: None, model_points: None }, 0.0);
        assert_eq!(scene.cameras().len(), 4);
    }

    #[test]
    fn the_newest_photo_is_highlighted_from_when_its_points_appear() {
        let mut scene = SceneData::new();
        scene.set_manifest(&manifest(0, &["a"]), None);
        scene.insert_shard("a", points(0.0), 0.0);
        assert_eq!(scene.highlight(0.0), None, "a snapshot's shards are not news");
        scene.apply_event(&RoomEvent::PhotoRegistered { photo: "p".into(), camera: camera("p"), shard: Some(shard("b")), model_points: None }, 1000.0);
        assert_eq!(scene.highlight(1000.0), None, "not on screen yet");
        scene.insert_shard("b", points(0.0), 1500.0);
        assert_eq!(scene.highlight(1500.0), Some(("b", 1.0)));
        let (_, half) = scene.highlight(1500.0 + HIGHLIGHT_MS / 2.0).expect("fading");
        assert!((half - 0.5).abs() < 1e-6);
        assert!(scene.is_animating(2000.0));
        assert_eq!(scene.highlight(1500.0 + HIGHLIGHT_MS), None);
        assert!(!scene.is_animating(1500.0 + HIGHLIGHT_MS));
    }

    #[test]
    fn point_size_is_clamped_and_not_a_data_revision() {
        let mut scene = SceneData::new();
        let revision = scene.revision();
        scene.set_point_size(100.0);
        assert_eq!(scene.point_size(), MAX_POINT_SIZE);
        scene.set_point_size(f32::NAN);
        assert_eq!(scene.point_size(), MAX_POINT_SIZE);
        scene.set_point_size(0.0);
        assert_eq!(scene.point_size(), MIN_POINT_SIZE);
        assert_eq!(scene.revision(), revision);
    }

    #[test]
    fn fit_bounds_fall_back_to_cameras_and_clear_empties() {
        let mut scene = SceneData::new();
        assert_eq!(scene.fit_bounds(), None);
        let mut far = camera("p2");
        far.center = [4.0, 0.0, 0.0];
        scene.set_manifest(&manifest(0, &["a"]), Some(vec![camera("p1"), far]));
        assert_eq!(scene.fit_bounds(), Some(Bounds { min: [0.0; 3], max: [4.0, 0.0, 0.0] }));
        scene.insert_shard("a", points(7.0), 0.0);
        assert_eq!(scene.fit_bounds(), Some(Bounds { min: [7.0, 0.0, 0.0], max: [7.0, 0.0, 0.0] }));
        scene.set_point_size(5.0);
        scene.clear();
        assert_eq!((scene.drawn_points(), scene.cameras().len(), scene.point_size()), (0, 0, 5.0));
    }
}
