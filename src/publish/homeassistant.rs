//! Home Assistant MQTT discovery: per-label count sensors and presence binary
//! sensors (and snapshot images), and an inference-time sensor, all tied to one device.

use serde_json::json;

use super::outbox::Message;

/// The device every entity belongs to.
fn device(device_id: &str) -> serde_json::Value {
    json!({
        "identifiers": [format!("edgecam_{device_id}")],
        "name": format!("edgecam {device_id}"),
        "model": "edgecam",
        "manufacturer": "edgecam",
        "sw_version": env!("CARGO_PKG_VERSION"),
        "hw_version": board_model(),
    })
}

/// What the board says it is: the device tree's model on a Raspberry Pi and other ARM boards
/// ("Raspberry Pi 5 Model B Rev 1.0"), DMI's product name on a PC, else the architecture.
pub fn board_model() -> &'static str {
    static MODEL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        [
            "/proc/device-tree/model",
            "/sys/firmware/devicetree/base/model",
            "/sys/class/dmi/id/product_name",
        ]
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_string()
        })
        .find(|m| !m.is_empty() && m.len() <= 128)
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
    })
}

/// Who made the discovery configs (Home Assistant's `origin`).
fn origin() -> serde_json::Value {
    let mut o = json!({
        "name": "edgecam",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let url = env!("CARGO_PKG_REPOSITORY");
    if !url.is_empty() {
        o["support_url"] = url.into();
    }
    o
}

/// The retained discovery config of one entity.
fn config(
    discovery_prefix: &str,
    component: &str,
    device_id: &str,
    id: &str,
    mut cfg: serde_json::Value,
) -> Message {
    cfg["origin"] = origin();
    Message {
        topic: format!("{discovery_prefix}/{component}/{device_id}/{id}/config"),
        payload: cfg.to_string().into_bytes(),
        retain: true,
        qos: 1,
    }
}

/// Discovery configs (retained) of the snapshot `image` entities, one per label: the JPEG of
/// `<base>/<label>/snapshot`.
pub fn snapshot_discovery(
    discovery_prefix: &str,
    base: &str,
    device_id: &str,
    labels: &[(String, String)],
) -> Vec<Message> {
    let device = device(device_id);
    let availability = format!("{base}/availability");
    labels
        .iter()
        .map(|(slug, label)| {
            config(
                discovery_prefix,
                "image",
                device_id,
                &format!("{slug}_snapshot"),
                json!({
                    "name": format!("{label} snapshot"),
                    "unique_id": format!("edgecam_{device_id}_{slug}_snapshot"),
                    "image_topic": super::Publisher::snapshot_topic(base, slug),
                    "content_type": "image/jpeg",
                    "availability_topic": availability,
                    "device": device,
                }),
            )
        })
        .collect()
}

/// Discovery configs (retained) for `labels` (slug, display name), and the inference-time
/// sensor, which expires after `expire_after_s` without a `stats` message.
pub fn discovery(
    discovery_prefix: &str,
    base: &str,
    device_id: &str,
    labels: &[(String, String)],
    expire_after_s: u64,
) -> Vec<Message> {
    let device = device(device_id);
    let availability = format!("{base}/availability");
    let mut out = Vec::new();
    let mut push = |component: &str, object_id: &str, cfg: serde_json::Value| {
        out.push(config(
            discovery_prefix,
            component,
            device_id,
            object_id,
            cfg,
        ));
    };
    for (slug, label) in labels {
        push(
            "sensor",
            &format!("{slug}_count"),
            json!({
                "name": format!("{label} count"),
                "unique_id": format!("edgecam_{device_id}_{slug}_count"),
                "state_topic": format!("{base}/counts/{}", super::topic_level(slug)),
                "availability_topic": availability,
                "state_class": "measurement",
                "icon": "mdi:counter",
                "device": device,
            }),
        );
        push(
            "binary_sensor",
            &format!("{slug}_present"),
            json!({
                "name": format!("{label} present"),
                "unique_id": format!("edgecam_{device_id}_{slug}_present"),
                "state_topic": format!("{base}/counts/{}", super::topic_level(slug)),
                "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
                "availability_topic": availability,
                "device_class": "occupancy",
                "device": device,
            }),
        );
    }
    push(
        "sensor",
        "inference_ms",
        json!({
            "name": "Inference time",
            "unique_id": format!("edgecam_{device_id}_inference_ms"),
            "state_topic": format!("{base}/stats"),
            "value_template": "{{ value_json.inference_ms.p50 }}",
            "unit_of_measurement": "ms",
            "device_class": "duration",
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "expire_after": expire_after_s,
            "availability_topic": availability,
            "device": device,
        }),
    );
    out
}

/// Discovery configs (retained) of the drift entities: F1, pseudo-mAP@0.5 and
/// the lowest raw-output SQNR of the window, and the drift alarm.
pub fn drift_discovery(discovery_prefix: &str, base: &str, device_id: &str) -> Vec<Message> {
    let device = device(device_id);
    let availability = format!("{base}/availability");
    let state = format!("{base}/drift");
    let sensor = |id: &str, name: &str, tpl: &str, unit: Option<&str>| {
        let mut cfg = json!({
            "name": name,
            "unique_id": format!("edgecam_{device_id}_{id}"),
            "state_topic": state,
            "value_template": tpl,
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "availability_topic": availability,
            "icon": "mdi:chart-bell-curve",
            "device": device,
        });
        if let Some(u) = unit {
            cfg["unit_of_measurement"] = u.into();
        }
        config(discovery_prefix, "sensor", device_id, id, cfg)
    };
    vec![
        sensor("drift_f1", "Drift F1", "{{ value_json.metrics.f1 }}", None),
        sensor(
            "drift_map50",
            "Drift pseudo-mAP@0.5",
            "{{ value_json.metrics.map50 }}",
            None,
        ),
        sensor(
            "drift_sqnr",
            "Drift SQNR",
            "{{ value_json.metrics.sqnr_db_min }}",
            Some("dB"),
        ),
        config(
            discovery_prefix,
            "binary_sensor",
            device_id,
            "drift_alarm",
            json!({
                "name": "Drift alarm",
                "unique_id": format!("edgecam_{device_id}_drift_alarm"),
                "state_topic": state,
                "value_template": "{{ 'ON' if value_json.alarm.active else 'OFF' }}",
                "device_class": "problem",
                "entity_category": "diagnostic",
                "availability_topic": availability,
                "device": device,
            }),
        ),
    ]
}

/// Discovery configs (retained) of the calibration entities: its state (with the before/after
/// figures as attributes), the candidate's gain, and one button per command of
/// `<base>/calibration/set`.
pub fn calibration_discovery(discovery_prefix: &str, base: &str, device_id: &str) -> Vec<Message> {
    let device = device(device_id);
    let availability = format!("{base}/availability");
    let state = format!("{base}/calibration");
    let msg = |component: &str, id: &str, cfg: serde_json::Value| {
        config(discovery_prefix, component, device_id, id, cfg)
    };
    let mut out = vec![
        msg(
            "sensor",
            "calibration",
            json!({
                "name": "Calibration",
                "unique_id": format!("edgecam_{device_id}_calibration"),
                "state_topic": state,
                "value_template": "{{ value_json.state }}",
                "json_attributes_topic": state,
                "availability_topic": availability,
                "icon": "mdi:tune-vertical",
                "device": device,
            }),
        ),
        msg(
            "sensor",
            "calibration_gain",
            json!({
                "name": "Calibration gain",
                "unique_id": format!("edgecam_{device_id}_calibration_gain"),
                "state_topic": state,
                "value_template": "{{ value_json.gain if value_json.gain is defined and value_json.gain is not none else '' }}",
                "availability_topic": availability,
                "icon": "mdi:chart-line",
                "device": device,
            }),
        ),
    ];
    for (cmd, name, icon) in [
        ("start", "Calibrate", "mdi:play"),
        ("promote", "Promote calibrated model", "mdi:check-decagram"),
        ("rollback", "Roll back model", "mdi:undo"),
    ] {
        out.push(msg(
            "button",
            &format!("calibration_{cmd}"),
            json!({
                "name": name,
                "unique_id": format!("edgecam_{device_id}_calibration_{cmd}"),
                "command_topic": format!("{state}/set"),
                "payload_press": cmd,
                "availability_topic": availability,
                "icon": icon,
                "device": device,
            }),
        ));
    }
    out
}

/// Discovery configs (retained) of the controls: a `switch` for detection and a `number` for
/// the default score threshold, both commanding and reading back their topics.
pub fn control_discovery(discovery_prefix: &str, base: &str, device_id: &str) -> Vec<Message> {
    let device = device(device_id);
    let availability = format!("{base}/availability");
    let msg = |component: &str, id: &str, cfg: serde_json::Value| {
        config(discovery_prefix, component, device_id, id, cfg)
    };
    vec![
        msg(
            "switch",
            "detect",
            json!({
                "name": "Detect",
                "unique_id": format!("edgecam_{device_id}_detect"),
                "command_topic": format!("{base}/detect/set"),
                "state_topic": format!("{base}/detect/state"),
                "payload_on": "ON",
                "payload_off": "OFF",
                "availability_topic": availability,
                "icon": "mdi:motion-sensor",
                "device": device,
            }),
        ),
        msg(
            "number",
            "threshold",
            json!({
                "name": "Score threshold",
                "unique_id": format!("edgecam_{device_id}_threshold"),
                "command_topic": format!("{base}/threshold/set"),
                "state_topic": format!("{base}/threshold/state"),
                "min": 0.05,
                "max": 1.0,
                "step": 0.05,
                "mode": "slider",
                "entity_category": "config",
                "availability_topic": availability,
                "icon": "mdi:tune",
                "device": device,
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_point_at_our_topics() {
        let m = discovery(
            "homeassistant",
            "edgecam/cam1",
            "cam1",
            &[("person".into(), "Person".into())],
            30,
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].topic, "homeassistant/sensor/cam1/person_count/config");
        let v: serde_json::Value = serde_json::from_slice(&m[0].payload).unwrap();
        assert_eq!(v["state_topic"], "edgecam/cam1/counts/person");
        assert_eq!(v["name"], "Person count", "the display name");
        assert_eq!(v["origin"]["name"], "edgecam");
        assert!(v["device"]["hw_version"]
            .as_str()
            .is_some_and(|h| !h.is_empty()));
        let inf: serde_json::Value = serde_json::from_slice(&m[2].payload).unwrap();
        assert_eq!(m[2].topic, "homeassistant/sensor/cam1/inference_ms/config");
        assert_eq!(
            (
                &inf["device_class"],
                &inf["entity_category"],
                &inf["expire_after"]
            ),
            (&"duration".into(), &"diagnostic".into(), &30.into())
        );
        assert_eq!(v["availability_topic"], "edgecam/cam1/availability");
        assert!(m.iter().all(|x| x.retain));
        assert_eq!(
            m[1].topic,
            "homeassistant/binary_sensor/cam1/person_present/config"
        );
    }

    #[test]
    fn a_label_with_wildcards_points_at_its_safe_topic() {
        let l = crate::postprocess::labels::slug("C++ #1");
        let m = discovery(
            "homeassistant",
            "edgecam/cam1",
            "cam1",
            &[(l, "C++ #1".into())],
            30,
        );
        for x in &m[..2] {
            let v: serde_json::Value = serde_json::from_slice(&x.payload).unwrap();
            assert_eq!(v["state_topic"], "edgecam/cam1/counts/c____1");
        }
    }

    #[test]
    fn snapshot_images_read_the_snapshot_topic() {
        let m = snapshot_discovery(
            "homeassistant",
            "edgecam/cam1",
            "cam1",
            &[
                ("person".into(), "Person".into()),
                ("c__".into(), "C++".into()),
            ],
        );
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].topic,
            "homeassistant/image/cam1/person_snapshot/config"
        );
        assert!(m[0].retain && m[0].qos == 1);
        let c: serde_json::Value = serde_json::from_slice(&m[0].payload).unwrap();
        assert_eq!(c["image_topic"], "edgecam/cam1/person/snapshot");
        assert_eq!(c["name"], "Person snapshot");
        assert_eq!(c["content_type"], "image/jpeg");
        assert_eq!(c["unique_id"], "edgecam_cam1_person_snapshot");
        assert_eq!(c["availability_topic"], "edgecam/cam1/availability");
        assert_eq!(c["device"]["identifiers"][0], "edgecam_cam1");
        let c: serde_json::Value = serde_json::from_slice(&m[1].payload).unwrap();
        assert_eq!(m[1].topic, "homeassistant/image/cam1/c___snapshot/config");
        assert_eq!(c["image_topic"], "edgecam/cam1/c__/snapshot");
    }

    #[test]
    fn drift_entities_read_the_drift_topic() {
        let m = drift_discovery("homeassistant", "edgecam/cam1", "cam1");
        assert_eq!(m.len(), 4);
        let topics: Vec<&str> = m.iter().map(|x| x.topic.as_str()).collect();
        assert!(topics.contains(&"homeassistant/sensor/cam1/drift_f1/config"));
        assert!(topics.contains(&"homeassistant/binary_sensor/cam1/drift_alarm/config"));
        for x in &m {
            let v: serde_json::Value = serde_json::from_slice(&x.payload).unwrap();
            assert_eq!(v["state_topic"], "edgecam/cam1/drift");
            assert_eq!(v["entity_category"], "diagnostic");
            assert!(x.retain);
        }
    }

    #[test]
    fn calibration_buttons_press_the_command_words() {
        let m = calibration_discovery("homeassistant", "edgecam/cam1", "cam1");
        let presses: Vec<String> = m
            .iter()
            .filter(|x| x.topic.contains("/button/"))
            .map(|x| {
                let v: serde_json::Value = serde_json::from_slice(&x.payload).unwrap();
                assert_eq!(v["command_topic"], "edgecam/cam1/calibration/set");
                v["payload_press"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(presses, ["start", "promote", "rollback"]);
        let v: serde_json::Value = serde_json::from_slice(&m[0].payload).unwrap();
        assert_eq!(v["state_topic"], "edgecam/cam1/calibration");
        assert!(m.iter().all(|x| x.retain));
    }
}
