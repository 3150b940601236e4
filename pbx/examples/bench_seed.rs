//! Loads the SIP benchmark's users (`user;password` lines of the shared
//! harness's users.csv) into a database as extensions with one device each,
//! in a customer whose SIP domain is the benchmark domain, so that `pbx`
//! serves the same users as the Kamailio baseline.
//!
//!     PBX_SECRET_KEY=... bench_seed DATABASE_URL USERS_CSV DOMAIN

use pbx_store::customers::NewCustomer;
use pbx_store::devices::NewDevice;
use pbx_store::extensions::NewExtension;
use pbx_store::resellers::{Brand, ResellerSettings};
use pbx_store::secrets::SecretBox;
use pbx_store::{Principal, Store, StoreConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, csv, domain] = args.as_slice() else {
        return Err(
            "usage: bench_seed DATABASE_URL USERS_CSV DOMAIN (with PBX_SECRET_KEY set)".into(),
        );
    };
    let key = SecretBox::parse_key(&std::env::var("PBX_SECRET_KEY")?)?;
    let store = Store::connect(&StoreConfig {
        database_url: url.clone(),
        max_connections: 2,
        secret_key: key,
    })
    .await?;
    store.migrate().await?;
    let sys = Principal::system();
    let reseller = store
        .resellers()
        .create(
            &sys,
            &ResellerSettings {
                name: "Benchmark".into(),
                time_zone: "Europe/Berlin".into(),
                currency: "EUR".into(),
                vat_rate_bp: 1900,
                sip_domain_suffix: domain.clone(),
                default_language: "en".into(),
                brand: Brand::named("Benchmark"),
                console_hosts: vec![],
            },
        )
        .await?;
    let new = NewCustomer {
        name: "Benchmark users".into(),
        sip_domain: Some(domain.clone()),
        ..NewCustomer::default()
    };
    let customer = store.customers().create(&sys, reseller.id, &new).await?;
    let text = std::fs::read_to_string(csv)?;
    let mut count = 0;
    for line in text.lines().skip(1) {
        let Some((user, password)) = line.split_once(';') else {
            continue;
        };
        let ext = store
            .extensions()
            .create(
                &sys,
                customer.id,
                &NewExtension {
                    number: user.into(),
                    display_name: user.into(),
                },
            )
            .await?;
        let device = NewDevice {
            name: "bench".into(),
            sip_user: Some(user.into()),
            secret: Some(password.trim().into()),
        };
        store.devices().create(&sys, ext.id, &device).await?;
        count += 1;
    }
    store.close().await;
    println!("seeded {count} users in {domain}");
    Ok(())
}
