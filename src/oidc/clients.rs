//! Products as OIDC clients: registration with exact redirect URIs, a secret shown once and
//! stored as a hash, secret rotation and deletion; and the `nulab-pass product` commands.

use clap::Subcommand;

use super::store::{self, Client};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::db::{Db, Tx};
use crate::secrets;

/// What can go wrong with products, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("a product name is 2 to 40 lowercase letters, digits and hyphens (e.g. backlog)")]
    InvalidName,
    #[error("a product named {0} already exists; rotate its secret or delete it first")]
    NameTaken(String),
    #[error("at least one --redirect-uri is required")]
    NoRedirectUri,
    #[error(
        "\u{201c}{0}\u{201d} is not an accepted redirect URI: use an absolute https:// URL (http:// only for localhost or 127.0.0.1) without a fragment"
    )]
    InvalidRedirectUri(String),
    #[error("no product named {0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn target(client: &Client) -> Target {
    Target {
        kind: "product",
        id: client.client_id.clone(),
    }
}

fn check_name(name: &str) -> Result<String, ClientError> {
    let name = name.trim();
    let ok = (2..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    ok.then(|| name.to_string()).ok_or(ClientError::InvalidName)
}

/// Checks a redirect URI; it is stored exactly as given and matched exactly.
pub fn check_redirect_uri(raw: &str) -> Result<String, ClientError> {
    let invalid = || ClientError::InvalidRedirectUri(raw.chars().take(200).collect());
    let url = url::Url::parse(raw).map_err(|_| invalid())?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok
        || url.fragment().is_some()
        || url.host_str().is_none()
        || raw.len() > 2000
        || raw.trim() != raw
    {
        return Err(invalid());
    }
    Ok(raw.to_string())
}

/// A product and its secret, which is shown only now.
#[derive(Debug, serde::Serialize)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
}

/// Registers a product.
pub async fn create(
    tx: &mut Tx,
    now: i64,
    name: &str,
    redirect_uris: &[String],
    post_logout_redirect_uris: &[String],
    backchannel_logout_uri: Option<&str>,
    actor: &Actor,
) -> Result<Credentials, ClientError> {
    let name = check_name(name)?;
    if redirect_uris.is_empty() {
        return Err(ClientError::NoRedirectUri);
    }
    let redirect_uris = redirect_uris
        .iter()
        .map(|u| check_redirect_uri(u))
        .collect::<Result<Vec<_>, _>>()?;
    let logout_uris = post_logout_redirect_uris
        .iter()
        .map(|u| check_redirect_uri(u))
        .collect::<Result<Vec<_>, _>>()?;
    let backchannel_logout_uri = backchannel_logout_uri.map(check_redirect_uri).transpose()?;
    let secret = secrets::new_token("nps_");
    let client = Client {
        client_id: uuid::Uuid::new_v4().to_string(),
        name: name.clone(),
        secret_hash: secrets::hash_token(&secret),
        redirect_uris,
        post_logout_redirect_uris: logout_uris,
        backchannel_logout_uri,
        created_at: now,
        secret_rotated_at: now,
    };
    store::insert_client(tx, &client).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            ClientError::NameTaken(name.clone())
        } else {
            e.into()
        }
    })?;
    record(tx, now, AuditAction::ProductCreated, &client, actor).await?;
    Ok(Credentials {
        client_id: client.client_id,
        client_secret: secret,
    })
}

/// Replaces a product's secret; the old one stops working at once.
pub async fn rotate_secret(
    tx: &mut Tx,
    now: i64,
    name: &str,
    actor: &Actor,
) -> Result<Credentials, ClientError> {
    let client = store::client_by_name(&mut **tx, name.trim())
        .await?
        .ok_or_else(|| ClientError::NotFound(name.to_string()))?;
    let secret = secrets::new_token("nps_");
    store::set_client_secret(tx, &client.client_id, &secrets::hash_token(&secret), now).await?;
    record(tx, now, AuditAction::ProductSecretRotated, &client, actor).await?;
    Ok(Credentials {
        client_id: client.client_id,
        client_secret: secret,
    })
}

/// Deletes a product and every code and token issued to it.
pub async fn delete(
    tx: &mut Tx,
    now: i64,
    name: &str,
    actor: &Actor,
) -> Result<Client, ClientError> {
    let client = store::client_by_name(&mut **tx, name.trim())
        .await?
        .ok_or_else(|| ClientError::NotFound(name.to_string()))?;
    store::delete_client(tx, &client.client_id).await?;
    record(tx, now, AuditAction::ProductDeleted, &client, actor).await?;
    Ok(client)
}

/// Checks a product's credentials; `None` for an unknown product or a wrong secret.
pub async fn authenticate(
    db: &Db,
    client_id: &str,
    secret: &str,
) -> Result<Option<Client>, sqlx::Error> {
    let client = store::client_by_id(db.pool(), client_id).await?;
    Ok(client.filter(|c| secrets::same(&c.secret_hash, &secrets::hash_token(secret))))
}

async fn record(
    tx: &mut Tx,
    now: i64,
    action: AuditAction,
    client: &Client,
    actor: &Actor,
) -> Result<(), sqlx::Error> {
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: None,
            action,
            actor,
            target: Some(target(client)),
            meta: &RequestMeta::default(),
            details: serde_json::json!({ "name": client.name, "redirect_uris": client.redirect_uris }),
        },
    )
    .await
}

/// `nulab-pass product ...`: register and manage the products that sign users in.
#[derive(Subcommand)]
pub enum ProductCommand {
    /// Registers a product and prints {"client_id", "client_secret"} (the secret is shown once).
    Create {
        /// Short name, e.g. backlog, cacoo or typetalk.
        #[arg(long)]
        name: String,
        /// Where the product receives codes; repeat for several. Matched exactly.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Where the product may send users after sign-out; repeat for several. Matched exactly.
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Where the product receives logout tokens (OpenID Connect Back-Channel Logout 1.0)
        /// when a sign-in it was handed ends. https, or http on loopback.
        #[arg(long = "backchannel-logout-uri")]
        backchannel_logout_uri: Option<String>,
    },
    /// Lists the products as JSON lines.
    List,
    /// Replaces a product's secret and prints the new {"client_id", "client_secret"}.
    RotateSecret {
        #[arg(long)]
        name: String,
    },
    /// Deletes a product and every token issued to it.
    Delete {
        #[arg(long)]
        name: String,
    },
}

/// Runs a product command against `db`.
pub async fn run(db: &Db, now: i64, command: ProductCommand) -> anyhow::Result<()> {
    let actor = Actor::Operator;
    match command {
        ProductCommand::Create {
            name,
            redirect_uris,
            post_logout_redirect_uris,
            backchannel_logout_uri,
        } => {
            let mut tx = db.begin().await?;
            let creds = create(
                &mut tx,
                now,
                &name,
                &redirect_uris,
                &post_logout_redirect_uris,
                backchannel_logout_uri.as_deref(),
                &actor,
            )
            .await?;
            tx.commit().await?;
            println!("{}", serde_json::to_string(&creds)?);
        }
        ProductCommand::List => {
            for client in store::clients(db.pool()).await? {
                println!("{}", serde_json::to_string(&client)?);
            }
        }
        ProductCommand::RotateSecret { name } => {
            let mut tx = db.begin().await?;
            let creds = rotate_secret(&mut tx, now, &name, &actor).await?;
            tx.commit().await?;
            println!("{}", serde_json::to_string(&creds)?);
        }
        ProductCommand::Delete { name } => {
            let mut tx = db.begin().await?;
            let client = delete(&mut tx, now, &name, &actor).await?;
            tx.commit().await?;
            println!(
                "{}",
                serde_json::json!({ "deleted": client.name, "client_id": client.client_id })
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_absolute_and_safe() {
        for ok in [
            "https://backlog.example/callback",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb?x=1",
        ] {
            assert_eq!(check_redirect_uri(ok).unwrap(), ok);
        }
        for bad in [
            "/callback",
            "http://backlog.example/cb",
            "https://backlog.example/cb#frag",
            "javascript:alert(1)",
            " https://a.example/cb",
            "ftp://a.example/",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
        assert!(check_name("backlog").is_ok());
        assert!(check_name("Backlog").is_err());
        assert!(check_name("b").is_err());
    }
}
