//! The account page: who is signed in and how, their organizations (each can be left), pending
//! invitations (accept or decline), and whether a second factor is set up. No organization's
//! policy keeps an account from this page. It sits in `sign_in` because it shows what accounts, orgs and sign-in own.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::AppState;
use crate::accounts::Account;
use crate::accounts::session::SignedIn;
use crate::orgs::invitations::{self, Invitation};
use crate::orgs::{Org, Role};
use crate::web::error::AppError;
use crate::web::{Layout, session};

pub fn routes() -> Router<AppState> {
    Router::new().route("/account", get(account_page))
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    notice: Option<crate::web::Notice>,
    account: Account,
    method: String,
    orgs: Vec<(Org, Role)>,
    /// Pending invitations to the account's confirmed email.
    invitations: Vec<(Invitation, Org)>,
    two_step: bool,
}

async fn account_page(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<AccountPage, AppError> {
    let SignedIn { account, session } = signed_in;
    let method = session::method(&session).await?;
    let orgs = crate::orgs::store::orgs_of(state.db.pool(), account.id).await?;
    let two_step = super::has_second_factor(state.db.pool(), account.id).await?;
    let invitations = invitations::pending_for(&state.db, state.clock.now_ms(), &account).await?;
    Ok(AccountPage {
        layout: Layout::new(&session, Some(&account)).await?,
        notice: crate::web::take_flash(&session).await?,
        method: method.map_or("unknown", |m| m.label()).to_string(),
        account,
        orgs,
        invitations,
        two_step,
    })
}
