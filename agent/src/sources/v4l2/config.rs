//! The `v4l2` source's configuration: the schema is
//! `chitti_common::agent_config::sources::v4l2`.

pub use chitti_common::agent_config::sources::v4l2::*;

/// What the running source reads, for camera `camera`.
pub fn source_for(toml: &V4l2SourceToml, camera: &str) -> super::V4l2SourceConfig {
    use super::format::CaptureMode;
    let mode = match toml.mode {
        V4l2Mode::Preview => CaptureMode::Preview,
        V4l2Mode::TemperatureLinear => CaptureMode::TemperatureLinear {
            kelvin_per_count: toml.kelvin_per_count.unwrap_or(0.01), // validated present
        },
        V4l2Mode::RadiometricCounts => {
            let mut params = chitti_common::agent_config::nominal_camera_params();
            if let Some(pl) = toml.planck {
                params.planck_r1 = pl.r1;
                params.planck_r2 = pl.r2;
                params.planck_b = pl.b;
                params.planck_f = pl.f;
                params.planck_o = pl.o;
            }
            CaptureMode::RadiometricCounts { params }
        }
    };
    let mut config = super::V4l2SourceConfig::new(
        camera,
        toml.device.clone(),
        (toml.width, toml.height),
        toml.fps,
        mode,
    );
    config.saturated_max_c = toml.saturated_max_c;
    config.backoff = crate::backoff::Backoff::new(
        std::time::Duration::from_millis(toml.reconnect_min_ms),
        std::time::Duration::from_millis(toml.reconnect_max_ms),
    );
    config.stall_timeout = std::time::Duration::from_secs(toml.stall_timeout_s);
    config
}

/// Opens the configured device.
pub fn opener_for(toml: &V4l2SourceToml) -> super::device::V4l2Opener {
    super::device::V4l2Opener {
        path: toml.device.clone(),
        options: Default::default(),
    }
}
