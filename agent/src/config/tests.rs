use super::*;

fn parse(text: &str) -> Result<AgentConfig, ConfigErrors> {
    AgentConfig::from_toml(text, "test.toml", Path::new("/etc/chitti-agent"))
}

#[test]
fn the_default_configuration_is_valid_and_matches_the_serde_defaults() {
    let config = parse(DEFAULT_CONFIG_TOML).unwrap();
    assert_eq!(config.version, CONFIG_VERSION);
    assert_eq!(config.analysis, AnalysisConfig::default());
    assert_eq!(config.outbox, OutboxConfig::default());
    assert_eq!(config.mqtt, MqttConfig::default());
    assert_eq!(config.health, HealthConfig::default());
    assert_eq!(config.detector, DetectorConfig::default());
    assert_eq!(config.cameras.len(), 1);
}

#[test]
fn the_detector_section_is_strict_and_every_problem_is_reported() {
    let base = "version = 1\n[identity]\nsite = \"s\"\ngateway = \"g\"\n[[camera]]\nid = \"c\"\n[camera.source]\nkind = \"simulated\"\n";
    let text = format!(
        "{base}[detector]\nenabled = true\nrate_hz = 0\nconfidence = 1.5\niou = 0\nmax_detections = 0\nintra_threads = 0\ninput_size = [16, 256]\n"
    );
    let err = parse(&text).unwrap_err();
    let paths = err.paths();
    for key in [
        "detector.model",
        "detector.rate_hz",
        "detector.confidence",
        "detector.iou",
        "detector.max_detections",
        "detector.intra_threads",
        "detector.input_size",
    ] {
        assert!(paths.contains(&key), "{key} missing from {err}");
    }
    let err = parse(&format!("{base}[detector]\nthreshold = 0.5\n")).unwrap_err();
    assert!(err.to_string().contains("threshold"), "{err}");
    let err = parse(&format!("{base}[detector]\nlayout = \"yolov9\"\n")).unwrap_err();
    assert!(err.to_string().contains("yolov9"), "{err}");

    let config = parse(&format!(
        "{base}[detector]\nenabled = true\nmodel = \"models/m.onnx\"\nlibrary = \"/opt/ort/libonnxruntime.so.1.32.0\"\nlayout = \"end2end\"\ninput_size = [640, 512]\n"
    ))
    .unwrap();
    assert_eq!(
        config.detector.model.as_deref(),
        Some(Path::new("/etc/chitti-agent/models/m.onnx")),
        "relative to the configuration file"
    );
    assert_eq!(
        config.detector.layout,
        crate::detector::LayoutChoice::End2end
    );
    assert_eq!(config.detector.input_size, Some([640, 512]));
    assert_eq!(config.detector.rate_hz, 2.0);
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let text = r#"
version = 2
colour = "blue"
[identity]
site = "North Yard"
gateway = "gw-1"
[[camera]]
id = "cam-1"
[camera.source]
kind = "simulated"
fps = 0
[[camera]]
id = "cam-1"
table = "no-such-table"
[camera.source]
kind = "webcam"
[outbox]
max_bytes = "lots"
[mqtt]
url = "http://broker"
keep_alive_s = 0
pasword = "x"
[analysis.tracking]
raise_after_frames = 0
"#;
    let err = parse(text).unwrap_err();
    let paths = err.paths();
    for expected in ["colour", "camera[1].source", "outbox.max_bytes", "mqtt"] {
        assert!(
            paths.iter().any(|p| p.starts_with(expected)),
            "{expected} missing in {paths:?}\n{err}"
        );
    }
    let text_ok_sections = r#"
version = 2
[identity]
site = "North Yard"
gateway = "gw-1"
[[camera]]
id = "cam-1"
[camera.source]
kind = "simulated"
fps = 0
[[camera]]
id = "cam-1"
table = "no-such-table"
[camera.source]
kind = "simulated"
[mqtt]
url = "http://broker"
keep_alive_s = 0
[analysis.tracking]
raise_after_frames = 0
"#;
    let err = parse(text_ok_sections).unwrap_err();
    let message = err.to_string();
    for expected in [
        "version: unsupported version 2",
        "identity.site: site id \"North Yard\" is invalid",
        "camera[0].source.fps: must be > 0",
        "camera[1].id: duplicate camera id",
        "camera[1].table: unknown severity table \"no-such-table\"",
        "mqtt.url: \"http://broker\" must start with mqtt:// or mqtts://",
        "mqtt.keep_alive_s: must be at least 1",
        "analysis.tracking.raise_after_frames: must be at least 1",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing in\n{message}"
        );
    }
    assert_eq!(err.errors.len(), 8, "{message}");
}

#[test]
fn failover_urls_are_checked_each_and_against_the_scheme_of_url() {
    let text = r#"
version = 1
[identity]
site = "north"
gateway = "gw-1"
[[camera]]
id = "cam-1"
[camera.source]
kind = "simulated"
[mqtt]
url = "mqtts://node-1.example.net"
failover_urls = ["mqtts://node-2.example.net:8883", "mqtt://node-3.example.net", "mqtts://node-4:x"]
"#;
    let message = parse(text).unwrap_err().to_string();
    for expected in [
        "mqtt.failover_urls[1]: uses another scheme than mqtt.url",
        "mqtt.failover_urls[2]: \"mqtts://node-4:x\": port \"x\" is not a number",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing in\n{message}"
        );
    }
    assert!(!message.contains("failover_urls[0]"), "{message}");
}

#[test]
fn the_components_scene_needs_a_frame_the_generator_draws() {
    let text = |w: u32, h: u32| {
        format!(
            "version = 1\n[identity]\nsite = \"a\"\ngateway = \"b\"\n[[camera]]\nid = \"c\"\n\
             [camera.source]\nkind = \"simulated\"\nscene = \"components\"\nwidth = {w}\nheight = {h}\n"
        )
    };
    let err = parse(&text(32, 24)).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert!(
        err.to_string().contains(
            "camera[0].source.scene: \"components\" needs a frame of at least 64x48 pixels"
        ),
        "{err}"
    );
    assert!(parse(&text(64, 48)).is_ok());
}

#[test]
fn unknown_keys_name_the_section_and_the_key() {
    let text = r#"
version = 1
[identity]
site = "a"
gateway = "b"
[[camera]]
id = "c"
[camera.source]
kind = "simulated"
widht = 640
[mqtt]
pasword = "x"
"#;
    let err = parse(text).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("camera[0].source: unknown field `widht`"),
        "{message}"
    );
    assert!(
        message.contains("mqtt.pasword: unknown field `pasword`"),
        "{message}"
    );
    assert_eq!(err.errors.len(), 2, "{message}");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let err = parse("version = 1\n[identity\nsite = 1").unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert!(err.errors[0].message.starts_with("line 2, column"), "{err}");
}

#[test]
fn relative_paths_are_taken_from_the_file_folder() {
    let text = r#"
version = 1
[identity]
site = "a"
gateway = "b"
[[camera]]
id = "c"
[camera.source]
kind = "rjpeg_dir"
path = "drop"
[outbox]
path = "/var/lib/x"
"#;
    let config = parse(text).unwrap();
    let SourceConfig::RjpegDir(dir) = &config.cameras[0].source else {
        panic!("rjpeg_dir expected");
    };
    assert_eq!(dir.path, Path::new("/etc/chitti-agent/drop"));
    assert_eq!(config.outbox.path, Path::new("/var/lib/x"));
    let err = config.preflight("test.toml").unwrap_err();
    assert_eq!(err.paths(), ["camera[0].source.path"]);
}

#[test]
fn preflight_names_a_v4l2_camera_this_build_cannot_drive() {
    let text = r#"
version = 1
[identity]
site = "a"
gateway = "b"
[[camera]]
id = "usb"
[camera.source]
kind = "v4l2"
device = "/dev/video0"
mode = "preview"
[outbox]
path = "/var/lib/x"
"#;
    let config = parse(text).unwrap();
    // The schema accepts it (a hub validating for another build must too); the check
    // on this machine says whether this build can capture.
    let refused = config
        .preflight("test.toml")
        .err()
        .is_some_and(|e| e.paths().contains(&"camera[0].source.kind"));
    assert_eq!(refused, !crate::features::V4L2_BUILT_IN);
    if refused {
        let text = config.preflight("test.toml").unwrap_err().to_string();
        assert!(text.contains("--features v4l2"), "{text}");
    }
}

#[test]
fn hub_keys_that_are_not_ed25519_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = chitti_common::signing::public_key_hex(
        &chitti_common::signing::signing_key_from_seed(&[1; 32]).verifying_key(),
    );
    let file = dir.path().join("hub-public-key");
    std::fs::write(&file, format!("# the hub\n{good}\n\nnot-a-key\n")).unwrap();
    let text = format!(
        r#"
version = 1
[identity]
site = "a"
gateway = "b"
[[camera]]
id = "c"
[camera.source]
kind = "simulated"
[outbox]
path = "/var/lib/x"
[mqtt]
hub_public_keys = ["{good}", "abc"]
hub_public_keys_file = "{}"
"#,
        file.display()
    );
    let err = AgentConfig::from_toml(&text, "test.toml", Path::new("/")).unwrap_err();
    assert_eq!(err.paths(), ["mqtt.hub_public_keys[1]"]);
    let text = text.replace(r#", "abc""#, "");
    let config = AgentConfig::from_toml(&text, "test.toml", Path::new("/")).unwrap();
    let err = hub_public_keys(&config.mqtt).unwrap_err();
    assert!(err.contains("line 4") && err.contains("64 hex"), "{err}");
    std::fs::write(&file, format!("{good}\n")).unwrap();
    assert_eq!(hub_public_keys(&config.mqtt).unwrap().len(), 2);
}

#[test]
fn mqtt_urls_are_parsed_with_default_ports() {
    let mut m = MqttConfig::default();
    assert_eq!(m.endpoint(), Ok(("127.0.0.1".into(), 1883, false)));
    m.url = "mqtts://broker.example.net".into();
    assert_eq!(m.endpoint(), Ok(("broker.example.net".into(), 8883, true)));
    m.url = "mqtt://[::1]:1884".into();
    assert_eq!(m.endpoint(), Ok(("::1".into(), 1884, false)));
    m.url = "mqtt://host:port".into();
    assert!(m.endpoint().unwrap_err().contains("not a number"));
}

#[test]
fn evidence_upload_needs_the_signing_key_and_no_token() {
    let base = r#"
version = 1
[identity]
site = "north-yard"
gateway = "gw-1"
[[camera]]
id = "cam-1"
[camera.source]
kind = "simulated"
[evidence]
hub_url = "https://hub.example.net"
"#;
    let err = parse(base).unwrap_err();
    assert_eq!(err.paths(), ["evidence.hub_url"], "{err}");
    assert!(err.to_string().contains("mqtt.signing_key_file"), "{err}");
    let signed = format!("{base}[mqtt]\nsigning_key_file = \"signing.key\"\n");
    let config = parse(&signed).unwrap();
    assert_eq!(
        config.mqtt.signing_key_file.as_deref(),
        Some(Path::new("/etc/chitti-agent/signing.key"))
    );
    // The bearer token of earlier versions is gone: the signature replaces it.
    let with_token = signed.replace("[evidence]\n", "[evidence]\ntoken_file = \"t\"\n");
    let err = parse(&with_token).unwrap_err();
    assert!(
        err.paths().iter().any(|p| p.starts_with("evidence")),
        "{err}"
    );
}
