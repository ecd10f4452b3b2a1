//! The actions of the audit events that the scale benchmarks seed in bulk (`benches/audit.rs`,
//! the load tool's `--scale`), as SQL over a numbered series.

/// The actions seeded events take in turn.
pub const ACTIONS: [&str; 8] = [
    "sso.signin.succeeded",
    "sso.signin.failed",
    "member.added",
    "domain.verified",
    "oidc.code_issued",
    "oidc.token_issued",
    "managed_account.created",
    "account.signed_in",
];

/// The action of series row `g`: `CASE g % 8 WHEN 0 THEN '...' ... END`.
pub fn action_case() -> String {
    let arms: String = ACTIONS
        .iter()
        .enumerate()
        .map(|(i, a)| format!(" WHEN {i} THEN '{a}'"))
        .collect();
    format!("CASE g % {}{arms} END", ACTIONS.len())
}
