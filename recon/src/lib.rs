//! Vestige's reconstruction core (work in progress).
