//! A customer's extensions, their devices (with SIP credentials shown once),
//! and the devices' current registrations.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json as JsonOut;
use pbx_store::devices::{Credentials, Device, NewDevice};
use pbx_store::extensions::{Extension, ExtensionSettings, NewExtension};
use pbx_store::forwards::Forward;
use pbx_store::registrations::StoredBinding;
use pbx_store::{CustomerId, DeviceId, ExtensionId, Millis};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::etag::{IfMatch, OptionalIfMatch, Tagged};
use super::input::{Json, Path, Query};
use super::page::{paginate, Page, PageQuery};
use super::problem::ApiResult;
use super::Created;
use crate::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_extensions, create_extension))
        .routes(routes!(get_extension, update_extension, delete_extension))
        .routes(routes!(get_forwarding, set_forwarding))
        .routes(routes!(list_devices, create_device))
        .routes(routes!(list_customer_devices))
        .routes(routes!(get_device, delete_device))
        .routes(routes!(reset_device_secret))
        .routes(routes!(list_registrations))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/extensions", tag = "extensions",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<Extension>)))]
async fn list_extensions(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Extension>>> {
    // The parent first: another tenant's customer is a 404, not an empty list.
    let customer = s.store.customers().get(&by, CustomerId(id)).await?;
    let all = s.store.extensions().list(&by, customer.id).await?;
    Ok(JsonOut(paginate(all, |e| e.id.0, &q)?))
}

#[utoipa::path(post, path = "/api/v1/customers/{id}/extensions", tag = "extensions", request_body = NewExtension,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = Extension, headers(("Location" = String), ("ETag" = String)))))]
async fn create_extension(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(new): Json<NewExtension>,
) -> ApiResult<Created<Extension>> {
    let e = s
        .store
        .extensions()
        .create(&by, CustomerId(id), &new)
        .await?;
    Ok(Created(
        format!("/api/v1/extensions/{}", e.id),
        e.version,
        e,
    ))
}

#[utoipa::path(get, path = "/api/v1/extensions/{id}", tag = "extensions",
    params(("id" = i64, Path)), responses((status = 200, body = Extension, headers(("ETag" = String)))))]
async fn get_extension(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<Extension>> {
    let e = s.store.extensions().get(&by, ExtensionId(id)).await?;
    Ok(Tagged(StatusCode::OK, e.version, e))
}

#[utoipa::path(put, path = "/api/v1/extensions/{id}", tag = "extensions", request_body = ExtensionSettings,
    params(("id" = i64, Path), ("If-Match" = String, Header, description = "The ETag the change is based on")),
    responses((status = 200, body = Extension, headers(("ETag" = String)))))]
async fn update_extension(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    IfMatch(version): IfMatch,
    Json(settings): Json<ExtensionSettings>,
) -> ApiResult<Tagged<Extension>> {
    let e = s
        .store
        .extensions()
        .update(&by, ExtensionId(id), version, &settings)
        .await?;
    Ok(Tagged(StatusCode::OK, e.version, e))
}

/// Deletes an extension with its devices; numbers routed to it lose their destination.
#[utoipa::path(delete, path = "/api/v1/extensions/{id}", tag = "extensions",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_extension(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.extensions().delete(&by, ExtensionId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The extension's call forwarding (its own user may read and change it).
#[utoipa::path(get, path = "/api/v1/extensions/{id}/forwarding", tag = "extensions",
    params(("id" = i64, Path)), responses((status = 200, body = [Forward])))]
async fn get_forwarding(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Vec<Forward>>> {
    Ok(JsonOut(s.store.forwards().get(&by, ExtensionId(id)).await?))
}

/// Replaces the extension's call forwarding: at most one forward per
/// condition (`always`, `busy` — also on do-not-disturb —, `no_answer` after
/// `timeout_s`, `unavailable` when no phone is registered). An empty list
/// turns forwarding off. Chains are followed; a chain that returns to an
/// extension already passed is refused as a loop (SIP 482).
#[utoipa::path(put, path = "/api/v1/extensions/{id}/forwarding", tag = "extensions", request_body = [Forward],
    params(("id" = i64, Path), ("If-Match" = Option<String>, Header, description = "The extension's ETag")), responses((status = 200, body = [Forward])))]
async fn set_forwarding(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    if_match: OptionalIfMatch,
    Json(forwards): Json<Vec<Forward>>,
) -> ApiResult<JsonOut<Vec<Forward>>> {
    if if_match.0.is_some() {
        if_match.check(
            s.store
                .extensions()
                .get(&by, ExtensionId(id))
                .await?
                .version,
        )?;
    }
    Ok(JsonOut(
        s.store
            .forwards()
            .set(&by, ExtensionId(id), &forwards)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/extensions/{id}/devices", tag = "devices",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<Device>)))]
async fn list_devices(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Device>>> {
    let all = s.store.devices().list(&by, ExtensionId(id)).await?;
    Ok(JsonOut(paginate(all, |d| d.id.0, &q)?))
}

/// A new device with the SIP credentials it registers with. The password is
/// shown here once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceWithCredentials {
    pub device: Device,
    pub credentials: Credentials,
}

#[utoipa::path(post, path = "/api/v1/extensions/{id}/devices", tag = "devices", request_body = NewDevice,
    params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried create safe")),
    responses((status = 201, body = DeviceWithCredentials, headers(("Location" = String), ("ETag" = String)))))]
async fn create_device(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(new): Json<NewDevice>,
) -> ApiResult<Response> {
    let (device, credentials) = s.store.devices().create(&by, ExtensionId(id), &new).await?;
    let location = format!("/api/v1/devices/{}", device.id);
    let version = device.version;
    Ok(no_store(
        Created(
            location,
            version,
            DeviceWithCredentials {
                device,
                credentials,
            },
        )
        .into_response(),
    ))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}/devices", tag = "devices",
    params(("id" = i64, Path), PageQuery), responses((status = 200, body = Page<Device>)))]
async fn list_customer_devices(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> ApiResult<JsonOut<Page<Device>>> {
    let customer = s.store.customers().get(&by, CustomerId(id)).await?;
    let all = s
        .store
        .devices()
        .list_for_customer(&by, customer.id)
        .await?;
    Ok(JsonOut(paginate(all, |d| d.id.0, &q)?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = i64, Path)), responses((status = 200, body = Device, headers(("ETag" = String)))))]
async fn get_device(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<Tagged<Device>> {
    let d = s.store.devices().get(&by, DeviceId(id)).await?;
    Ok(Tagged(StatusCode::OK, d.version, d))
}

#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices",
    params(("id" = i64, Path)), responses((status = 204)))]
async fn delete_device(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store.devices().delete(&by, DeviceId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct SecretReset {
    /// A password of your own (12 characters or more); generated when absent.
    pub secret: Option<String>,
}

/// Gives the device a new SIP password and shows it once. The phone must be
/// set up again; its current registrations end at their expiry.
#[utoipa::path(post, path = "/api/v1/devices/{id}/reset-secret", tag = "devices", request_body = SecretReset,
    params(("id" = i64, Path)), responses((status = 200, body = Credentials)))]
async fn reset_device_secret(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
    Json(reset): Json<SecretReset>,
) -> ApiResult<Response> {
    let credentials = s
        .store
        .devices()
        .reset_secret(&by, DeviceId(id), reset.secret.as_deref())
        .await?;
    Ok(no_store(JsonOut(credentials).into_response()))
}

/// Secrets must not be kept by caches on the way.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// A device's current registration, as the registrar holds it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registration {
    pub customer_id: CustomerId,
    pub extension_id: ExtensionId,
    pub device_id: DeviceId,
    pub contact: String,
    /// The address the phone's requests came from.
    pub source: String,
    pub transport: String,
    pub user_agent: Option<String>,
    pub expires_at: Millis,
    pub updated_at: Millis,
}

impl From<StoredBinding> for Registration {
    fn from(b: StoredBinding) -> Self {
        Registration {
            customer_id: b.customer_id,
            extension_id: b.extension_id,
            device_id: b.device_id,
            contact: b.contact,
            source: b.source,
            transport: b.transport,
            user_agent: b.user_agent,
            expires_at: b.expires_at,
            updated_at: b.updated_at,
        }
    }
}

/// The customer's devices registered now.
#[utoipa::path(get, path = "/api/v1/customers/{id}/registrations", tag = "devices",
    params(("id" = i64, Path)), responses((status = 200, body = [Registration])))]
async fn list_registrations(
    State(s): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<i64>,
) -> ApiResult<JsonOut<Vec<Registration>>> {
    let customer = s.store.customers().get(&by, CustomerId(id)).await?;
    let bindings = s
        .store
        .registrations()
        .for_customer(&by, customer.id, pbx_store::now_ms())
        .await?;
    Ok(JsonOut(
        bindings.into_iter().map(Registration::from).collect(),
    ))
}
