//! The component detector through the real ONNX Runtime: the tiny layout models of
//! `tests/fixtures/onnx/` (models/tools/make_layout_models.py) decoded into the boxes
//! they encode, in frame pixels, with thresholds and NMS; the errors a user's model can
//! give; the background thread; degraded health.
//!
//! The library comes from `ORT_DYLIB_PATH` (models/fetch-onnxruntime.sh prints it;
//! tests/run-all.sh exports it). Without it these tests fail, on purpose: they are the
//! proof that the runtime works.

mod support;

use chitti_agent::analysis::{Detection, Detector};
use chitti_agent::config::DetectorConfig;
use chitti_agent::detector::{
    camera_detector, BackgroundDetector, DetectorError, DetectorHealth, DetectorSettings,
    DetectorState, LayoutChoice, OnnxDetector, OutputLayout,
};
use chitti_common::geometry::PixelRect;
use chitti_common::image::TemperatureImage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::ort_library;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

fn settings(model: &str) -> DetectorSettings {
    let mut s = DetectorSettings::new(fixture(model));
    s.library = Some(ort_library());
    s
}

/// The 160×120 frame every fixture's boxes are drawn for: a warm ramp.
fn frame() -> TemperatureImage {
    frame_of(160, 120)
}

fn frame_of(w: u32, h: u32) -> TemperatureImage {
    let celsius = (0..w * h).map(|i| 20.0 + (i % w) as f32 * 0.1).collect();
    TemperatureImage::new(w, h, celsius).unwrap()
}

fn rect(x: u32, y: u32, w: u32, h: u32) -> PixelRect {
    PixelRect { x, y, w, h }
}

/// Detections as (class, confidence to 3 decimals, box).
fn summary(found: &[Detection]) -> Vec<(String, f64, PixelRect)> {
    found
        .iter()
        .map(|d| {
            (
                d.class.clone(),
                (d.confidence * 1000.0).round() / 1000.0,
                d.bbox,
            )
        })
        .collect()
}

fn expect(list: &[(&str, f64, PixelRect)]) -> Vec<(String, f64, PixelRect)> {
    list.iter()
        .map(|(c, s, r)| (c.to_string(), *s, *r))
        .collect()
}

#[test]
fn yolov8_boxes_come_back_in_frame_pixels_after_threshold_and_class_wise_nms() {
    let mut d = OnnxDetector::load(&settings("yolov8_1ch.onnx")).unwrap();
    assert_eq!(d.layout().kind, OutputLayout::Yolov8);
    assert_eq!((d.layout().classes, d.layout().rows), (3, 10));
    assert_eq!((d.input_size(), d.channels()), ((320, 256), 1));
    assert_eq!(d.identity().name, "fixture-yolov8");
    assert_eq!(d.identity().version, "1");
    let bytes = std::fs::read(fixture("yolov8_1ch.onnx")).unwrap();
    assert_eq!(
        d.identity().sha256,
        chitti_agent::analysis::sha256_hex(&bytes)
    );
    assert_eq!(d.model().as_ref(), Some(d.identity()));

    let found = d.detect_frame(&frame()).unwrap();
    assert_eq!(
        summary(&found),
        expect(&[
            ("bushing", 0.9, rect(40, 20, 20, 20)),
            // The same box, another class: class-wise NMS keeps it.
            ("clamp", 0.85, rect(40, 20, 20, 20)),
            // Past the frame's corner: clipped to it.
            ("insulator", 0.7, rect(150, 100, 10, 20)),
            ("bushing", 0.6, rect(0, 0, 10, 10)),
            // Not here: a second bushing at IoU 0.68 with the first (NMS 0.45), and an
            // insulator at 0.2 (threshold 0.25).
        ])
    );
}

#[test]
fn confidence_iou_and_max_detections_are_applied() {
    let mut s = settings("yolov8_1ch.onnx");
    s.confidence = 0.65;
    let found = OnnxDetector::load(&s)
        .unwrap()
        .detect_frame(&frame())
        .unwrap();
    assert_eq!(found.len(), 3, "{found:?}");

    let mut s = settings("yolov8_1ch.onnx");
    s.iou = 0.7;
    let found = OnnxDetector::load(&s)
        .unwrap()
        .detect_frame(&frame())
        .unwrap();
    assert!(
        summary(&found).contains(&("bushing".into(), 0.8, rect(42, 22, 20, 20))),
        "IoU 0.68 ≤ 0.7 keeps the second bushing: {found:?}"
    );
    assert_eq!(found.len(), 5);

    let mut s = settings("yolov8_1ch.onnx");
    s.max_detections = 2;
    let found = OnnxDetector::load(&s)
        .unwrap()
        .detect_frame(&frame())
        .unwrap();
    assert_eq!(
        summary(&found),
        expect(&[
            ("bushing", 0.9, rect(40, 20, 20, 20)),
            ("clamp", 0.85, rect(40, 20, 20, 20)),
        ])
    );
}

#[test]
fn a_frame_of_another_aspect_is_letterboxed_and_mapped_back() {
    // 320×120 into 320×256: scale 1, 68 rows of border top and bottom. The model's
    // boxes are fixed in model pixels, so they land elsewhere in this frame: a model
    // point (x, y) is the frame point (x, y - 68).
    let mut d = OnnxDetector::load(&settings("yolov8_1ch.onnx")).unwrap();
    let found = d.detect_frame(&frame_of(320, 120)).unwrap();
    // Bushing A is model (80, 48)-(120, 88): frame (80, 0)-(120, 20) after clipping.
    assert_eq!(found[0].bbox, rect(80, 0, 40, 20), "{found:?}");
}

#[test]
fn classic_yolov5_scores_are_objectness_times_class_on_a_three_channel_input() {
    let mut d = OnnxDetector::load(&settings("yolov5_3ch.onnx")).unwrap();
    assert_eq!(d.layout().kind, OutputLayout::Yolov5);
    assert_eq!(d.channels(), 3);
    let found = d.detect_frame(&frame()).unwrap();
    assert_eq!(
        summary(&found),
        expect(&[
            ("breaker", 0.72, rect(20, 30, 30, 30)),
            ("disconnector", 0.475, rect(80, 30, 30, 30)),
        ])
    );
}

#[test]
fn end2end_rows_are_kept_as_the_model_suppressed_them() {
    let mut d = OnnxDetector::load(&settings("end2end_1ch.onnx")).unwrap();
    assert_eq!(d.layout().kind, OutputLayout::End2end);
    let found = d.detect_frame(&frame()).unwrap();
    assert_eq!(
        summary(&found),
        expect(&[
            ("insulator", 0.88, rect(30, 40, 40, 40)),
            ("insulator", 0.5, rect(31, 41, 40, 40)),
        ])
    );
}

#[test]
fn a_dynamic_input_takes_imgsz_or_the_configured_size() {
    let mut d = OnnxDetector::load(&settings("yolov8_3ch_dynamic.onnx")).unwrap();
    assert_eq!((d.input_size(), d.channels()), ((320, 256), 3), "imgsz");
    let found = d.detect_frame(&frame()).unwrap();
    // The model scores its bushing W / 1000: proof of the width it was fed.
    assert_eq!(
        summary(&found),
        expect(&[
            ("ct", 0.9, rect(100, 50, 40, 40)),
            ("bushing", 0.32, rect(40, 20, 20, 20)),
        ])
    );

    let mut s = settings("yolov8_3ch_dynamic.onnx");
    s.input_size = Some((640, 512));
    let mut d = OnnxDetector::load(&s).unwrap();
    assert_eq!(d.input_size(), (640, 512));
    let found = d.detect_frame(&frame()).unwrap();
    assert_eq!(
        summary(&found),
        expect(&[
            ("ct", 0.9, rect(100, 50, 40, 40)),
            ("bushing", 0.64, rect(40, 20, 20, 20)),
        ])
    );

    s.input_size = Some((300, 256));
    let err = OnnxDetector::load(&s).unwrap_err();
    assert!(
        matches!(err, DetectorError::UnsupportedModel { .. })
            && err
                .to_string()
                .contains("300x256 is not a multiple of the model's stride 32"),
        "{err}"
    );
}

#[test]
fn a_fixed_input_refuses_another_configured_size() {
    let mut s = settings("yolov8_1ch.onnx");
    s.input_size = Some((640, 512));
    let err = OnnxDetector::load(&s).unwrap_err();
    assert!(
        err.to_string()
            .contains("fixed at 320x256; detector.input_size 640x512 cannot be used"),
        "{err}"
    );
    s.input_size = Some((320, 256));
    OnnxDetector::load(&s).unwrap();
}

#[test]
fn an_ambiguous_output_is_refused_until_the_layout_is_configured() {
    let err = OnnxDetector::load(&settings("ambiguous_1ch.onnx")).unwrap_err();
    assert!(
        matches!(err, DetectorError::AmbiguousLayout { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "model output shape [1, 4, 6] is ambiguous: it fits yolov5 or end2end; the model has \
         no end2end metadata key, so set detector.layout"
    );
    let mut s = settings("ambiguous_1ch.onnx");
    s.layout = LayoutChoice::Yolov5;
    let d = OnnxDetector::load(&s).unwrap();
    assert_eq!(d.layout().kind, OutputLayout::Yolov5);
}

#[test]
fn an_unknown_output_layout_is_an_error_naming_the_shape() {
    let err = OnnxDetector::load(&settings("unknown_layout_1ch.onnx")).unwrap_err();
    assert!(matches!(err, DetectorError::UnknownLayout { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "model output shape [1, 10, 10] is not a known layout (expected with 3 class names: yolov8 [1, 7, N]"
        ),
        "{err}"
    );
}

#[test]
fn a_corrupt_or_missing_model_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a protobuf \x00\x01\x02 model").unwrap();
    let mut s = settings("yolov8_1ch.onnx");
    s.model = corrupt.clone();
    let err = OnnxDetector::load(&s).unwrap_err();
    assert!(matches!(err, DetectorError::ModelRejected { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "onnx runtime rejected the model {}: ",
            corrupt.display()
        )),
        "{err}"
    );

    // Half a real model.
    let bytes = std::fs::read(fixture("yolov8_1ch.onnx")).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let err = OnnxDetector::load(&s).unwrap_err();
    assert!(matches!(err, DetectorError::ModelRejected { .. }), "{err}");

    s.model = dir.path().join("absent.onnx");
    let err = OnnxDetector::load(&s).unwrap_err();
    assert!(
        matches!(err, DetectorError::ModelUnreadable { .. })
            && err.to_string().contains("absent.onnx is unreadable"),
        "{err}"
    );
}

#[test]
fn a_second_library_file_in_the_same_process_is_refused() {
    OnnxDetector::load(&settings("yolov8_1ch.onnx")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("libonnxruntime.so.1.99.0");
    std::fs::write(&other, b"another library").unwrap();
    let mut s = settings("yolov8_1ch.onnx");
    s.library = Some(other.clone());
    let err = OnnxDetector::load(&s).unwrap_err();
    assert!(
        matches!(err, DetectorError::LibraryConflict { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&other.display().to_string()),
        "{err}"
    );
}

/// Polls `f` until it gives `Some`, failing after [`HANG_GUARD`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_background_detector_answers_at_once_with_the_latest_completed_detections() {
    let health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let d = OnnxDetector::load(&settings("yolov8_1ch.onnx"))
        .unwrap()
        .with_health(Arc::clone(&health));
    let identity = d.identity().clone();
    let mut bg = BackgroundDetector::spawn(d, 50.0, "test").unwrap();
    assert_eq!(bg.model(), Some(identity));
    let image = frame();
    let found = poll("the first detections", || {
        let found = bg.detect(&image);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(found.len(), 4, "{found:?}");
    assert_eq!(found[0].bbox, rect(40, 20, 20, 20));
    assert!(health.runs() >= 1);
    // Detections of a 160×120 frame are not handed out for a frame of another size.
    assert!(bg.latest((320, 240)).is_empty());

    // Many frames in quick succession: the caller never waits, the mailbox keeps one.
    let first = bg.completed_at().unwrap();
    for _ in 0..50 {
        bg.submit(&image);
    }
    poll("a later detection", || {
        (bg.completed_at().unwrap() > first).then_some(())
    });
    assert_eq!(bg.latest((160, 120)).len(), 4);
    assert!(!bg.has_stopped());
    drop(bg); // joins the thread
}

#[test]
fn camera_detector_reports_ok_or_degraded_and_never_fails_the_camera() {
    // A simulated camera streams: the detector runs in the background.
    let stills = false;
    let mut config = DetectorConfig {
        enabled: true,
        model: Some(fixture("yolov8_1ch.onnx")),
        library: Some(ort_library()),
        ..DetectorConfig::default()
    };
    let health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let mut d = camera_detector(&config, "cam-1", stills, &health, None);
    assert_eq!(health.label(), "ok (fixture-yolov8 1)");
    assert!(d.model().is_some());
    let found = poll("detections", || {
        let f = d.detect(&frame());
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(found.len(), 4);

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("model.onnx");
    std::fs::write(&corrupt, b"garbage").unwrap();
    config.model = Some(corrupt.clone());
    let health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let mut d = camera_detector(&config, "cam-1", stills, &health, None);
    assert!(d.model().is_none());
    assert!(d.detect(&frame()).is_empty());
    assert!(health.is_degraded());
    assert!(
        health.label().starts_with(&format!(
            "degraded (onnx runtime rejected the model {}",
            corrupt.display()
        )),
        "{}",
        health.label()
    );

    config.enabled = false;
    let health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let d = camera_detector(&config, "cam-1", stills, &health, None);
    assert!(d.model().is_none());
    assert_eq!(health.label(), "disabled");
}

#[test]
fn inference_errors_on_live_frames_degrade_after_three_in_a_row() {
    // Loads (one output row on the blank input), then answers real frames with a
    // different shape: an error on every frame.
    let health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let mut d = OnnxDetector::load(&settings("shape_shifting_1ch.onnx"))
        .unwrap()
        .with_health(Arc::clone(&health));
    let err = d.detect_frame(&frame()).unwrap_err();
    assert!(
        matches!(err, DetectorError::Inference(_)) && err.to_string().contains("differs from"),
        "{err}"
    );
    health.set_running(d.identity().clone());
    for _ in 0..2 {
        assert!(d.detect(&frame()).is_empty());
        assert!(!health.is_degraded(), "one bad frame is not a broken model");
    }
    assert!(d.detect(&frame()).is_empty());
    assert!(d.has_failed());
    assert!(d.model().is_none());
    assert!(
        health
            .label()
            .starts_with("degraded (inference failed: output shape [1, 7, ")
            && health.label().ends_with("(3 frames in a row))"),
        "{}",
        health.label()
    );
    assert_eq!(health.errors(), 3);

    // On its thread: the thread stops and the detector reports nothing more.
    let health = Arc::new(DetectorHealth::new(DetectorState::Disabled));
    let d = OnnxDetector::load(&settings("shape_shifting_1ch.onnx"))
        .unwrap()
        .with_health(Arc::clone(&health));
    let mut bg = BackgroundDetector::spawn(d, 1000.0, "test").unwrap();
    let image = frame();
    poll("the detector thread to stop", || {
        bg.submit(&image);
        bg.has_stopped().then_some(())
    });
    assert!(health.is_degraded());
    assert!(bg.detect(&image).is_empty());
    assert!(bg.model().is_none());
}
