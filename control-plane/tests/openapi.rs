//! The OpenAPI document against the running routes: every documented
//! operation exists, and what it answers matches the documented schema.

mod support;

use pbx_store::testing::TestDb;
use pbx_store::Principal;
use serde_json::{json, Value};
use support::{Api, Who};

/// Checks `value` against `schema` (the subset of JSON Schema utoipa emits),
/// returning the first mismatch with its JSON path.
fn check(doc: &Value, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{path}: unresolved {reference}"));
        }
        return check(doc, target, value, path);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            if !options.iter().any(|s| check(doc, s, value, path).is_ok()) {
                return Err(format!("{path}: {value} matches none of {key}"));
            }
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            check(doc, s, value, path)?;
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return Err(format!("{path}: {value} not in enum"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !fits {
            return Err(format!(
                "{path}: {actual} where the document says {types:?}"
            ));
        }
    }
    if let (Some(props), Value::Object(obj)) = (schema["properties"].as_object(), value) {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or("");
            if !obj.contains_key(name) {
                return Err(format!("{path}: required {name} is missing"));
            }
        }
        for (name, s) in props {
            if let Some(v) = obj.get(name) {
                check(doc, s, v, &format!("{path}.{name}"))?;
            }
        }
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for (i, v) in values.iter().enumerate() {
            check(doc, items, v, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn response_schema(op: &Value, status: u16) -> Option<(&Value, &str)> {
    let responses = &op["responses"];
    let response = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))?;
    let content = response["content"].as_object()?;
    let (media, body) = content.iter().next()?;
    Some((&body["schema"], media.as_str()))
}

async fn every_documented_route_answers_as_documented(db: TestDb) {
    let api = Api::new(db).await;
    let sys = Principal::system();
    let t = &api.t;
    let number = api
        .db
        .store
        .numbers()
        .create(&sys, "+4930555000", Some(t.reseller_x.id))
        .await
        .unwrap();
    let plan = api
        .db
        .store
        .price_plans()
        .create(
            &sys,
            None,
            &serde_json::from_value(json!({"name": "Wholesale", "currency": "EUR",
                "extension_month_micros": 0, "number_month_micros": 0, "internal_calls_free": true}))
            .unwrap(),
        )
        .await
        .unwrap();
    let login = api.db.store.logins().list(&sys).await.unwrap()[0].id;
    let group = api
        .db
        .store
        .ring_groups()
        .create(
            &sys,
            t.customer_a.id,
            &serde_json::from_value(
                json!({"number": "600", "name": "Support", "strategy": "sequential", "members": [t.extension_a.id]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let room = api
        .db
        .store
        .conference_rooms()
        .create(
            &sys,
            t.customer_a.id,
            &serde_json::from_value(json!({"number": "800", "name": "Board"})).unwrap(),
        )
        .await
        .unwrap();
    let menu = api
        .db
        .store
        .ivr_menus()
        .create(
            &sys,
            t.customer_a.id,
            &serde_json::from_value(json!({"name": "Main",
                "options": [{"key": "1", "destination": {"kind": "extension", "id": t.extension_a.id}}],
                "on_timeout": {"kind": "voicemail", "id": t.extension_a.id}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let (webhook, _) = api
        .db
        .store
        .webhooks()
        .create(
            &t.reseller_x_admin,
            &serde_json::from_value(
                json!({"url": "https://crm.x.test/hook", "events": ["call_ended"]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let token = api.db.store.api_tokens().list(&sys).await.unwrap()[0].id;
    let rule = api
        .db
        .store
        .business_hours()
        .create(
            &sys,
            t.customer_a.id,
            &serde_json::from_value(json!({"name": "Office"})).unwrap(),
        )
        .await
        .unwrap();
    let trunk = api
        .db
        .store
        .trunks()
        .create(
            &sys,
            None,
            &serde_json::from_value(
                json!({"name": "Carrier", "host": "127.0.0.1", "auth_mode": "ip"}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let now = pbx_store::now_ms();
    let ban = api
        .db
        .store
        .sip_bans()
        .record(
            &sys,
            &pbx_store::abuse::NewBan {
                source: pbx_store::net::Source::parse("192.0.2.66").unwrap(),
                reason: pbx_store::abuse::BanReason::AuthFailures,
                level: 1,
                failures: 5,
                reseller: Some(t.reseller_x.id),
                customer: Some(t.customer_a.id),
                node_id: "n1".into(),
                banned_at: now,
                until: now + 3_600_000,
            },
        )
        .await
        .unwrap();
    let allowed = api
        .db
        .store
        .sip_allow_list()
        .add(
            &sys,
            &serde_json::from_value(json!({"block": "192.0.2.0/28"})).unwrap(),
        )
        .await
        .unwrap();
    let protection = api
        .db
        .store
        .account_protections()
        .record(
            &sys,
            &pbx_store::abuse::NewProtection {
                reseller: t.reseller_x.id,
                customer: t.customer_a.id,
                device: t.device_a.id,
                sip_user: t.device_a.sip_user.clone(),
                failures: 10,
                sources: 10,
                node_id: "n1".into(),
                since: now,
                until: now + 3_600_000,
            },
        )
        .await
        .unwrap()
        .unwrap();

    // A voicemail message with its recording.
    let recording = pbx_store::audio_files::AudioFiles::new_key("voicemail/openapi", "wav");
    api.state.audio.write(&recording, &silent_wav(800)).unwrap();
    let voicemail = api
        .db
        .store
        .voicemail()
        .add(
            &sys,
            &pbx_store::voicemail::NewMessage {
                reseller: t.reseller_x.id,
                customer: t.customer_a.id,
                extension: t.extension_a.id,
                caller: "0301234567".into(),
                call_id: "openapi".into(),
                duration_ms: 100,
                audio: recording,
                received_at: now,
            },
        )
        .await
        .unwrap()
        .unwrap();

    // A recorded call with its audio.
    let audio = pbx_store::audio_files::AudioFiles::new_key("recordings/openapi", "wav");
    api.state.audio.write(&audio, &silent_wav(800)).unwrap();
    let mut call = pbx_store::testing::answered_call(
        "openapi-rec",
        t.reseller_x.id,
        t.customer_a.id,
        now,
        5_000,
    );
    call.recording = Some(pbx_store::call_recordings::NewRecording {
        audio,
        started_at: now + 2_000,
    });
    api.db
        .store
        .call_records()
        .insert_batch(&sys, &[call])
        .await
        .unwrap();
    let call_recording = api
        .db
        .store
        .call_recordings()
        .list(&sys, t.customer_a.id, None, 1)
        .await
        .unwrap()[0]
        .id;

    let served = api.get(Who::Anonymous, "/api/v1/openapi.json").await;
    assert_eq!(served.status, 200);
    let doc = served.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());

    let id_for = |path: &str| -> i64 {
        let first = path
            .trim_start_matches("/api/v1/")
            .split('/')
            .next()
            .unwrap();
        match first {
            "resellers" => t.reseller_x.id.0,
            "customers" => t.customer_a.id.0,
            "extensions" => t.extension_a.id.0,
            "devices" => t.device_a.id.0,
            "numbers" => number.id.0,
            "price-plans" => plan.id.0,
            "logins" => login.0,
            "tokens" => token.0,
            "webhooks" => webhook.id,
            "ring-groups" => group.id.0,
            "conference-rooms" => room.id.0,
            "ivr-menus" => menu.id.0,
            "trunks" => trunk.id.0,
            "business-hours" => rule.id.0,
            "sip-bans" => ban,
            "sip-allow-list" => allowed.id,
            "account-protections" => protection,
            "voicemail" => voicemail,
            "call-recordings" => call_recording,
            other => panic!("no id known for /{other}"),
        }
    };
    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, item) in paths {
        let uri = if path.contains("{id}") {
            path.replace("{id}", &id_for(path).to_string())
        } else {
            path.clone()
        };
        for method in ["get", "post", "put", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let query = if path.ends_with("/statement") {
                "?month=2026-11"
            } else {
                ""
            };
            let uri = format!("{uri}{query}");
            let answer = match method {
                "get" => api.get(Who::Operator, &uri).await,
                // An empty object: the route must exist and answer a documented problem or success.
                "post" => api.post(Who::Operator, &uri, &json!({})).await,
                "put" => api.put(Who::Operator, &uri, &json!({})).await,
                // Deletes are walked without touching the fixtures' objects.
                _ => {
                    let missing = path.replace("{id}", "99999999");
                    api.delete(Who::Operator, &missing).await
                }
            };
            checked += 1;
            let status = answer.status.as_u16();
            if status == 404 && answer.json()["type"] == "urn:pbx:problem:no-route" || status == 405
            {
                problems.push(format!(
                    "{method} {path}: the route does not exist ({status})"
                ));
                continue;
            }
            if status >= 500 {
                problems.push(format!("{method} {path}: {status} {}", answer.text()));
                continue;
            }
            if path.ends_with("/events") {
                // Not a WebSocket handshake: 426, as a problem.
                assert_eq!(status, 426);
                continue;
            }
            let Some((schema, media)) = response_schema(op, status) else {
                if status != 204 {
                    problems.push(format!("{method} {path}: {status} is not documented"));
                }
                continue;
            };
            let content_type = answer.header("content-type").unwrap_or("");
            if !content_type.starts_with(media) {
                problems.push(format!(
                    "{method} {path}: {content_type} where the document says {media}"
                ));
                continue;
            }
            if let Err(e) = check(&doc, schema, &answer.json(), "$") {
                problems.push(format!("{method} {path} ({status}): {e}"));
            }
        }
    }
    assert!(checked >= 40, "{checked} operations");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

pbx_store::both_engines!(every_documented_route_answers_as_documented);

#[tokio::test]
async fn the_document_describes_the_conventions() {
    let doc = serde_json::to_value(pbx_control_plane::api::openapi()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let create = &doc["paths"]["/api/v1/customers"]["post"];
    assert!(create["responses"]["201"].is_object());
    assert!(create["responses"]["default"]["content"]["application/problem+json"].is_object());
    let params: Vec<&str> = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"Idempotency-Key"));
    // The checker the route walk relies on does catch a wrong answer.
    let customer = json!({"$ref": "#/components/schemas/Customer"});
    assert!(check(&doc, &customer, &json!({"id": "seven"}), "$").is_err());
    assert!(check(&doc, &customer, &json!({}), "$").is_err());
}

/// A WAV file of `samples` silent samples (8 kHz, 16-bit, mono).
fn silent_wav(samples: u32) -> Vec<u8> {
    let data = samples * 2;
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    w.resize(w.len() + data as usize, 0);
    w
}
