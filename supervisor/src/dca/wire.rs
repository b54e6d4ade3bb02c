//! Datakit's DCA wire format: the handshake headers, the JSON frames and the DataKit record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Handshake header carrying the agent's [`DataKitInfo`] as JSON (Datakit's name).
pub const HEADER_DATAKIT: &str = "dca-datakit";
/// Handshake header carrying the agent's token (our addition; Datakit has no authentication).
pub const HEADER_TOKEN: &str = "dca-token";
/// Handshake header of a second connection (log tail/download), with the id the console chose.
pub const HEADER_NEW_CONNECTION: &str = "Header_New_WebSocket_Connection_ID";

/// Actions the console sends (Datakit 1.84 names).
pub mod action {
    pub const STATS: &str = "get_datakit_stats_action";
    pub const RELOAD: &str = "reload_datakit_action";
    pub const GET_CONFIG: &str = "get_datakit_config_action";
    pub const SAVE_CONFIG: &str = "save_datakit_config_action";
    pub const DELETE_CONFIG: &str = "delete_datakit_config_action";
    pub const NEW_CONNECTION: &str = "new_websocket_connection_action";
    pub const LOG_TAIL: &str = "get_datakit_log_tail_action";
    pub const LOG_DOWNLOAD: &str = "get_datakit_log_download_action";
    pub const UPDATE_STATUS: &str = "update_datakit_status";
    pub const UPDATE_DATAKIT: &str = "update_datakit";
    /// Pipeline and filter actions: answered "not supported" until pipelines exist.
    pub const UNSUPPORTED: &[&str] = &[
        "get_datakit_pipeline_action",
        "get_datakit_pipeline_detail_action",
        "create_datakit_pipeline_action",
        "patch_datakit_pipeline_action",
        "delete_datakit_pipeline_action",
        "test_datakit_pipeline_action",
        "get_datakit_filter_action",
        "upgrade_datakit_action",
        "stop_datakit_action",
        "restart_datakit_action",
    ];
}

/// One WebSocket text frame: `{"id":int64,"action":str,"data":…}`. Requests from the console
/// have `id > 0`; pushes from the agent have `id = 0`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Frame {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// The `data` of a request: a body (often JSON text) and query parameters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestData {
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub query: BTreeMap<String, Vec<String>>,
}

impl RequestData {
    /// The first value of query parameter `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .get(key)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The `data` of a reply: Datakit's `{success, content, errorCode, code, message}` envelope.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub success: bool,
    #[serde(default)]
    pub content: serde_json::Value,
    #[serde(rename = "errorCode", default)]
    pub error_code: String,
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
}

impl Reply {
    /// A success with `content`.
    pub fn ok(content: serde_json::Value) -> Reply {
        Reply {
            success: true,
            content,
            error_code: String::new(),
            code: 200,
            message: String::new(),
        }
    }

    /// A failure: `code` is the HTTP-like status, `error_code` Datakit's dotted code.
    pub fn err(code: u16, error_code: &str, message: impl Into<String>) -> Reply {
        Reply {
            success: false,
            content: serde_json::Value::Null,
            error_code: error_code.to_string(),
            code,
            message: message.into(),
        }
    }
}

/// The agent's description, sent in the handshake and with `update_datakit` (Datakit's
/// `DataKit` JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DataKitInfo {
    pub id: String,
    pub runtime_id: String,
    pub arch: String,
    pub host_name: String,
    pub os: String,
    pub version: String,
    pub ip: String,
    pub start_time: i64,
    pub updated_at: i64,
    pub run_in_container: bool,
    pub run_mode: String,
    pub usage_cores: f64,
    pub workspace_uuid: String,
    pub conn_id: String,
    pub status: String,
    pub upgradable: bool,
    pub url: String,
    pub global_host_tags_string: String,
    pub global_host_tags: BTreeMap<String, String>,
    pub data_dir: String,
    pub confd_dir: String,
    pub pipeline_dir: String,
    pub install_dir: String,
    pub cpu_usage: f64,
    pub log: String,
    pub gin_log: String,
}

/// Datakit's connection id: `hex(sha256("conn_id#<wsURL>#<ip>#<host>#<os>#<arch>#<wsUUID>"))`,
/// with the install dir appended so that two agents on one host stay apart.
pub fn conn_id(info: &DataKitInfo) -> String {
    let text = format!(
        "conn_id#{}#{}#{}#{}#{}#{}#{}",
        info.url,
        info.ip,
        info.host_name,
        info.os,
        info.arch,
        info.workspace_uuid,
        info.install_dir
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_serialises_with_datakit_field_names() {
        let r = Reply::err(400, "toml.format.error", "bad");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["errorCode"], "toml.format.error");
        assert_eq!(v["success"], false);
        assert_eq!(v["code"], 400);
    }

    #[test]
    fn a_console_request_parses_with_its_query_lists() {
        let f: Frame = serde_json::from_str(
            r#"{"id":7,"action":"get_datakit_config_action","data":{"body":"","query":{"path":["/x/conf.d/a.conf"]}}}"#,
        )
        .unwrap();
        let d: RequestData = serde_json::from_value(f.data).unwrap();
        assert_eq!(f.id, 7);
        assert_eq!(d.query("path"), Some("/x/conf.d/a.conf"));
    }

    #[test]
    fn two_agents_on_one_host_get_different_connection_ids() {
        let a = DataKitInfo {
            host_name: "h".into(),
            install_dir: "/a".into(),
            ..DataKitInfo::default()
        };
        let b = DataKitInfo {
            install_dir: "/b".into(),
            ..a.clone()
        };
        assert_ne!(conn_id(&a), conn_id(&b));
        assert_eq!(conn_id(&a).len(), 64);
    }
}
