//! Stages of a photo's journey, progress reporting and cooperative cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::ReconError;

/// A step of the pipeline, reported to the progress callback and used as the key of timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Reading the bytes, EXIF, orientation and downscaling.
    Decode,
    /// Keypoint detection and description.
    Features,
    /// Descriptor matching and geometric verification against other photos.
    Matching,
    /// Pose estimation (two-view initialisation or PnP).
    Registration,
    /// New 3D points from the registered photos.
    Triangulation,
    /// Bundle adjustment of the new photo's neighbourhood.
    LocalAdjustment,
    /// Global bundle adjustment, re-triangulation and outlier filtering.
    Refinement,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 7] = [
        Stage::Decode,
        Stage::Features,
        Stage::Matching,
        Stage::Registration,
        Stage::Triangulation,
        Stage::LocalAdjustment,
        Stage::Refinement,
    ];

    /// The snake_case name used in JSON outputs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Features => "features",
            Stage::Matching => "matching",
            Stage::Registration => "registration",
            Stage::Triangulation => "triangulation",
            Stage::LocalAdjustment => "local_adjustment",
            Stage::Refinement => "refinement",
        }
    }
}

/// A cancellation flag shared between the caller and a running call. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask running and future calls holding this token to stop at the next stage boundary.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn check(&self) -> Result<(), ReconError> {
        if self.is_cancelled() {
            Err(ReconError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Seconds spent per stage for one call, in pipeline order; stages that did not run are absent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimings(pub Vec<(Stage, f64)>);

impl StageTimings {
    pub(crate) fn add(&mut self, stage: Stage, seconds: f64) {
        if let Some(entry) = self.0.iter_mut().find(|(s, _)| *s == stage) {
            entry.1 += seconds;
        } else {
            self.0.push((stage, seconds));
            self.0.sort_by_key(|(s, _)| *s);
        }
    }

    /// Seconds spent in `stage` (zero when it did not run).
    pub fn get(&self, stage: Stage) -> f64 {
        self.0
            .iter()
            .find(|(s, _)| *s == stage)
            .map_or(0.0, |(_, t)| *t)
    }

    /// Total seconds over all stages.
    pub fn total(&self) -> f64 {
        self.0.iter().map(|(_, t)| t).sum()
    }
}

/// Runs stages in order: reports progress, times each stage and checks cancellation before it.
pub(crate) struct StageRunner<'a> {
    pub progress: &'a mut dyn FnMut(Stage, f32),
    pub cancel: &'a CancelToken,
    pub timings: StageTimings,
}

impl<'a> StageRunner<'a> {
    pub fn new(progress: &'a mut dyn FnMut(Stage, f32), cancel: &'a CancelToken) -> Self {
        Self {
            progress,
            cancel,
            timings: StageTimings::default(),
        }
    }

    /// Run one stage. Cancellation is checked before the stage starts so that a cancelled call
    /// never leaves a half-applied stage behind.
    pub fn run<T>(
        &mut self,
        stage: Stage,
        body: impl FnOnce(&mut dyn FnMut(f32)) -> Result<T, ReconError>,
    ) -> Result<T, ReconError> {
        self.cancel.check()?;
        (self.progress)(stage, 0.0);
        let start = std::time::Instant::now();
        let result = {
            let progress = &mut *self.progress;
            let mut report = |fraction: f32| progress(stage, fraction.clamp(0.0, 1.0));
            body(&mut report)
        };
        self.timings.add(stage, start.elapsed().as_secs_f64());
        (self.progress)(stage, 1.0);
        result
    }
}
