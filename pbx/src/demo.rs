//! `pbx serve --demo`: a working platform in a minute. Seeds, once, a named
//! operator, a reseller with its own brand and console host, one customer
//! with three extensions and a device each, and a login at every level; then
//! writes what a person or a script needs to use them to DATA_DIR/demo.json.
//!
//! Seeding is idempotent step by step (each object is looked up by its
//! natural key before it is created), so an interrupted first start or a
//! deleted demo.json heal on the next start, and a second start keeps all data.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use pbx_store::customers::NewCustomer;
use pbx_store::devices::NewDevice;
use pbx_store::extensions::NewExtension;
use pbx_store::logins::{NewLogin, Role};
use pbx_store::resellers::{AssetKind, Brand, ResellerSettings};
use pbx_store::secrets::generate_password;
use pbx_store::{CustomerId, ExtensionId, Principal, ResellerId, Store, StoreError};

pub const OPERATOR_NAME: &str = "Ostwind Carrier Services";
const RESELLER_NAME: &str = "Nordlicht IT";
const RESELLER_PRODUCT: &str = "Nordlicht Voice";
const RESELLER_HOST: &str = "nordlicht.localhost";
const RESELLER_SUFFIX: &str = "voice.nordlicht.localhost";
const CUSTOMER_NAME: &str = "Acme GmbH";
const CUSTOMER_DOMAIN: &str = "acme.voice.nordlicht.localhost";
const EXTENSIONS: [(&str, &str); 3] = [
    ("101", "Anna Schmidt"),
    ("102", "Ben Müller"),
    ("103", "Clara Weber"),
];

/// Where the demo can be reached; goes into demo.json.
pub struct Endpoints {
    pub http_port: u16,
    /// host:port phones send SIP to.
    pub sip_proxy: String,
    pub sip_transports: Vec<&'static str>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct LoginInfo {
    pub email: String,
    /// None when the password was changed after seeding (it is not recoverable).
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DemoInfo {
    pub operator: OperatorInfo,
    pub reseller: ResellerInfo,
    pub customer: CustomerInfo,
    pub sip: SipInfo,
    pub extensions: Vec<ExtensionInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub name: String,
    pub console_url: String,
    pub login: LoginInfo,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ResellerInfo {
    pub id: ResellerId,
    pub name: String,
    pub product_name: String,
    pub console_host: String,
    pub console_url: String,
    pub login: LoginInfo,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CustomerInfo {
    pub id: CustomerId,
    pub name: String,
    pub sip_domain: String,
    pub console_url: String,
    pub admin_login: LoginInfo,
    pub user_login: LoginInfo,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SipInfo {
    /// Where phones send SIP (their outbound proxy / registrar address).
    pub proxy: String,
    pub transports: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExtensionInfo {
    pub number: String,
    pub display_name: String,
    pub sip_user: String,
    pub password: String,
    pub sip_domain: String,
}

pub fn json_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("demo.json")
}

/// Seeds what is missing and writes demo.json.
pub async fn ensure(
    store: &Store,
    data_dir: &Path,
    operator_hosts: &[String],
    at: &Endpoints,
) -> Result<DemoInfo> {
    let previous: Option<DemoInfo> = std::fs::read_to_string(json_path(data_dir))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let known = |email: &str| -> Option<String> {
        let p = previous.as_ref()?;
        [
            &p.operator.login,
            &p.reseller.login,
            &p.customer.admin_login,
            &p.customer.user_login,
        ]
        .into_iter()
        .find(|l| l.email == email)
        .and_then(|l| l.password.clone())
    };
    let sys = Principal::system();
    let seed = Seeder {
        store,
        sys: &sys,
        known: &known,
    };

    if store.operator().get(&sys).await?.is_none() {
        store
            .operator()
            .set(&sys, OPERATOR_NAME, operator_hosts)
            .await?;
    }
    let operator = store
        .operator()
        .get(&sys)
        .await?
        .context("operator missing after seeding")?;
    let operator_login = seed
        .login(
            "operator@ostwind.localhost",
            Role::OperatorAdmin,
            None,
            None,
            None,
        )
        .await?;

    let reseller = match store
        .resellers()
        .list(&sys)
        .await?
        .into_iter()
        .find(|r| r.name == RESELLER_NAME)
    {
        Some(r) => r,
        None => {
            let settings = ResellerSettings {
                name: RESELLER_NAME.into(),
                time_zone: "Europe/Berlin".into(),
                currency: "EUR".into(),
                vat_rate_bp: 1900,
                sip_domain_suffix: RESELLER_SUFFIX.into(),
                default_language: "de".into(),
                brand: Brand {
                    primary_color: "#0b5cad".into(),
                    accent_color: "#14b8a6".into(),
                    support_phone: Some("+49 40 1234567".into()),
                    support_email: Some("support@nordlicht.localhost".into()),
                    support_url: Some("https://nordlicht.localhost/support".into()),
                    login_text: Some(
                        "Willkommen bei Nordlicht Voice – Ihre Telefonanlage aus der Cloud.".into(),
                    ),
                    email_sender_name: Some("Nordlicht Voice".into()),
                    ..Brand::named(RESELLER_PRODUCT)
                },
                console_hosts: vec![RESELLER_HOST.into()],
            };
            let r = store.resellers().create(&sys, &settings).await?;
            store
                .resellers()
                .set_asset(
                    &sys,
                    r.id,
                    AssetKind::Logo,
                    pbx_branding::DEMO_RESELLER_LOGO_SVG,
                )
                .await?;
            r
        }
    };
    let reseller_login = seed
        .login(
            "admin@nordlicht.localhost",
            Role::ResellerAdmin,
            Some(reseller.id),
            None,
            None,
        )
        .await?;

    let customer = match store
        .customers()
        .list(&sys, Some(reseller.id))
        .await?
        .into_iter()
        .find(|c| c.sip_domain == CUSTOMER_DOMAIN)
    {
        Some(c) => c,
        None => {
            let new = NewCustomer {
                name: CUSTOMER_NAME.into(),
                sip_domain: Some(CUSTOMER_DOMAIN.into()),
                ..NewCustomer::default()
            };
            store.customers().create(&sys, reseller.id, &new).await?
        }
    };

    let mut extensions = Vec::new();
    let mut first_extension = None;
    for (number, name) in EXTENSIONS {
        let existing = store.extensions().list(&sys, customer.id).await?;
        let ext = match existing.into_iter().find(|e| e.number == number) {
            Some(e) => e,
            None => {
                let new = NewExtension {
                    number: number.into(),
                    display_name: name.into(),
                };
                store.extensions().create(&sys, customer.id, &new).await?
            }
        };
        first_extension.get_or_insert(ext.id);
        let device = match store.devices().list(&sys, ext.id).await?.into_iter().next() {
            Some(d) => d,
            None => {
                let new = NewDevice {
                    name: format!("Softphone {number}"),
                    ..NewDevice::default()
                };
                store.devices().create(&sys, ext.id, &new).await?.0
            }
        };
        let credentials = store.devices().credentials(&sys, device.id).await?;
        extensions.push(ExtensionInfo {
            number: ext.number,
            display_name: ext.display_name,
            sip_user: credentials.sip_user,
            password: credentials.password,
            sip_domain: credentials.sip_domain,
        });
    }
    let admin_login = seed
        .login(
            "admin@acme.localhost",
            Role::CustomerAdmin,
            Some(reseller.id),
            Some(customer.id),
            None,
        )
        .await?;
    let user_login = seed
        .login(
            "anna@acme.localhost",
            Role::CustomerUser,
            Some(reseller.id),
            Some(customer.id),
            first_extension,
        )
        .await?;

    let port = if at.http_port == 80 {
        String::new()
    } else {
        format!(":{}", at.http_port)
    };
    let operator_host = operator_hosts
        .iter()
        .find(|h| operator.console_hosts.contains(h))
        .or(operator.console_hosts.first())
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let info = DemoInfo {
        operator: OperatorInfo {
            name: operator.name,
            console_url: format!("http://{operator_host}{port}/"),
            login: operator_login,
        },
        reseller: ResellerInfo {
            id: reseller.id,
            name: reseller.name,
            product_name: reseller.brand.product_name,
            console_host: RESELLER_HOST.into(),
            console_url: format!("http://{RESELLER_HOST}{port}/"),
            login: reseller_login,
        },
        customer: CustomerInfo {
            id: customer.id,
            name: customer.name,
            sip_domain: customer.sip_domain,
            console_url: format!("http://{RESELLER_HOST}{port}/"),
            admin_login,
            user_login,
        },
        sip: SipInfo {
            proxy: at.sip_proxy.clone(),
            transports: at.sip_transports.iter().map(|s| s.to_string()).collect(),
        },
        extensions,
    };
    let text = serde_json::to_string_pretty(&info)?;
    crate::data_dir::write_private(&json_path(data_dir), &text)
        .with_context(|| format!("cannot write {}", json_path(data_dir).display()))?;
    Ok(info)
}

struct Seeder<'a> {
    store: &'a Store,
    sys: &'a Principal,
    known: &'a dyn Fn(&str) -> Option<String>,
}

impl Seeder<'_> {
    /// The login with this e-mail, created if missing; its password if known.
    async fn login(
        &self,
        email: &str,
        role: Role,
        reseller: Option<ResellerId>,
        customer: Option<CustomerId>,
        extension: Option<ExtensionId>,
    ) -> Result<LoginInfo> {
        match self.store.logins().find_by_email(self.sys, email).await {
            Ok(login) => {
                // Known from demo.json and still valid: show it. Unknown (demo.json
                // was deleted): set a fresh one, since hashes cannot be read back.
                let password = match (self.known)(email) {
                    Some(p) if self.store.logins().authenticate(email, &p).await?.is_some() => {
                        Some(p)
                    }
                    Some(_) => None,
                    None => {
                        let fresh = generate_password(14);
                        self.store
                            .logins()
                            .set_password(self.sys, login.id, &fresh)
                            .await?;
                        Some(fresh)
                    }
                };
                Ok(LoginInfo {
                    email: email.into(),
                    password,
                })
            }
            Err(StoreError::NotFound) => {
                let password = generate_password(14);
                let new = NewLogin {
                    email: email.into(),
                    password: password.clone(),
                    role,
                    reseller_id: reseller,
                    customer_id: customer,
                    extension_id: extension,
                    display_name: String::new(),
                };
                self.store.logins().create(self.sys, &new).await?;
                Ok(LoginInfo {
                    email: email.into(),
                    password: Some(password),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}
