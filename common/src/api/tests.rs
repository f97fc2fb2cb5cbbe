//! The bytes on the wire: what the server sent before these types existed
//! (for the bodies it built with `json!`, the same `json!` is the pin),
//! and round trips.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::*;
use crate::names::{AppName, HostPattern, TenantId};
use crate::sync::{AppError, ArtifactRef, PurgeRequest, PurgeTarget};

fn tenant() -> TenantId {
    "acme".parse().unwrap()
}

fn app_name() -> AppName {
    "web".parse().unwrap()
}

fn host(h: &str) -> HostPattern {
    HostPattern::try_from(h.to_string()).unwrap()
}

fn artifact() -> ArtifactRef {
    ArtifactRef {
        sha256: "ab".repeat(32),
        size: 1234,
        engine: "e1".into(),
    }
}

/// Serialises `value` to exactly `wire`, and reads `wire` back as `value`.
#[track_caller]
fn pinned<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T, wire: &str) {
    assert_eq!(serde_json::to_string(value).unwrap(), wire);
    assert_eq!(&serde_json::from_str::<T>(wire).unwrap(), value);
}

#[test]
fn bodies_the_server_built_with_json_macros_keep_their_bytes() {
    let whoami = Whoami {
        role: Role::Tenant,
        subject: "acme".into(),
        tenant: Some(tenant()),
    };
    let before = json!({ "role": Role::Tenant, "subject": "acme", "tenant": Some(tenant()) });
    pinned(&whoami, &before.to_string());
    pinned(
        &Whoami {
            role: Role::Admin,
            subject: "admin".into(),
            tenant: None,
        },
        r#"{"role":"admin","subject":"admin","tenant":null}"#,
    );

    let uploaded = Uploaded {
        artifact: artifact(),
        compile_ms: 812,
        compiled: true,
        source_sha256: "cd".repeat(32),
        version: 3,
    };
    let before = json!({
        "version": 3,
        "source_sha256": "cd".repeat(32),
        "artifact": artifact(),
        "compiled": true,
        "compile_ms": 812,
    });
    pinned(&uploaded, &before.to_string());

    let activated = Activated {
        revision: 9,
        version: 2,
    };
    pinned(
        &activated,
        &json!({ "version": 2, "revision": 9 }).to_string(),
    );
    pinned(
        &PurgeRecorded {
            id: 7,
            revision: 42,
        },
        &json!({ "id": 7, "revision": 42 }).to_string(),
    );
    pinned(&Revision { revision: 5 }, r#"{"revision":5}"#);
    pinned(&VersionDeleted { deleted: 1 }, r#"{"deleted":1}"#);
    pinned(&ReportRecorded { recorded: true }, r#"{"recorded":true}"#);
    pinned(
        &ErrorBody {
            error: ErrorDetail {
                code: "not-found".into(),
                message: "app nope not found".into(),
            },
        },
        &json!({ "error": { "code": "not-found", "message": "app nope not found" } }).to_string(),
    );
}

#[test]
fn the_status_body_keeps_its_bytes() {
    let status = AppStatus {
        active_version: Some(2),
        app: app_name(),
        hosts: vec![host("web.test"), host("*.web.test")],
        nodes: vec![
            NodeRollout {
                applied_revision: Some(8),
                error: None,
                last_seen_unix: 1_700_000_000,
                node: "node-a".into(),
                refused: Some(Refused {
                    error: Some("bad signature".into()),
                    revision: 9,
                }),
                state: RolloutState::Pending,
            },
            NodeRollout {
                applied_revision: None,
                error: Some("does not load".into()),
                last_seen_unix: 1_700_000_001,
                node: "node-b".into(),
                refused: None,
                state: RolloutState::Rejected,
            },
        ],
        origin: None,
        revision: 9,
        tenant: tenant(),
    };
    let before = json!({
        "tenant": "acme",
        "app": "web",
        "active_version": 2,
        "origin": null,
        "hosts": ["web.test", "*.web.test"],
        "revision": 9,
        "nodes": [
            {
                "node": "node-a",
                "state": "pending",
                "applied_revision": 8,
                "refused": { "revision": 9, "error": "bad signature" },
                "error": null,
                "last_seen_unix": 1_700_000_000u64,
            },
            {
                "node": "node-b",
                "state": "rejected",
                "applied_revision": null,
                "refused": null,
                "error": "does not load",
                "last_seen_unix": 1_700_000_001u64,
            },
        ],
    });
    pinned(&status, &before.to_string());
}

#[test]
fn records_keep_their_field_names_and_order() {
    // Sent as they are (`GET /v1/apps/{app}`, `POST /v1/tenants`, ...):
    // keys in the order declared.
    let component = App {
        tenant: tenant(),
        name: app_name(),
        hosts: vec![host("web.test")],
        active_version: None,
        origin: None,
        forward_override_headers: None,
        config: BTreeMap::from([("A".to_string(), "1".to_string())]),
        limits: AppLimits::default(),
        created_unix: 1,
        updated_revision: 2,
        https: Default::default(),
    };
    let limits = serde_json::to_string(&AppLimits::default()).unwrap();
    pinned(
        &component,
        &format!(
            r#"{{"tenant":"acme","name":"web","hosts":["web.test"],"active_version":null,"origin":null,"config":{{"A":"1"}},"limits":{limits},"created_unix":1,"updated_revision":2}}"#
        ),
    );
    // HTTPS options appear once set, after the rest.
    let secured = App {
        https: crate::sync::AppHttps {
            redirect: true,
            hsts: Some("max-age=60".into()),
        },
        ..component.clone()
    };
    pinned(
        &secured,
        &format!(
            r#"{{"tenant":"acme","name":"web","hosts":["web.test"],"active_version":null,"origin":null,"config":{{"A":"1"}},"limits":{limits},"created_unix":1,"updated_revision":2,"https":{{"redirect":true,"hsts":"max-age=60"}}}}"#
        ),
    );
    let origin = App {
        origin: Some("http://o.test".into()),
        forward_override_headers: Some(false),
        config: BTreeMap::new(),
        ..component
    };
    pinned(
        &origin,
        &format!(
            r#"{{"tenant":"acme","name":"web","hosts":["web.test"],"active_version":null,"origin":"http://o.test","forward_override_headers":false,"config":{{}},"limits":{limits},"created_unix":1,"updated_revision":2}}"#
        ),
    );

    pinned(
        &Tenant {
            id: tenant(),
            created_unix: 5,
        },
        r#"{"id":"acme","created_unix":5}"#,
    );
    pinned(
        &TenantQuota {
            tenant: tenant(),
            storage_bytes: 1 << 30,
            custom: false,
            used_storage_bytes: 12,
        },
        r#"{"tenant":"acme","storage_bytes":1073741824,"custom":false,"used_storage_bytes":12}"#,
    );
    pinned(
        &OriginSet {
            origin: "http://o.test".into(),
            forward_override_headers: true,
            revision: 3,
        },
        r#"{"origin":"http://o.test","forward_override_headers":true,"revision":3}"#,
    );
    pinned(
        &AppConfig {
            config: BTreeMap::from([("K".to_string(), "v".to_string())]),
        },
        r#"{"config":{"K":"v"}}"#,
    );
}

/// The lists were `json!({"apps": records})` and the like: every record's
/// keys sorted, at every depth.
#[test]
fn lists_keep_the_sorted_keys_json_gave_them() {
    let app = App {
        tenant: tenant(),
        name: app_name(),
        hosts: vec![host("web.test")],
        active_version: Some(1),
        origin: Some("http://o.test".into()),
        forward_override_headers: Some(true),
        config: BTreeMap::new(),
        limits: AppLimits::default(),
        created_unix: 1,
        updated_revision: 2,
        https: Default::default(),
    };
    let limits = r#"{"burst":null,"cpu_time":"50ms","max_concurrent_requests":100,"max_memory_bytes":134217728,"max_request_body_bytes":104857600,"max_response_body_bytes":1073741824,"max_table_elements":20000,"requests_per_second":null,"wall_time":"1m"}"#;
    pinned(
        &AppList {
            apps: vec![app.clone()],
        },
        &format!(
            r#"{{"apps":[{{"active_version":1,"config":{{}},"created_unix":1,"forward_override_headers":true,"hosts":["web.test"],"limits":{limits},"name":"web","origin":"http://o.test","tenant":"acme","updated_revision":2}}]}}"#
        ),
    );
    assert_eq!(
        serde_json::to_string(&AppList {
            apps: vec![app.clone()]
        })
        .unwrap(),
        json!({ "apps": [app] }).to_string()
    );

    pinned(
        &TenantList {
            tenants: vec![Tenant {
                id: tenant(),
                created_unix: 5,
            }],
        },
        r#"{"tenants":[{"created_unix":5,"id":"acme"}]}"#,
    );
    pinned(
        &VersionList {
            versions: vec![Version {
                version: 1,
                source_sha256: "cd".into(),
                source_size: 10,
                artifact: ArtifactRef {
                    sha256: "ab".into(),
                    size: 20,
                    engine: "e1".into(),
                },
                created_unix: 3,
            }],
        },
        r#"{"versions":[{"artifact":{"engine":"e1","sha256":"ab","size":20},"created_unix":3,"source_sha256":"cd","source_size":10,"version":1}]}"#,
    );
    pinned(
        &NodeList {
            nodes: vec![Node {
                node: "node-a".into(),
                applied_revision: Some(4),
                app_errors: vec![AppError {
                    tenant: tenant(),
                    app: app_name(),
                    error: "x".into(),
                }],
                rejected_revision: None,
                last_error: None,
                engine: "e1".into(),
                last_seen_unix: 6,
            }],
        },
        r#"{"nodes":[{"app_errors":[{"app":"web","error":"x","tenant":"acme"}],"applied_revision":4,"engine":"e1","last_error":null,"last_seen_unix":6,"node":"node-a","rejected_revision":null}]}"#,
    );
}

#[test]
fn requests_read_what_clients_send() {
    pinned(&NewTenant { id: tenant() }, r#"{"id":"acme"}"#);
    pinned(
        &NewApp {
            name: app_name(),
            hosts: vec![host("web.test")],
            origin: None,
            forward_override_headers: None,
        },
        r#"{"name":"web","hosts":["web.test"]}"#,
    );
    pinned(
        &SetOrigin {
            origin: "http://o.test".into(),
            forward_override_headers: Some(true),
        },
        r#"{"origin":"http://o.test","forward_override_headers":true}"#,
    );
    pinned(&Deploy { version: 2 }, r#"{"version":2}"#);
    pinned(&Rollback { to: None }, "{}");
    pinned(&Rollback { to: Some(1) }, r#"{"to":1}"#);
    pinned(
        &SetTenantQuota {
            storage_bytes: None,
        },
        r#"{"storage_bytes":null}"#,
    );
    let changes: ConfigChanges = BTreeMap::from([
        ("A".to_string(), Some("1".to_string())),
        ("B".to_string(), None),
    ]);
    pinned(&changes, r#"{"A":"1","B":null}"#);

    // Refused as the server always refused them.
    for (wire, what) in [
        (r#"{}"#, "a quota without `storage_bytes`"),
        (r#"{"storage_bytes":1,"x":2}"#, "an unknown field"),
    ] {
        assert!(
            serde_json::from_str::<SetTenantQuota>(wire).is_err(),
            "{what}"
        );
    }
    assert!(serde_json::from_str::<NewApp>(r#"{"name":"web","hosts":[],"x":1}"#).is_err());
    assert!(serde_json::from_str::<Deploy>(r#"{"version":1,"to":2}"#).is_err());
    assert!(serde_json::from_str::<NewTenant>(r#"{"id":"acme","x":1}"#).is_err());
}

#[test]
fn a_purge_body_is_what_the_purge_request_reads() {
    for (request, wire) in [
        (
            PurgeRequest {
                target: PurgeTarget::Url { url: "/a".into() },
                soft: false,
            },
            r#"{"url":"/a","soft":false}"#,
        ),
        (
            PurgeRequest {
                target: PurgeTarget::Key { key: "k".into() },
                soft: true,
            },
            r#"{"key":"k","soft":true}"#,
        ),
        (
            PurgeRequest {
                target: PurgeTarget::All,
                soft: false,
            },
            r#"{"all":true,"soft":false}"#,
        ),
    ] {
        let body = PurgeBody::from(request.clone());
        pinned(&body, wire);
        let value = serde_json::to_value(&body).unwrap();
        assert_eq!(PurgeRequest::from_json(value).unwrap(), request);
    }
}

#[test]
fn roles_read_and_print_as_on_the_wire() {
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
    }
    assert!("root".parse::<Role>().is_err());
}
