//! Output formats and saved state: PLY layout, settings validation, and saved states that are
//! damaged or from another version give typed errors.

use recon::export::{camera_records, ply_bytes, read_ply};
use recon::{Camera, Intrinsics, Point, ReconError, Reconstruction, Settings};

#[test]
fn ply_is_binary_little_endian_xyz_float_rgb_uchar() {
    let points = vec![
        Point {
            position: [1.0, -2.5, 3.25],
            color: [255, 0, 7],
        },
        Point {
            position: [0.0, 0.5, -1.0],
            color: [1, 2, 3],
        },
    ];
    let bytes = ply_bytes(&points);
    let header = "ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n";
    assert!(bytes.starts_with(header.as_bytes()));
    assert_eq!(bytes.len(), header.len() + 2 * 15);
    let first = &bytes[header.len()..header.len() + 15];
    assert_eq!(&first[0..4], &1.0f32.to_le_bytes());
    assert_eq!(&first[12..15], &[255, 0, 7]);
    assert_eq!(read_ply(&bytes).expect("parses"), points);
    assert!(
        read_ply(&bytes[..bytes.len() - 1]).is_err(),
        "a short body is refused"
    );
}

#[test]
fn cameras_json_keeps_the_documented_field_names() {
    let cam = Camera {
        image: "a.jpg".into(),
        intrinsics: Intrinsics {
            fx: 10.0,
            fy: 11.0,
            cx: 5.0,
            cy: 4.0,
        },
        width: 10,
        height: 8,
        rotation: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        center: [1.0, 2.0, 3.0],
    };
    let records = camera_records(&["a.jpg".into(), "b.jpg".into()], &[cam]);
    let json = serde_json::to_value(&records).expect("serialises");
    assert_eq!(json[0]["image"], "a.jpg");
    assert_eq!(json[0]["registered"], true);
    assert_eq!(json[0]["K"][0][0], 10.0);
    assert_eq!(json[0]["R_world_to_camera"][2][2], 1.0);
    assert_eq!(json[0]["center"][2], 3.0);
    assert_eq!(json[1]["registered"], false);
}

#[test]
fn settings_validate_and_round_trip() {
    let settings = Settings::default();
    assert_eq!((settings.refine_every, settings.max_image_side), (10, 1600));
    let json = serde_json::to_string(&settings).expect("serialises");
    assert_eq!(
        serde_json::from_str::<Settings>(&json).expect("parses"),
        settings
    );
    let partial: Settings =
        serde_json::from_str(r#"{"refine_every": 5}"#).expect("missing fields default");
    assert_eq!(partial.refine_every, 5);
    for bad in [
        Settings {
            max_image_side: 0,
            ..Settings::default()
        },
        Settings {
            pixel_threshold: f64::NAN,
            ..Settings::default()
        },
        Settings {
            intrinsics: Some(Intrinsics {
                fx: -1.0,
                fy: 1.0,
                cx: 0.0,
                cy: 0.0,
            }),
            ..Settings::default()
        },
    ] {
        assert!(matches!(
            Reconstruction::new(bad),
            Err(ReconError::InvalidSettings(_))
        ));
    }
}

#[test]
fn damaged_or_foreign_state_is_refused_with_a_typed_error() {
    let recon = Reconstruction::new(Settings {
        refine_every: 3,
        ..Settings::default()
    })
    .expect("valid");
    let bytes = recon.to_bytes().expect("saves");
    let restored = Reconstruction::from_bytes(&bytes).expect("restores");
    assert_eq!(restored.settings().refine_every, 3);
    assert_eq!(restored.to_bytes().expect("saves"), bytes);

    assert!(matches!(
        Reconstruction::from_bytes(b"not a state"),
        Err(ReconError::CorruptState(_))
    ));
    let mut other_version = bytes.clone();
    other_version[8..12].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(
        Reconstruction::from_bytes(&other_version),
        Err(ReconError::StateVersion {
            found: 99,
            expected: recon::persist::STATE_VERSION
        })
    ));
    // Version 1 had no camera groups after the scene; with no views, version 2 adds only the
    // empty list's length byte, so dropping it gives a version 1 state, which still loads.
    let mut v1 = bytes[..bytes.len() - 1].to_vec();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    let old = Reconstruction::from_bytes(&v1).expect("version 1 state loads");
    assert_eq!(old.settings().refine_every, 3);
    assert_eq!(old.to_bytes().expect("saves"), bytes);
    for cut in [0, 5, 11, bytes.len() - 1] {
        assert!(
            Reconstruction::from_bytes(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let missing = std::env::temp_dir().join("recon-no-such-state-file");
    assert!(matches!(
        Reconstruction::load(&missing),
        Err(ReconError::Io { .. })
    ));
}
