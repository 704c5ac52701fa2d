//! A camera's patrol as configured (`[camera.patrol]`, schema in
//! `chitti_common::agent_config::patrol`) and the tour the patrol thread runs.

pub use chitti_common::agent_config::patrol::*;

/// The tour the patrol thread runs.
pub fn plan(config: &PatrolConfig) -> super::PatrolPlan {
    super::PatrolPlan {
        device: config.serial.display().to_string(),
        baud_rate: config.baud,
        address: config.address,
        stops: config
            .presets
            .iter()
            .map(|s| super::PatrolStop {
                preset: s.id.clone(),
                pelco_preset: s.pelco_preset,
                asset: s.asset.clone(),
                settle: std::time::Duration::from_millis(s.settle_ms),
                dwell: std::time::Duration::from_millis(s.dwell_ms),
            })
            .collect(),
        repeat: config.repeat,
        ..super::PatrolPlan::new(String::new(), config.address, Vec::new())
    }
}
