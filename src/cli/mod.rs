//! The subcommands besides `serve`: users, projects, tokens, and the first-start bootstrap.
//!
//! They open the same database as the server and work while it runs.
//!
//! - [`migrate`]: `faultline migrate`, SQLite → PostgreSQL.

pub mod migrate;

use anyhow::{Context, bail};
use argon2::password_hash::PasswordHasher;
use rand::RngExt;

use crate::api::projects::dsn;
use crate::config::{GlobalArgs, ProjectCommand, TokenCommand, UserCommand};
use crate::http::extract::token_hash;
use crate::store::{Store, StoreError};

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// Argon2id hash of a password (PHC string).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

/// Argon2id hash of a password that was generated here with 96 random bits (the first admin's):
/// guessing it is out of reach whatever the hash costs, so the hash is kept cheap in memory
/// (1 MiB instead of 19), which keeps the server's memory small after its first start.
fn hash_generated_password(password: &str) -> anyhow::Result<String> {
    let params = argon2::Params::new(1024, 2, 1, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

/// A new API token, in the format of Sentry's user tokens so that `sentry-cli` accepts it.
pub fn new_token() -> String {
    format!("sntryu_{}", random_hex(32))
}

/// On the very first start (no users), creates an admin and a first project and prints the
/// login and the DSN once.
pub async fn bootstrap(store: &dyn Store, public_url: &str) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let email = "admin@localhost";
    let password = random_hex(12);
    let user = match store
        .create_user(email, &hash_generated_password(&password)?, true)
        .await
    {
        Ok(user) => user,
        // Another node of the cluster started at the same moment and did it.
        Err(StoreError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let org = store.ensure_organization("faultline").await?;
    store.add_member(org.id, user.id, "owner").await?;
    let project = match store.project_by_slug("faultline", "default").await {
        Ok(p) => p,
        Err(_) => store.create_project(org.id, "default", "default").await?,
    };
    let key = match store.keys(project.id).await?.into_iter().next() {
        Some(k) => k,
        None => {
            store
                .create_key(project.id, &random_hex(16), "Default")
                .await?
        }
    };
    println!("Faultline first start: created an admin user and a first project.");
    println!("  Login:    {email}");
    println!("  Password: {password}   (shown once)");
    println!("  Project:  faultline/default");
    println!(
        "  DSN:      {}",
        dsn(public_url, &key.public_key, project.id)
    );
    Ok(())
}

fn public_url(global: &GlobalArgs) -> String {
    let listen = std::env::var("FAULTLINE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8000".into());
    global.public_url(&listen)
}

/// `faultline user create`
pub async fn user(global: &GlobalArgs, cmd: UserCommand) -> anyhow::Result<()> {
    let store = crate::store::open(&global.database_url()).await?;
    match cmd {
        UserCommand::Create { email, superuser } => {
            let password = match std::env::var("FAULTLINE_PASSWORD") {
                Ok(p) => p,
                Err(_) => rpassword::prompt_password(format!("Password for {email}: "))
                    .context("cannot read the password")?,
            };
            if password.len() < 8 {
                bail!("the password must have at least 8 characters");
            }
            let user = match store
                .create_user(&email, &hash_password(&password)?, superuser)
                .await
            {
                Ok(u) => u,
                Err(StoreError::Conflict(_)) => bail!("a user with e-mail {email} already exists"),
                Err(e) => return Err(e.into()),
            };
            eprintln!("created user {} (id {})", user.email, user.id);
        }
    }
    Ok(())
}

/// `faultline project create ORG/PROJECT`: prints the DSN alone on stdout.
pub async fn project(global: &GlobalArgs, cmd: ProjectCommand) -> anyhow::Result<()> {
    let store = crate::store::open(&global.database_url()).await?;
    match cmd {
        ProjectCommand::Create { slug } => {
            let Some((org_slug, project_slug)) = slug.split_once('/') else {
                bail!("expected ORG/PROJECT, got {slug:?}");
            };
            for s in [org_slug, project_slug] {
                if s.is_empty()
                    || s.len() > 50
                    || !s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
                {
                    bail!("slugs are 1-50 characters of a-z, 0-9, '-' and '_': {s:?}");
                }
            }
            let org = store.ensure_organization(org_slug).await?;
            let project = match store
                .create_project(org.id, project_slug, project_slug)
                .await
            {
                Ok(p) => p,
                Err(StoreError::Conflict(_)) => bail!("project {slug} already exists"),
                Err(e) => return Err(e.into()),
            };
            let key = store
                .create_key(project.id, &random_hex(16), "Default")
                .await?;
            println!("{}", dsn(&public_url(global), &key.public_key, project.id));
        }
    }
    Ok(())
}

/// `faultline token create --email E`: prints the token alone on stdout.
pub async fn token(global: &GlobalArgs, cmd: TokenCommand) -> anyhow::Result<()> {
    let store = crate::store::open(&global.database_url()).await?;
    match cmd {
        TokenCommand::Create { email } => {
            let user = match store.user_by_email(&email).await {
                Ok(u) => u,
                Err(StoreError::NotFound) => bail!("no user with e-mail {email}"),
                Err(e) => return Err(e.into()),
            };
            let token = new_token();
            store
                .create_token(user.id, &token_hash(&token), "cli")
                .await?;
            println!("{token}");
        }
    }
    Ok(())
}
