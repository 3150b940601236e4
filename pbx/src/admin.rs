//! `pbx admin …`: what a hosting operator does from a shell.

use anyhow::{Context, Result};
use pbx_store::api_tokens::{NewToken, TokenLevel};
use pbx_store::logins::{NewLogin, Role};
use pbx_store::secrets::generate_password;
use pbx_store::{CustomerId, Principal, ResellerId, Store, StoreError};

use crate::settings::AdminCommand;

pub async fn run(store: &Store, command: AdminCommand, operator_hosts: &[String]) -> Result<()> {
    let cli = Principal::cli();
    match command {
        AdminCommand::CreateOperator {
            email,
            password,
            operator_name,
        } => {
            if store.operator().get(&cli).await?.is_none() {
                store
                    .operator()
                    .set(&cli, &operator_name, operator_hosts)
                    .await?;
            }
            let (password, generated) = password_or_generated(password);
            let new = NewLogin {
                email,
                password: password.clone(),
                role: Role::OperatorAdmin,
                reseller_id: None,
                customer_id: None,
                extension_id: None,
                display_name: String::new(),
            };
            let login = store.logins().create(&cli, &new).await?;
            println!("created operator login {}", login.email);
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::ResetPassword { email, password } => {
            let login = match store.logins().find_by_email(&cli, &email).await {
                Err(StoreError::NotFound) => anyhow::bail!("no login with e-mail {email}"),
                other => other?,
            };
            let (password, generated) = password_or_generated(password);
            store
                .logins()
                .set_password(&cli, login.id, &password)
                .await
                .context("cannot set the password")?;
            println!("password of {} reset", login.email);
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::ListResellers => {
            let resellers = store.resellers().list(&cli).await?;
            println!(
                "{:>6}  {:<9}  {:<30}  {:<30}  console hosts",
                "id", "status", "name", "SIP domain suffix"
            );
            for r in resellers {
                println!(
                    "{:>6}  {:<9}  {:<30}  {:<30}  {}",
                    r.id,
                    r.status,
                    r.name,
                    r.sip_domain_suffix,
                    r.console_hosts.join(", ")
                );
            }
        }
        AdminCommand::ListCustomers { reseller } => {
            let customers = store
                .customers()
                .list(&cli, reseller.map(ResellerId))
                .await?;
            println!(
                "{:>6}  {:>8}  {:<9}  {:<30}  SIP domain",
                "id", "reseller", "status", "name"
            );
            for c in customers {
                println!(
                    "{:>6}  {:>8}  {:<9}  {:<30}  {}",
                    c.id, c.reseller_id, c.status, c.name, c.sip_domain
                );
            }
        }
        AdminCommand::CreateToken {
            name,
            reseller,
            customer,
            read_only,
            expires_in_days,
        } => {
            let level = match (reseller, customer) {
                (_, Some(_)) => TokenLevel::Customer,
                (Some(_), None) => TokenLevel::Reseller,
                (None, None) => TokenLevel::Operator,
            };
            let new = NewToken {
                name,
                level,
                reseller_id: reseller.map(ResellerId),
                customer_id: customer.map(CustomerId),
                read_only,
                expires_at: expires_in_days
                    .map(|d| pbx_store::now_ms() + i64::from(d) * 86_400_000),
            };
            let (token, secret) = store.api_tokens().create(&cli, &new).await?;
            eprintln!(
                "created {} token {} (id {}); it is shown only now:",
                token.level, token.public_id, token.id
            );
            println!("{secret}");
        }
    }
    Ok(())
}

fn password_or_generated(password: Option<String>) -> (String, bool) {
    match password {
        Some(p) => (p, false),
        None => (generate_password(16), true),
    }
}
