//! The online, incremental reconstruction: one photo at a time, with pending retries and
//! periodic global refinement.

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::{debug, info, info_span};

use crate::bundle::{Adjustment, adjust};
use crate::decode::decode_photo;
use crate::error::ReconError;
use crate::estimators::verify_pair;
use crate::feature::extract;
use crate::intrinsics;
use crate::matching::{MatchIndex, match_pair, overlap_score};
use crate::model::{AddOutcome, Camera, Model, PhotoStatus, Point, RegisteredPhoto, Unregistered};
use crate::progress::{CancelToken, Stage, StageRunner, StageTimings};
use crate::register::{try_initialize, try_register, verify_pose};
use crate::scene::{Pair, PointId, Scene, View, ViewIdx};
use crate::settings::Settings;
use crate::triangulate::{Triangulator, complete_and_merge, filter_points, triangulate_view};

/// Longest accepted photo id, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Views (besides the new one) whose poses move in local adjustment.
const LOCAL_NEIGHBOURS: usize = 5;
/// Descriptors sampled per photo to rank candidates before full matching.
const OVERLAP_SAMPLE: usize = 600;
/// Smallest widest-ray angle a point must keep through refinement.
const MIN_POINT_ANGLE_DEG: f64 = 0.75;

/// One room's reconstruction. Not internally synchronised: the server holds it behind a Mutex.
#[derive(Debug)]
pub struct Reconstruction {
    pub(crate) settings: Settings,
    pub(crate) scene: Scene,
    /// Photos added since creation, which schedules the automatic refinement.
    pub(crate) photos_added: u64,
    /// Search indices per view; a cache rebuilt on demand, never saved.
    indices: Vec<Option<Arc<MatchIndex>>>,
}

impl Reconstruction {
    /// An empty reconstruction.
    pub fn new(settings: Settings) -> Result<Self, ReconError> {
        settings.validate()?;
        Ok(Self {
            settings,
            scene: Scene::default(),
            photos_added: 0,
            indices: Vec::new(),
        })
    }

    pub(crate) fn from_parts(
        settings: Settings,
        scene: Scene,
        photos_added: u64,
    ) -> Result<Self, ReconError> {
        settings.validate()?;
        let indices = vec![None; scene.views.len()];
        Ok(Self {
            settings,
            scene,
            photos_added,
            indices,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Replaces the settings for the photos added from now on; photos already in the model keep
    /// the processing they had. Refused (and nothing changed) when a value is out of bounds.
    pub fn set_settings(&mut self, settings: Settings) -> Result<(), ReconError> {
        settings.validate()?;
        self.settings = settings;
        Ok(())
    }

    /// Ids of all photos in the order they were added.
    pub fn photo_ids(&self) -> Vec<String> {
        self.scene.views.iter().map(|v| v.id.clone()).collect()
    }

    /// The internal scene (views, tracks, pairs), for exports and diagnostics.
    pub fn scene(&self) -> &Scene {
        &self.scene
    }

    fn index_of(&mut self, v: ViewIdx) -> Option<Arc<MatchIndex>> {
        if self.indices.len() < self.scene.views.len() {
            self.indices.resize(self.scene.views.len(), None);
        }
        let slot = self.indices.get_mut(v as usize)?;
        if slot.is_none() {
            let view = self.scene.views.get(v as usize)?;
            *slot = MatchIndex::build(&view.features).map(Arc::new);
        }
        slot.clone()
    }

    /// Add one photo. On error (bad input or cancellation) the model is unchanged.
    pub fn add_photo(
        &mut self,
        id: &str,
        bytes: &[u8],
        progress: &mut dyn FnMut(Stage, f32),
        cancel: &CancelToken,
    ) -> Result<AddOutcome, ReconError> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(ReconError::InvalidId(format!(
                "length must be 1..={MAX_ID_LEN} bytes"
            )));
        }
        if self.scene.find(id).is_some() {
            return Err(ReconError::DuplicateId(id.to_string()));
        }
        let span = info_span!("photo", photo_id = id);
        let _enter = span.enter();
        let mut runner = StageRunner::new(progress, cancel);
        let settings = self.settings.clone();
        let decoded = runner.run(Stage::Decode, |_| {
            decode_photo(bytes, settings.max_image_side, settings.max_input_pixels)
        })?;
        let features = runner.run(Stage::Features, |_| {
            extract(&decoded.rgb, settings.max_features as usize)
        })?;
        let (k, source) = intrinsics::resolve(settings.intrinsics.as_ref(), &decoded);
        let camera = intrinsics::camera_key(source, &decoded);
        debug!(keypoints = features.len(), ?source, "features extracted");
        let new_index = MatchIndex::build(&features).map(Arc::new);
        let mut work = self.scene.clone();
        let v = work.views.len() as ViewIdx;
        let point_count = features.len();
        work.views.push(View {
            id: id.to_string(),
            features: Arc::new(features),
            width: decoded.rgb.width(),
            height: decoded.rgb.height(),
            original_width: decoded.original_width,
            original_height: decoded.original_height,
            scale: decoded.scale,
            intrinsics: k,
            intrinsics_source: source,
            pose: None,
            point_of: vec![crate::scene::NO_POINT; point_count],
            last_failure: None,
            camera,
            radial: 0.0,
        });
        drop(decoded);

        let candidates = self.match_candidates(&work, v, new_index.as_deref());
        let mut others = Vec::with_capacity(candidates.len());
        for u in candidates {
            if let Some(index) = self.index_of(u) {
                others.push((u, index));
            }
        }
        runner.run(Stage::Matching, |report| {
            let Some(index_v) = new_index.as_deref() else {
                return Ok(());
            };
            let total = others.len().max(1) as f32;
            for (done, (u, index_u)) in others.iter().enumerate() {
                connect(&mut work, v, index_v, *u, index_u, settings.pixel_threshold);
                report((done + 1) as f32 / total);
            }
            Ok(())
        })?;

        let mut created: Vec<(ViewIdx, std::ops::Range<PointId>)> = Vec::new();
        // The new photo first, then the pending ones in the order they came.
        let mut pending_order: Vec<ViewIdx> = vec![v];
        pending_order
            .extend((0..v).filter(|&u| work.view(u).is_some_and(|view| !view.is_registered())));
        self.register_pending(&mut work, &pending_order, &mut runner, &mut created)?;

        let mut model = None;
        let due = settings.refine_every > 0
            && (self.photos_added + 1).is_multiple_of(u64::from(settings.refine_every));
        let mut removed: Vec<ViewIdx> = Vec::new();
        if due && work.registered_count() >= 2 {
            runner.run(Stage::Refinement, |report| {
                removed.extend(refine_scene(&mut work, settings.pixel_threshold, report));
                Ok(())
            })?;
            // Refined poses and longer tracks can give pending photos the matches they lacked.
            let before = created.len();
            let retry: Vec<ViewIdx> = (0..work.views.len() as ViewIdx)
                .filter(|&u| work.view(u).is_some_and(|view| !view.is_registered()))
                .collect();
            self.register_pending(&mut work, &retry, &mut runner, &mut created)?;
            if created.len() > before {
                runner.run(Stage::Refinement, |report| {
                    removed.extend(refine_scene(&mut work, settings.pixel_threshold, report));
                    Ok(())
                })?;
            }
            model = Some(model_of(&work));
        }

        // Commit: nothing above touched `self.scene`.
        self.scene = work;
        self.photos_added += 1;
        if self.indices.len() < v as usize {
            self.indices.resize(v as usize, None);
        }
        self.indices.truncate(v as usize);
        self.indices.push(new_index);

        let mut also_registered = Vec::new();
        let mut status = None;
        for (w, pts) in &created {
            let Some(camera) = self.scene.view(*w).and_then(camera_of) else {
                continue;
            };
            let new_points = self
                .scene
                .points
                .range(pts.clone())
                .map(|(_, p)| point_of(p))
                .collect();
            let photo = RegisteredPhoto { camera, new_points };
            if *w == v {
                status = Some(PhotoStatus::Registered(photo));
            } else {
                also_registered.push(photo);
            }
        }
        let status = status.unwrap_or_else(|| PhotoStatus::NotRegistered {
            reason: self
                .scene
                .view(v)
                .and_then(|view| view.last_failure.clone())
                .unwrap_or_else(|| "not registered".to_string()),
        });
        match &status {
            PhotoStatus::Registered(p) => info!(new_points = p.new_points.len(), "registered"),
            PhotoStatus::NotRegistered { reason } => info!(%reason, "not registered"),
        }
        // Only photos reported registered before this call and pending now: one registered
        // and removed within the call was never announced.
        let mut unregistered: Vec<Unregistered> = Vec::new();
        for u in removed {
            let Some(view) = self.scene.view(u) else {
                continue;
            };
            let fresh = created.iter().any(|(w, _)| *w == u);
            if view.is_registered() || fresh || unregistered.iter().any(|x| x.id == view.id) {
                continue;
            }
            unregistered.push(Unregistered {
                id: view.id.clone(),
                reason: view.last_failure.clone().unwrap_or_default(),
            });
        }
        Ok(AddOutcome {
            id: id.to_string(),
            status,
            also_registered,
            unregistered,
            model,
            timings: runner.timings,
        })
    }

    /// Try to register each of `order` that is still pending, again and again until a full pass
    /// adds nobody: each success can connect others. Every newly registered view gets its
    /// points and a local adjustment, and is appended to `created` with the point ids it made.
    fn register_pending(
        &self,
        work: &mut Scene,
        order: &[ViewIdx],
        runner: &mut StageRunner<'_>,
        created: &mut Vec<(ViewIdx, std::ops::Range<PointId>)>,
    ) -> Result<(), ReconError> {
        let threshold = self.settings.pixel_threshold;
        let mut start_failed = false;
        loop {
            let mut progressed = false;
            for &u in order {
                if work.view(u).is_none_or(|view| view.is_registered()) {
                    continue;
                }
                let retry_id = work.view(u).map(|view| view.id.clone()).unwrap_or_default();
                let retry_span = info_span!("register", photo_id = %retry_id);
                let _retry = retry_span.enter();
                let before = work.next_point;
                let newly = runner.run(Stage::Registration, |_| {
                    Ok(self.register_one(work, u, &mut start_failed))
                })?;
                let from_start = newly.len() == 2;
                for (i, w) in newly.into_iter().enumerate() {
                    // The initial pair's points are created during registration; credit them to
                    // the first view of the pair.
                    let start = if i == 0 { before } else { work.next_point };
                    runner.run(Stage::Triangulation, |_| {
                        let tri = Triangulator::new(work, 2.0 * threshold);
                        triangulate_view(work, w, &tri);
                        Ok(())
                    })?;
                    runner.run(Stage::LocalAdjustment, |_| {
                        local_adjustment(work, w, threshold);
                        Ok(())
                    })?;
                    // The starting pair defines the model, so only later photos are checked.
                    if !from_start
                        && let Err(why) = verify_pose(work, w, threshold, 2.0 * threshold)
                    {
                        debug!(%why, "registration undone");
                        work.unregister(w, format!("pose rejected: {why}"));
                        continue;
                    }
                    created.push((w, start..work.next_point));
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Which existing views the new view `v` is fully matched against: all of them while few,
    /// else the best by a cheap sampled overlap score.
    fn match_candidates(
        &mut self,
        work: &Scene,
        v: ViewIdx,
        index_v: Option<&MatchIndex>,
    ) -> Vec<ViewIdx> {
        let all: Vec<ViewIdx> = (0..v).collect();
        let limit = self.settings.max_match_candidates as usize;
        if all.len() <= limit || index_v.is_none() {
            return all;
        }
        let Some(features_v) = work.view(v).map(|view| view.features.clone()) else {
            return all;
        };
        let mut scored: Vec<(usize, ViewIdx)> = Vec::with_capacity(all.len());
        for u in all {
            let score = self.index_of(u).map_or(0, |index_u| {
                overlap_score(&features_v, &index_u, OVERLAP_SAMPLE)
            });
            scored.push((score, u));
        }
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut chosen: Vec<ViewIdx> = scored.into_iter().take(limit).map(|(_, u)| u).collect();
        chosen.sort_unstable();
        chosen
    }

    /// Try to give `u` a pose; the first two views come together from the initial pair.
    /// `start_failed` remembers, within one call, that no pair could start the model: the
    /// answer is the same for every pending photo until something registers.
    fn register_one(&self, work: &mut Scene, u: ViewIdx, start_failed: &mut bool) -> Vec<ViewIdx> {
        let threshold = self.settings.pixel_threshold;
        if work.registered_count() == 0 {
            if !*start_failed {
                if let Some((a, b)) = try_initialize(work, 2.0 * threshold, threshold) {
                    return vec![a, b];
                }
                *start_failed = true;
            }
            let reason = if work.pairs.is_empty() {
                "waiting for an overlapping photo to start the model"
            } else {
                "no photo pair with enough parallax to start the model yet"
            };
            if let Some(view) = work.views.get_mut(u as usize) {
                view.last_failure = Some(reason.to_string());
            }
            return Vec::new();
        }
        match try_register(work, u, threshold) {
            Ok(_) => vec![u],
            Err(reason) => {
                if let Some(view) = work.views.get_mut(u as usize) {
                    view.last_failure = Some(reason);
                }
                Vec::new()
            }
        }
    }

    /// Global refinement: complete and merge tracks, triangulate what is left, adjust everything,
    /// drop outliers and adjust again. Returns the whole model.
    pub fn refine(
        &mut self,
        progress: &mut dyn FnMut(Stage, f32),
        cancel: &CancelToken,
    ) -> Result<Model, ReconError> {
        let mut runner = StageRunner::new(progress, cancel);
        let mut work = self.scene.clone();
        let threshold = self.settings.pixel_threshold;
        // Cameras removed here show up in the model's `pending`, with the reason in
        // `pending_reason`.
        runner.run(Stage::Refinement, |report| {
            refine_scene(&mut work, threshold, report);
            Ok(())
        })?;
        // Refined poses can unlock pending photos; those that register are refined with the rest.
        let pending: Vec<ViewIdx> = (0..work.views.len() as ViewIdx)
            .filter(|&u| work.view(u).is_some_and(|view| !view.is_registered()))
            .collect();
        let mut created = Vec::new();
        self.register_pending(&mut work, &pending, &mut runner, &mut created)?;
        if !created.is_empty() {
            runner.run(Stage::Refinement, |report| {
                refine_scene(&mut work, threshold, report);
                Ok(())
            })?;
        }
        self.scene = work;
        Ok(self.model())
    }

    /// Cameras and points, in deterministic order.
    pub fn model(&self) -> Model {
        model_of(&self.scene)
    }

    /// Forget a pending photo. Registered photos cannot be removed.
    pub fn remove_photo(&mut self, id: &str) -> Result<(), ReconError> {
        let v = self
            .scene
            .find(id)
            .ok_or_else(|| ReconError::UnknownId(id.to_string()))?;
        if self.scene.view(v).is_some_and(|view| view.is_registered()) {
            return Err(ReconError::AlreadyRegistered(id.to_string()));
        }
        let old = std::mem::take(&mut self.scene.pairs);
        // Later views shift down by one, so pair keys are renumbered.
        let shift = |x: ViewIdx| if x > v { x - 1 } else { x };
        self.scene.pairs = old
            .into_iter()
            .filter(|((a, b), _)| *a != v && *b != v)
            .map(|((a, b), p)| ((shift(a), shift(b)), p))
            .collect();
        for point in self.scene.points.values_mut() {
            for obs in &mut point.observations {
                obs.0 = shift(obs.0);
            }
        }
        self.scene.views.remove(v as usize);
        if (v as usize) < self.indices.len() {
            self.indices.remove(v as usize);
        }
        Ok(())
    }

    /// Why a pending photo has no pose (the last registration attempt's reason, or why its
    /// camera was removed); `None` when registered or unknown.
    pub fn pending_reason(&self, id: &str) -> Option<String> {
        let view = self.scene.find(id).and_then(|v| self.scene.view(v))?;
        if view.is_registered() {
            return None;
        }
        Some(
            view.last_failure
                .clone()
                .unwrap_or_else(|| "not registered".to_string()),
        )
    }

    /// Status of a photo: `Some(true)` registered, `Some(false)` pending, `None` unknown.
    pub fn is_registered(&self, id: &str) -> Option<bool> {
        self.scene
            .find(id)
            .and_then(|v| self.scene.view(v))
            .map(|view| view.is_registered())
    }
}

/// Match and verify view `v` against `u`, recording the pair when it holds.
fn connect(
    work: &mut Scene,
    v: ViewIdx,
    index_v: &MatchIndex,
    u: ViewIdx,
    index_u: &MatchIndex,
    threshold: f64,
) {
    let (Some(view_v), Some(view_u)) = (work.view(v), work.view(u)) else {
        return;
    };
    let raw = match_pair(&view_u.features, index_u, &view_v.features, index_v);
    let Some(geometry) = verify_pair(
        &view_u.features,
        &view_u.intrinsics,
        &view_v.features,
        &view_v.intrinsics,
        &raw,
        threshold,
    ) else {
        return;
    };
    debug!(other = %view_u.id, raw = raw.len(), verified = geometry.inliers.len(), "pair verified");
    // `u < v` always holds here: the new view is the last one.
    work.pairs.insert(
        (u, v),
        Pair {
            matches: geometry.inliers,
            relative: geometry.relative,
        },
    );
}

fn local_adjustment(work: &mut Scene, v: ViewIdx, threshold: f64) {
    let mut free: BTreeSet<ViewIdx> = BTreeSet::from([v]);
    free.extend(
        work.neighbours(v)
            .into_iter()
            .filter(|&(u, _)| work.view(u).is_some_and(|view| view.is_registered()))
            .take(LOCAL_NEIGHBOURS)
            .map(|(u, _)| u),
    );
    let points = work.points_seen_by(&free);
    adjust(
        work,
        &Adjustment {
            free_views: &free,
            points: &points,
            refine_focal: false,
            loss_scale: threshold,
            max_iterations: 20,
        },
    );
    filter_points(work, Some(&points), 2.0 * threshold, 0.0);
}

/// Returns the views whose poses failed verification after the adjustment; they are pending
/// again, with the reason in their `last_failure`.
pub(crate) fn refine_scene(
    work: &mut Scene,
    threshold: f64,
    report: &mut dyn FnMut(f32),
) -> Vec<ViewIdx> {
    let registered: Vec<ViewIdx> = (0..work.views.len() as ViewIdx)
        .filter(|&v| work.view(v).is_some_and(|view| view.is_registered()))
        .collect();
    let free: BTreeSet<ViewIdx> = registered.iter().copied().collect();
    // Two rounds: tracks grown and merged with the poses of the previous adjustment, a global
    // adjustment, then the outlier filter. The second round sees poses good enough to link
    // matches the first rejected.
    for round in 0..2 {
        let tri = Triangulator::new(work, 2.0 * threshold);
        for &v in &registered {
            triangulate_view(work, v, &tri);
        }
        complete_and_merge(work, &tri);
        let points: BTreeSet<PointId> = work.points.keys().copied().collect();
        let job = Adjustment {
            free_views: &free,
            points: &points,
            refine_focal: true,
            loss_scale: threshold,
            // The second round starts near its optimum; a short polish keeps refinement of a
            // 30-photo room within the per-photo latency budget.
            max_iterations: if round == 0 { 30 } else { 10 },
        };
        adjust(work, &job);
        filter_points(work, None, 2.0 * threshold, MIN_POINT_ANGLE_DEG);
        report(0.5 * (round + 1) as f32);
    }
    // A camera the whole model cannot reconcile is taken out rather than reported with a pose
    // nobody should trust; the starting pair alone has nothing to be checked against.
    let mut removed = Vec::new();
    if registered.len() > 2 {
        for &v in &registered {
            if let Err(why) = verify_pose(work, v, threshold, 2.0 * threshold) {
                debug!(view = v, %why, "camera removed after refinement");
                work.unregister(v, format!("removed after refinement: {why}"));
                removed.push(v);
            }
        }
    }
    removed
}

pub(crate) fn camera_of(view: &View) -> Option<Camera> {
    let pose = view.pose?;
    Some(Camera {
        image: view.id.clone(),
        intrinsics: view.intrinsics.scaled(1.0 / view.scale),
        width: view.original_width,
        height: view.original_height,
        rotation: pose.rotation_rows(),
        center: [pose.center.x, pose.center.y, pose.center.z],
    })
}

pub(crate) fn point_of(p: &crate::scene::Point) -> Point {
    Point {
        position: [
            p.position.x as f32,
            p.position.y as f32,
            p.position.z as f32,
        ],
        color: p.color,
    }
}

pub(crate) fn model_of(scene: &Scene) -> Model {
    Model {
        cameras: scene.views.iter().filter_map(camera_of).collect(),
        points: scene.points.values().map(point_of).collect(),
        pending: scene
            .views
            .iter()
            .filter(|v| !v.is_registered())
            .map(|v| v.id.clone())
            .collect(),
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Reconstruction>();
    is_send::<StageTimings>();
}
